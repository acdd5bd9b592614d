"""The pure failover decisions (llm_gateway/failover.py), the endpoint's two failure counts, and the relay's new
duties, without sockets. Expected values are worked out by hand from Envoy's documented rules (retry back-off:
https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter#x-envoy-max-retries;
outlier ejection: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier), RFC 9110
§10.2.3 (Retry-After) and OpenAI's stream format."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from llm_gateway import balancing
from llm_gateway.balancing import Endpoint
from llm_gateway.config import RetryConfig
from llm_gateway.failover import (
    Step,
    after_failure,
    backoff_s,
    clearly_exceeds,
    is_context_length_error,
    prompt_chars,
    retry_after_seconds,
)
from llm_gateway.sse import SseRelay
from test_balancing_unit import Clock

POLICY = RetryConfig(same_backend=1, backoff_base_s=0.1, max_retry_after_s=5)
ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
DELTA = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
FINISH = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}\n\n'


def decide(**changes: Any) -> Step:
    facts: dict[str, Any] = {
        "answered": True,
        "endpoint_only": True,
        "retry_after_s": None,
        "tries_on_backend": 1,
        "retries_used": 0,
        "sibling_left": False,
        "endpoint_available": True,
        "last_backend": False,
        "time_left_s": 60.0,
        "policy": POLICY,
        "random": lambda: 0.5,
    }
    return after_failure(**{**facts, **changes})


def test_a_5xx_on_a_single_endpoint_is_retried_there_after_a_jittered_backoff() -> None:
    # Retry 1: uniform in [0, (2^1 - 1) x 0.1] = [0, 0.1]; random() = 0.5 gives 0.05 (exact: a halving).
    assert decide() == Step("same", 0.05, retry=True)


def test_the_retry_budget_is_per_backend_and_then_the_fallback_goes() -> None:
    assert decide(retries_used=1) == Step("next")
    assert decide(policy=RetryConfig(same_backend=0)) == Step("next")


def test_a_refused_connection_or_timeout_is_not_retried_on_the_same_endpoint() -> None:
    assert decide(answered=False) == Step("next")
    assert decide(answered=False, sibling_left=True) == Step("sibling")


def test_refused_credentials_skip_the_backend_whatever_else_holds() -> None:
    assert decide(endpoint_only=False, sibling_left=True) == Step("next")


def test_a_sibling_goes_first_and_leaves_attempts_for_the_fallbacks() -> None:
    assert decide(sibling_left=True) == Step("sibling")
    # Two endpoints tried with fallbacks left: the retry goes to a third endpoint, after the back-off.
    assert decide(sibling_left=True, tries_on_backend=2) == Step("sibling", 0.05, retry=True)
    # On the last backend every sibling is tried before any retry.
    assert decide(sibling_left=True, tries_on_backend=5, last_backend=True) == Step("sibling")


def test_retry_after_is_honoured_within_its_bound_and_the_deadline() -> None:
    assert decide(retry_after_s=2.0) == Step("same", 2.0, retry=True)
    assert decide(retry_after_s=5.0) == Step("same", 5.0, retry=True)  # the bound is inclusive
    assert decide(retry_after_s=5.5) == Step("next")
    assert decide(retry_after_s=2.0, time_left_s=2.0) == Step("next")  # the wait would eat the deadline


def test_an_endpoint_ejected_by_this_failure_is_not_retried() -> None:
    assert decide(endpoint_available=False) == Step("next")


def test_backoff_grows_as_envoys_and_is_capped_at_ten_bases() -> None:
    assert backoff_s(1, 0.1, lambda: 1.0) == pytest.approx(0.1)
    assert backoff_s(2, 0.1, lambda: 1.0) == pytest.approx(0.3)
    assert backoff_s(3, 0.1, lambda: 1.0) == pytest.approx(0.7)
    assert backoff_s(4, 0.1, lambda: 1.0) == pytest.approx(1.0)  # 1.5 capped at 10 x 0.1
    assert backoff_s(2, 0.1, lambda: 0.0) == 0.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = dt.datetime(2026, 10, 21, 7, 28, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(" 7 ") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:03 GMT", now) == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2026 07:27:00 GMT", now) == 0.0  # in the past: at once
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-1") is None


def test_prompt_chars_count_text_only() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "abcd"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "efgh"}, {"type": "image_url", "image_url": "x" * 9}],
            },
            {"role": "assistant", "content": None},
        ]
    }
    assert prompt_chars(body) == 8
    assert prompt_chars({"prompt": "abcdef"}) == 6
    assert prompt_chars({"prompt": ["ab", "cd"]}) == 4
    assert prompt_chars({"prompt": [1, 2, 3]}) == 3  # token ids: one each
    assert prompt_chars({}) == 0


def test_clearly_exceeds_needs_a_quarter_more_than_the_context() -> None:
    # 4 characters a token: 500 characters = 125 tokens; 1.25 x 100 = 125 is not clearly more, 126 tokens is.
    assert not clearly_exceeds({"prompt": "x" * 500}, 100)
    assert clearly_exceeds({"prompt": "x" * 501}, 100)
    assert not clearly_exceeds({"prompt": "x" * 10_000}, None)


def test_context_length_errors_of_openai_and_vllm() -> None:
    openai_error = b'{"error": {"message": "...", "code": "context_length_exceeded"}}'
    vllm_error = b'{"error": {"message": "This model\'s maximum context length is 4096 tokens. However, ..."}}'
    assert is_context_length_error(400, openai_error)
    assert is_context_length_error(400, vllm_error)
    assert not is_context_length_error(400, b'{"error": {"message": "temperature must be >= 0"}}')
    assert not is_context_length_error(500, vllm_error)


# ---- the endpoint: request failures apart from active checks ---------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(balancing.time, "monotonic", fake)
    return fake


def test_passing_checks_do_not_reset_the_request_failures(clock: Clock) -> None:
    endpoint = Endpoint("http://a:1/v1", 3, 10.0)
    for _ in range(3):
        endpoint.record_failure()
        endpoint.record_check(True)
    assert not endpoint.healthy and endpoint.ejected_until == 1010.0


def test_a_passing_check_does_not_readmit_what_requests_ejected(clock: Clock) -> None:
    endpoint = Endpoint("http://a:1/v1", 1, 10.0)
    endpoint.record_failure()
    clock.now = 1020.0
    endpoint.record_check(True)
    assert not endpoint.healthy  # still out in the gauge; available() lets a request try it (half-open)
    assert endpoint.available(clock.now)
    endpoint.record_success()
    assert endpoint.healthy


def test_checks_eject_and_readmit_on_their_own_count(clock: Clock) -> None:
    endpoint = Endpoint("http://a:1/v1", 2, 10.0)
    endpoint.record_check(False)
    endpoint.record_success()  # a request that worked does not clear failing checks
    endpoint.record_check(False)
    assert not endpoint.healthy and endpoint.ejected_until == 1010.0
    clock.now = 1010.0
    endpoint.record_check(True)
    assert endpoint.healthy


def test_the_cooldown_grows_with_ejections_in_a_row_up_to_its_cap(clock: Clock) -> None:
    endpoint = Endpoint("http://a:1/v1", 1, 10.0, max_cooldown_s=25.0)
    endpoint.record_failure()
    assert endpoint.ejected_until == 1010.0
    clock.now = 1010.0
    endpoint.record_failure()  # the half-open try failed: second ejection, 2 x 10
    assert endpoint.ejected_until == 1030.0
    clock.now = 1030.0
    endpoint.record_failure()  # third: 30, capped at 25
    assert endpoint.ejected_until == 1055.0
    clock.now = 1055.0
    endpoint.record_success()
    endpoint.record_failure()  # readmitted in between: back to one cool-down
    assert endpoint.ejected_until == 1065.0


# ---- the relay ---------------------------------------------------------------------------------------------------


def test_a_role_only_first_chunk_is_held_until_the_first_content() -> None:
    relay = SseRelay(strip_usage_chunk=True, collect_text=False)
    assert relay.feed(ROLE) == b"" and not relay.started
    assert relay.feed(DELTA) == ROLE + DELTA and relay.started
    assert relay.feed(DELTA) == DELTA


def test_a_stream_ending_after_finish_reason_is_complete_without_done() -> None:
    relay = SseRelay(strip_usage_chunk=True, collect_text=False)
    relay.feed(ROLE + DELTA + FINISH + USAGE)
    assert relay.complete_without_done() == b"data: [DONE]\n\n"
    assert relay.usage == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


def test_a_stream_ending_without_finish_reason_is_broken() -> None:
    relay = SseRelay(strip_usage_chunk=True, collect_text=False)
    relay.feed(ROLE + DELTA)
    assert relay.complete_without_done() is None


def test_every_choice_must_finish_for_n_above_one() -> None:
    relay = SseRelay(strip_usage_chunk=True, collect_text=False, choices=2)
    relay.feed(DELTA + FINISH)
    assert relay.complete_without_done() is None
    relay.feed(FINISH.replace(b'"index":0', b'"index":1'))
    assert relay.complete_without_done() == b"data: [DONE]\n\n"


def test_a_last_event_without_its_blank_line_still_counts() -> None:
    relay = SseRelay(strip_usage_chunk=True, collect_text=False)
    relay.feed(DELTA + FINISH[:-1])
    assert relay.complete_without_done() == FINISH + b"data: [DONE]\n\n"


def test_a_json_value_that_is_not_an_object_is_malformed() -> None:
    relay = SseRelay(strip_usage_chunk=True, collect_text=False)
    assert relay.feed(DELTA + b"data: 42\n\n") == DELTA
    assert relay.malformed is not None


def test_the_continuations_usage_chunk_counts_the_earlier_attempts() -> None:
    relay = SseRelay(strip_usage_chunk=False, collect_text=True)
    relay.usage_offset = (5, 7)
    out = relay.feed(DELTA + USAGE)
    assert out.endswith(b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":8,"total_tokens":15}}\n\n')
    assert relay.usage == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}  # the backend's own


# ---- mutation-testing survivors (docs/testing.md), each killed by a case worked out by hand ------------------------


def test_prompt_chars_add_up_every_string_message() -> None:
    # Two plain-string contents: 3 + 5 = 8 characters (a count that kept only the last message would say 5).
    body = {"messages": [{"role": "system", "content": "abc"}, {"role": "user", "content": "defgh"}]}
    assert prompt_chars(body) == 8


def test_prompt_chars_skip_a_message_that_is_not_an_object() -> None:
    # A malformed message (a bare string) adds nothing and must not raise: the 4 characters of the object count.
    assert prompt_chars({"messages": ["not a message", {"role": "user", "content": "abcd"}]}) == 4


def test_retry_after_as_a_date_is_read_against_the_utc_clock_when_no_now_is_given() -> None:
    # RFC 9110 §10.2.3's own example date, long past: wait 0 s. The date is aware (GMT), so the clock it is compared
    # with must be aware too (a naive now() would raise TypeError on the subtraction).
    assert retry_after_seconds("Fri, 31 Dec 1999 23:59:59 GMT") == 0.0


def test_checks_eject_only_at_the_threshold_and_a_pass_resets_their_count(clock: Clock) -> None:
    endpoint = Endpoint("http://a:1/v1", 2, 10.0)
    endpoint.record_check(False)
    assert endpoint.healthy  # 1 failed check of 2
    endpoint.record_check(True)
    endpoint.record_check(False)
    assert endpoint.healthy  # the pass reset the count: 1 of 2 again
    endpoint.record_check(False)
    assert not endpoint.healthy and endpoint.ejected_until == 1010.0


def test_a_request_failing_on_an_endpoint_the_checks_ejected_keeps_it_out_past_passing_checks(clock: Clock) -> None:
    # Ejected by a check at 1000 (until 1010); a request sent in panic fails at 1005: the same ejection (no new one
    # in a row), now held by requests until 1005 + 10 = 1015. At 1020 a passing check does not readmit it.
    endpoint = Endpoint("http://a:1/v1", 1, 10.0)
    endpoint.record_check(False)
    clock.now = 1005.0
    endpoint.record_failure()
    assert endpoint.ejected_until == 1015.0
    clock.now = 1020.0
    endpoint.record_check(True)
    assert not endpoint.healthy
