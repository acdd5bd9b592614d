"""The pure decisions of proxy.py without sockets: how an upstream status is classified (retry on a sibling, on the
next backend, or pass on), and how an upstream error body is carried to the client in OpenAI's error format
({"error": {"message", "type", "param", "code"}}: https://platform.openai.com/docs/guides/error-codes).

The failover loop itself (Forwarder.run) is an async method that sends requests, so it is not tested here: the
routing tests drive it through real servers. docs/testing.md says so next to proxy.py's mutation score."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from llm_gateway.balancing import Endpoint
from llm_gateway.config import PriceConfig
from llm_gateway.proxy import (
    ContextTooLong,
    Exchange,
    Forwarder,
    RetryableFailure,
    _upstream_message,
    _with_request_id,
)


def check(status: int, data: bytes = b"", headers: dict[str, str] | None = None) -> tuple[Any, Endpoint, Any]:
    endpoint = Endpoint("http://10.0.0.1:8000/v1", 1, 10.0)
    stub = SimpleNamespace(exchange=SimpleNamespace(request_id="req-1", reason=None))
    result = Forwarder._check_status(stub, status, data, endpoint, headers or {})  # type: ignore[arg-type]
    return result, endpoint, stub.exchange


@pytest.mark.parametrize("status", [200, 201, 299])
def test_success_statuses_pass(status: int) -> None:
    result, endpoint, exchange = check(status)
    assert result is None and endpoint.healthy and exchange.reason is None


@pytest.mark.parametrize(("status", "client_status"), [(500, 502), (502, 502), (503, 503), (504, 504), (599, 502)])
def test_5xx_counts_against_the_endpoint_and_may_go_to_a_sibling(status: int, client_status: int) -> None:
    with pytest.raises(RetryableFailure) as raised:
        check(status, b'{"error": {"message": "engine died"}}', {"Retry-After": "7"})
    failure = raised.value
    assert (failure.status, failure.reason, failure.endpoint_only) == (client_status, "upstream_error", True)
    assert failure.message == f"Upstream answered {status}: engine died"
    assert failure.retry_after == "7"
    # The endpoint was built to eject at its first failure: a 5xx is one.
    endpoint = Endpoint("http://10.0.0.1:8000/v1", 1, 10.0)
    stub = SimpleNamespace(exchange=SimpleNamespace(request_id="req-1", reason=None))
    with pytest.raises(RetryableFailure):
        Forwarder._check_status(stub, status, b"", endpoint, {})  # type: ignore[arg-type]
    assert not endpoint.healthy


def test_429_is_retried_elsewhere_without_blaming_the_endpoint() -> None:
    endpoint = Endpoint("http://10.0.0.1:8000/v1", 1, 10.0)
    stub = SimpleNamespace(exchange=SimpleNamespace(request_id="req-1", reason=None))
    with pytest.raises(RetryableFailure) as raised:
        Forwarder._check_status(stub, 429, b"slow down", endpoint, {"Retry-After": "3"})  # type: ignore[arg-type]
    assert (raised.value.status, raised.value.reason, raised.value.endpoint_only) == (
        429,
        "upstream_rate_limited",
        True,
    )
    assert raised.value.message == "Upstream answered 429: slow down"
    assert endpoint.healthy and endpoint.failures == 0


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_skip_the_whole_backend(status: int) -> None:
    with pytest.raises(RetryableFailure) as raised:
        check(status)
    failure = raised.value
    assert (failure.status, failure.reason, failure.endpoint_only) == (502, "upstream_auth", False)
    assert f"({status})" in failure.message and "api_key_env" in failure.message


@pytest.mark.parametrize("status", [300, 400, 404, 413, 422, 499])
def test_other_statuses_are_passed_on_with_our_request_id(status: int) -> None:
    result, endpoint, exchange = check(status, b'{"error": {"message": "too long", "type": "BadRequestError"}}')
    assert result.status == status and exchange.reason == "bad_request" and endpoint.healthy
    assert result.headers["x-request-id"] == "req-1"
    assert result.content_type == "application/json"
    assert json.loads(result.body) == {
        "error": {"message": "too long", "type": "BadRequestError", "request_id": "req-1"}
    }


def test_upstream_message() -> None:
    assert _upstream_message(b'{"error": {"message": "boom"}}') == "boom"
    assert _upstream_message(b'{"error": {"message": "' + b"x" * 600 + b'"}}') == "x" * 500
    assert _upstream_message(b"plain " + b"y" * 300) == ("plain " + "y" * 300)[:200]
    assert _upstream_message(b'{"detail": "no"}') == '{"detail": "no"}'
    assert _upstream_message(b'{"error": "flat"}') == '{"error": "flat"}'
    assert _upstream_message(b"\xff") == "\ufffd"
    assert _upstream_message(b"") == "(empty body)"


def test_with_request_id_wraps_bodies_that_are_not_openai_errors() -> None:
    wrapped = json.loads(_with_request_id(b"Bad Request", 400, "req-2"))
    assert wrapped == {
        "error": {
            "message": "Bad Request",
            "type": "invalid_request_error",
            "param": None,
            "code": "upstream_error",
            "request_id": "req-2",
        }
    }
    assert json.loads(_with_request_id(b'{"error": "flat"}', 404, "r"))["error"]["message"] == '{"error": "flat"}'
    assert json.loads(_with_request_id(b"[1]", 422, "r"))["error"]["type"] == "api_error"


def test_as_gateway_error_keeps_a_numeric_retry_after_only() -> None:
    def failure(retry_after: str | None) -> RetryableFailure:
        return RetryableFailure(429, "upstream_rate_limited", "m", endpoint_only=True, retry_after=retry_after)

    error = failure("12").as_gateway_error()
    assert (error.status, error.message, error.reason, error.retry_after_s) == (429, "m", "upstream_rate_limited", 12)
    # An HTTP-date Retry-After (RFC 9110 §10.2.3) is not passed on as seconds.
    assert failure("Wed, 21 Oct 2026 07:28:00 GMT").as_gateway_error().retry_after_s is None
    assert failure(None).as_gateway_error().retry_after_s is None
    assert failure("").as_gateway_error().retry_after_s is None


def test_exchange_adds_usage_from_each_chunk() -> None:
    exchange = Exchange("req-3", 0.0)
    exchange.add_usage({"prompt_tokens": 3, "completion_tokens": None})
    exchange.add_usage({"completion_tokens": 4})
    exchange.add_usage(None)
    assert (exchange.prompt_tokens, exchange.completion_tokens) == (3, 4)


def test_a_passed_on_plain_text_error_gets_the_openai_type_of_its_own_status() -> None:
    # OpenAI's error types by status (https://platform.openai.com/docs/guides/error-codes): 400 and 404 are
    # invalid_request_error; a status with no type of its own (418) is an api_error.
    for status, kind in ((400, "invalid_request_error"), (404, "invalid_request_error"), (418, "api_error")):
        result, _, _ = check(status, b"Bad Request")
        assert json.loads(result.body)["error"] == {
            "message": "Bad Request",
            "type": kind,
            "param": None,
            "code": "upstream_error",
            "request_id": "req-1",
        }


def test_retryable_failure_reads_as_its_message() -> None:
    # What a traceback or a log line shows for the exception: the message, as for any Exception(message).
    failure = RetryableFailure(502, "upstream_error", "Upstream a failed: ClientOSError", endpoint_only=True)
    assert str(failure) == "Upstream a failed: ClientOSError" and failure.args == ("Upstream a failed: ClientOSError",)


def test_exchange_sums_usage_over_attempts() -> None:
    # A recovered stream reports usage once per attempt: 5 + 7 prompt and 2 + 3 completion tokens are billed.
    exchange = Exchange("req-4", 0.0)
    exchange.add_usage({"prompt_tokens": 5, "completion_tokens": 2})
    exchange.add_usage({"prompt_tokens": 7, "completion_tokens": 3})
    assert (exchange.prompt_tokens, exchange.completion_tokens) == (12, 5)


def test_a_fresh_exchange_is_what_a_request_refused_before_routing_reports() -> None:
    # server.refused() audits a request that aiohttp refused before any handler with a fresh Exchange, and a request
    # refused before routing (bad JSON, unknown model) keeps these fields. The label values are the ones
    # test_gateway_limits.py reads from /metrics for such a request (backend "none", model "unknown": a name nobody
    # configured never becomes a label); server._finish skips the latency histograms for backend "none". An unset
    # status counts as a server error (500), never as a success.
    exchange = Exchange("req-5", 12.5)
    assert (exchange.request_id, exchange.started) == ("req-5", 12.5)
    assert (exchange.team, exchange.model, exchange.backend) == ("unknown", "unknown", "none")
    assert (exchange.requested_model, exchange.route, exchange.endpoint) == ("", "", "")
    assert (exchange.attempts, exchange.status, exchange.reason) == (0, 500, None)
    assert (exchange.prompt_tokens, exchange.completion_tokens, exchange.cost_usd) == (0, 0, 0.0)
    assert exchange.ttft_s is None and exchange.stream is False


# ---- mutation-testing survivors (docs/testing.md), each killed by a case worked out by hand ------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_an_answered_5xx_or_429_is_marked_answered_for_a_same_backend_retry(status: int) -> None:
    # failover.after_failure retries on the same backend only what the backend answered (retry.same_backend).
    with pytest.raises(RetryableFailure) as raised:
        check(status)
    assert raised.value.answered is True


def test_refused_credentials_are_not_an_answer_worth_a_retry() -> None:
    with pytest.raises(RetryableFailure) as raised:
        check(401)
    assert raised.value.answered is False
    # A refused connection or a timeout (built without answered=) is not one either.
    assert RetryableFailure(504, "timeout", "t", endpoint_only=True).answered is False


VLLM_TOO_LONG = b'{"error": {"message": "This model\'s maximum context length is 4096 tokens. However, ..."}}'


def test_a_context_length_400_moves_to_the_context_fallbacks_while_the_switch_is_on() -> None:
    endpoint = Endpoint("http://10.0.0.1:8000/v1", 1, 10.0)
    stub = SimpleNamespace(exchange=SimpleNamespace(request_id="req-1", reason=None), context_switch=True)
    with pytest.raises(ContextTooLong) as raised:
        Forwarder._check_status(stub, 400, VLLM_TOO_LONG, endpoint, {})  # type: ignore[arg-type]
    # What a traceback or a log line would show for it, as for any Exception(message).
    assert str(raised.value) == "context length exceeded"
    # The 400 is kept, to be passed on when no context fallback can take the prompt.
    response = raised.value.response
    assert response.status == 400 and response.headers["x-request-id"] == "req-1"
    assert isinstance(response.body, bytes) and json.loads(response.body)["error"]["request_id"] == "req-1"


def test_a_context_length_400_is_passed_on_when_the_switch_is_off() -> None:
    endpoint = Endpoint("http://10.0.0.1:8000/v1", 1, 10.0)
    stub = SimpleNamespace(exchange=SimpleNamespace(request_id="req-1", reason=None), context_switch=False)
    assert Forwarder._check_status(stub, 400, VLLM_TOO_LONG, endpoint, {}).status == 400  # type: ignore[arg-type,union-attr]
    # Without the attribute (the bare stub of check()) the switch counts as off too.
    result, _, _ = check(400, VLLM_TOO_LONG)
    assert result.status == 400
    # With the switch on, a 400 that is not about the context is passed on.
    stub.context_switch = True
    other = b'{"error": {"message": "temperature must be >= 0"}}'
    assert Forwarder._check_status(stub, 400, other, endpoint, {}).status == 400  # type: ignore[arg-type,union-attr]


def test_exchange_bills_each_attempt_at_its_price() -> None:
    # $1 per million prompt and $2 per million completion tokens: 1,000 x 1 + 2,000 x 2 = 5,000 -> $0.005 an attempt;
    # two attempts $0.010. Without a price an attempt costs nothing.
    price = PriceConfig(input_per_million=1.0, output_per_million=2.0)
    exchange = Exchange("req-6", 0.0)
    exchange.add_usage({"prompt_tokens": 1000, "completion_tokens": 2000}, price)
    assert exchange.cost_usd == pytest.approx(0.005)
    exchange.add_usage({"prompt_tokens": 1000, "completion_tokens": 2000}, price)
    assert exchange.cost_usd == pytest.approx(0.010)
    exchange.add_usage({"prompt_tokens": 1000, "completion_tokens": 2000})
    assert exchange.cost_usd == pytest.approx(0.010)


def test_a_fresh_exchange_has_no_recovery_failure() -> None:
    # end_with_error appends "Recovery failed: ..." whenever recovery is not None: a fresh request has none to tell.
    assert Exchange("req-7", 0.0).recovery is None
