"""Tracing through real servers: a client's traceparent, the gateway's spans received over OTLP/HTTP by a receiver
in the test, and the traceparent each (fake) upstream attempt receives."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from llm_gateway.tracing import PROPAGATION, SpanExport
from otlp_receiver import OtlpReceiver, ReceivedSpan

from conftest import KEY, Harness, LoopThread, backend, chat

# The example of W3C Trace Context, section 3.2.2.
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT_ID = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE_ID}-{CLIENT_PARENT_ID}-01"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2
# The fake upstream's usage (fake_upstream.py): prompt tokens = words of the messages, completion = words of ANSWER,
# "the quick brown fox jumps over the lazy dog and runs far away": 13 words.
ANSWER_WORDS = 13


@pytest.fixture
def receiver(servers: LoopThread) -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    servers.run(otlp.start())
    yield otlp
    servers.run(otlp.stop())


def traced(receiver: OtlpReceiver, *backends: dict[str, Any], **route: Any) -> dict[str, Any]:
    names = [spec["name"] for spec in backends]
    return {
        "backends": list(backends),
        "routes": [{"model": "llama", "targets": [{"backend": names[0]}], "fallbacks": names[1:], **route}],
        # A short delay: the test waits for the batch rather than for the gateway's shutdown.
        "tracing": {"enabled": True, "endpoint": receiver.endpoint, "schedule_delay_s": 0.05},
    }


def post(base_url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        base_url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}", **headers}, timeout=20
    )


def sent_traceparent(headers: dict[str, str]) -> tuple[str, str, str]:
    match = TRACEPARENT.match(headers["traceparent"])
    assert match is not None, headers["traceparent"]
    trace_id, parent_id, flags = match.groups()
    return trace_id, parent_id, flags


def one(spans: list[ReceivedSpan], kind: int) -> ReceivedSpan:
    found = [span for span in spans if span.kind == kind]
    assert len(found) == 1, found
    return found[0]


def test_one_trace_from_the_client_through_the_gateway_spans_to_the_upstream(
    harness: Harness, receiver: OtlpReceiver
) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(traced(receiver, backend("a", upstream, model="llama-3-8b")))
    response = post(url, chat(content="one two three four"), traceparent=CLIENT_TRACEPARENT, tracestate="vendor=x1")
    assert response.status_code == 200
    spans = receiver.wait_for(2)
    server, attempt = one(spans, SERVER), one(spans, CLIENT)
    assert {span.trace_id for span in spans} == {CLIENT_TRACE_ID}
    assert server.parent_span_id == CLIENT_PARENT_ID
    assert attempt.parent_span_id == server.span_id
    assert (server.service, server.name) == ("llm-gateway", "POST /v1/chat/completions")
    # The upstream's parent is the attempt span: one trace id from the client to the backend.
    assert sent_traceparent(upstream.headers[0]) == (CLIENT_TRACE_ID, attempt.span_id, "01")
    assert upstream.headers[0]["tracestate"] == "vendor=x1"
    assert attempt.name == "chat llama-3-8b"
    assert attempt.attributes["gen_ai.operation.name"] == "chat"
    assert attempt.attributes["gen_ai.request.model"] == "llama-3-8b"
    assert attempt.attributes["gen_ai.provider.name"] == "vllm"
    assert attempt.attributes["llm_gateway.backend"] == "a"
    assert attempt.attributes["llm_gateway.endpoint"] == upstream.label
    assert attempt.attributes["server.port"] == upstream.port
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["gen_ai.usage.input_tokens"] == 4
    assert attempt.attributes["gen_ai.usage.output_tokens"] == ANSWER_WORDS
    assert server.attributes["gen_ai.request.model"] == "llama"
    assert server.attributes["gen_ai.usage.output_tokens"] == ANSWER_WORDS
    assert server.attributes["llm_gateway.request_id"] == response.headers["x-request-id"]
    assert server.attributes["llm_gateway.team"] == "alpha"
    assert server.status_code != STATUS_ERROR


def test_each_retry_and_failover_is_one_attempt_span_whose_id_the_upstream_receives(
    harness: Harness, receiver: OtlpReceiver
) -> None:
    first = harness.upstream("a", status=500)
    second = harness.upstream("b")
    config = traced(receiver, backend("a", first, retry={"backoff_base_s": 0}), backend("b", second))
    _, url = harness.gateway(config)
    assert post(url, chat()).status_code == 200
    # retry.same_backend 1: a, a again, then the fallback b.
    assert (len(first.headers), len(second.headers)) == (2, 1)
    spans = receiver.wait_for(4)
    server = one(spans, SERVER)
    attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.attributes["llm_gateway.attempt"])
    assert [s.attributes["llm_gateway.backend"] for s in attempts] == ["a", "a", "b"]
    assert [s.attributes["http.response.status_code"] for s in attempts] == [502, 502, 200]
    assert [s.status_code == STATUS_ERROR for s in attempts] == [True, True, False]
    assert attempts[0].attributes["error.type"] == "upstream_error"
    assert {s.parent_span_id for s in attempts} == {server.span_id}
    # A new trace (no traceparent from the client), sampled at ratio 1: one trace id everywhere, the sampled flag
    # (0x01) set; the SDK also sets 0x02, Trace Context Level 2's "random trace id" flag.
    received = [sent_traceparent(h) for h in [*first.headers, *second.headers]]
    assert {trace_id for trace_id, _, _ in received} == {server.trace_id}
    assert [parent for _, parent, _ in received] == [s.span_id for s in attempts]
    assert {int(flags, 16) & 1 for _, _, flags in received} == {1}
    assert server.parent_span_id == ""
    assert server.attributes["llm_gateway.attempts"] == 3


def test_a_stream_records_its_first_token_on_the_attempt_span(harness: Harness, receiver: OtlpReceiver) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(traced(receiver, backend("a", upstream)))
    response = post(url, {**chat(), "stream": True})
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    spans = receiver.wait_for(2)
    attempt, server = one(spans, CLIENT), one(spans, SERVER)
    assert attempt.events == ["llm_gateway.first_token"]
    assert server.attributes["llm_gateway.stream"] is True
    assert server.attributes["llm_gateway.time_to_first_token_s"] > 0
    assert attempt.attributes["gen_ai.usage.output_tokens"] == ANSWER_WORDS


def test_a_client_error_is_recorded_without_marking_the_server_span_failed(
    harness: Harness, receiver: OtlpReceiver
) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(traced(receiver, backend("a", upstream)))
    assert post(url, chat(model="nope")).status_code == 404
    server = one(receiver.wait_for(1), SERVER)
    # HTTP semantic conventions: a 4xx answer is not a server span error; error.type still says what happened.
    assert server.attributes["http.response.status_code"] == 404
    assert server.attributes["error.type"] == "model_not_found"
    assert server.status_code != STATUS_ERROR


def test_a_caller_that_did_not_sample_gets_no_spans_but_its_trace_still_propagates(
    harness: Harness, receiver: OtlpReceiver
) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(traced(receiver, backend("a", upstream)))
    assert post(url, chat(), traceparent=f"00-{CLIENT_TRACE_ID}-{CLIENT_PARENT_ID}-00").status_code == 200
    # A sampled request afterwards: once its spans are in, the unsampled one would have been too.
    assert post(url, chat(), traceparent=CLIENT_TRACEPARENT.replace(CLIENT_TRACE_ID, "1" * 32)).status_code == 200
    spans = receiver.wait_for(2)
    assert {span.trace_id for span in spans} == {"1" * 32}
    trace_id, parent_id, flags = sent_traceparent(upstream.headers[0])
    assert (trace_id, flags) == (CLIENT_TRACE_ID, "00")
    assert parent_id != CLIENT_PARENT_ID


def test_tracing_off_exports_nothing_and_still_propagates_a_child_id_per_attempt(
    harness: Harness, receiver: OtlpReceiver
) -> None:
    first = harness.upstream("a", status=503)
    second = harness.upstream("b")
    config = traced(receiver, backend("a", first, retry={"same_backend": 0}), backend("b", second))
    config["tracing"]["enabled"] = False
    gateway, url = harness.gateway(config)
    assert gateway.runtime.tracing is PROPAGATION and not isinstance(gateway.runtime.tracing, SpanExport)
    assert post(url, chat(), traceparent=CLIENT_TRACEPARENT, tracestate="vendor=x1").status_code == 200
    received = [sent_traceparent(h) for h in [*first.headers, *second.headers]]
    assert [(trace_id, flags) for trace_id, _, flags in received] == [(CLIENT_TRACE_ID, "01")] * 2
    parents = {parent for _, parent, _ in received}
    assert len(parents) == 2 and CLIENT_PARENT_ID not in parents
    assert second.headers[0]["tracestate"] == "vendor=x1"
    # Without a traceparent the gateway starts a trace that it does not record: not sampled.
    assert post(url, chat()).status_code == 200
    trace_id, _, flags = sent_traceparent(second.headers[1])
    assert trace_id != CLIENT_TRACE_ID and flags == "00"
    assert receiver.requests == 0


def test_an_invalid_traceparent_starts_a_new_trace_and_drops_its_tracestate(harness: Harness) -> None:
    upstream = harness.upstream("a")
    route = {"model": "llama", "targets": [{"backend": "a"}]}
    _, url = harness.gateway({"backends": [backend("a", upstream)], "routes": [route]})
    upper = CLIENT_TRACEPARENT.upper()  # W3C: hex digits are lower case; an invalid header is ignored
    assert post(url, chat(), traceparent=upper, tracestate="vendor=x1").status_code == 200
    trace_id, _, _ = sent_traceparent(upstream.headers[0])
    assert trace_id != CLIENT_TRACE_ID
    assert "tracestate" not in upstream.headers[0]
