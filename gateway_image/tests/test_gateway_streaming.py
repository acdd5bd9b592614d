"""Streams through the gateway: relayed as they arrive, usage handling, cut streams, stream recovery."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from llm_gateway.sse import SseRelay

from conftest import KEY, Harness, backend, client, metric

pytestmark = pytest.mark.network


def route_config(
    *backends: dict[str, Any], recovery: bool = False, fallbacks: list[str] | None = None
) -> dict[str, Any]:
    return {
        "backends": list(backends),
        "routes": [{"model": "llama", "targets": [{"backend": backends[0]["name"]}], "fallbacks": fallbacks or []}],
        "stream_recovery": recovery,
        "pricing": {"llama": {"input_per_million": 1000, "output_per_million": 2000}},
    }


def raw_events(url: str, body: dict[str, Any]) -> list[str]:
    """The `data:` payloads of a streamed answer, read without the openai client's interpretation."""
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=20
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_chunks_reach_the_client_before_the_upstream_finishes(harness: Harness) -> None:
    release = harness.event()
    upstream = harness.upstream("a", hold_after_chunks=3, release=release)
    _, url = harness.gateway(route_config(backend("a", upstream)))
    stream = client(url).chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received.append(chunk.choices[0].delta.content)
        if len(received) == 3:
            # The upstream waits for this before sending more: a buffering proxy would never get here.
            harness.set_event(release)
    assert "".join(received) == upstream.behaviour.answer


def test_usage_chunk_is_stripped_unless_asked_for_and_counted(harness: Harness) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(route_config(backend("a", upstream)))
    body = {"model": "llama", "messages": [{"role": "user", "content": "one two three"}], "stream": True}
    events = raw_events(url, body)
    assert events[-1] == "[DONE]"
    assert not any('"usage"' in event for event in events)
    # The gateway asked the upstream for usage all the same.
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}

    asked = raw_events(url, {**body, "stream_options": {"include_usage": True}})
    usage = json.loads(asked[-2])["usage"]
    assert usage == {"prompt_tokens": 3, "completion_tokens": 13, "total_tokens": 16}

    audit = harness.audit(2)
    assert [(a["prompt_tokens"], a["completion_tokens"], a["stream"]) for a in audit] == [(3, 13, True)] * 2
    assert audit[0]["cost_usd"] == pytest.approx((3 * 1000 + 13 * 2000) / 1e6)
    assert audit[0]["ttft_s"] is not None and audit[0]["ttft_s"] <= audit[0]["latency_s"]


def test_stream_cut_mid_answer_ends_with_an_error_event(harness: Harness) -> None:
    cutter = harness.upstream("cutter", cut_after_chunks=4)
    _, url = harness.gateway(route_config(backend("cutter", cutter)))
    events = raw_events(url, {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_error" and "interrupted" in error["message"]
    assert len([e for e in events if '"content"' in e]) == 5  # the role chunk and four words

    with pytest.raises(openai.APIError):
        for _ in client(url).chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
    audit = harness.audit(2)
    assert audit[-1]["status"] == 502 and audit[-1]["error"] == "stream_interrupted"


def test_stream_failing_before_first_chunk_fails_over(harness: Harness) -> None:
    cutter = harness.upstream("cutter", cut_after_chunks=0, answer="x")
    spare = harness.upstream("spare")
    _, url = harness.gateway(
        route_config(backend("cutter", cutter), backend("spare", spare, kind="openai"), fallbacks=["spare"])
    )
    # cut_after_chunks=0 sends the role chunk, then breaks: the gateway holds a role-only chunk back until the first
    # content, so nothing reached the client yet and the request fails over whole.
    events = raw_events(url, {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert events[-1] == "[DONE]"
    assert (
        "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1] if '"choices":[{' in e)
        == spare.behaviour.answer
    )

    broken = harness.upstream("broken", status=502)
    _, url2 = harness.gateway(route_config(backend("broken", broken), backend("spare", spare), fallbacks=["spare"]))
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client(url2).chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        if c.choices
    )
    assert text == spare.behaviour.answer


def test_stream_recovery_stitches_the_answer_on_another_backend(harness: Harness) -> None:
    cutter = harness.upstream("cutter", cut_after_chunks=5)
    spare = harness.upstream("spare")
    _, url = harness.gateway(
        route_config(backend("cutter", cutter), backend("spare", spare), recovery=True, fallbacks=["spare"])
    )
    stream = client(url).chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=100
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == cutter.behaviour.answer
    continuation = spare.requests[-1]
    assert continuation["continue_final_message"] is True and continuation["add_generation_prompt"] is False
    assert continuation["messages"][-1] == {"role": "assistant", "content": "the quick brown fox jumps"}
    assert continuation["max_tokens"] == 95
    audit = harness.audit(1)[0]
    assert (audit["status"], audit["attempts"], audit["backend"]) == (200, 2, "spare")


def test_client_leaving_before_the_first_chunk_is_not_an_upstream_failure(harness: Harness) -> None:
    slow = harness.upstream("slow", latency_s=0.3)
    _, url = harness.gateway(
        route_config(backend("slow", slow, health={"interval_s": 0, "failures_to_eject": 1, "cooldown_s": 60}))
    )
    body = {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    for _ in range(2):
        with pytest.raises(httpx.ReadTimeout):
            raw_events_with_timeout(url, body, read_timeout=0.05)
    audit = harness.audit(2)
    assert [(a["status"], a["error"]) for a in audit] == [(499, "client_closed")] * 2
    # One failure would eject the only endpoint; a client that left must not count as one.
    assert metric(url, "llm_gateway_endpoint_healthy", backend="slow", endpoint=f"127.0.0.1:{slow.port}") == 1
    assert raw_events(url, body)[-1] == "[DONE]"


def raw_events_with_timeout(url: str, body: dict[str, Any], read_timeout: float) -> list[str]:
    timeout = httpx.Timeout(10, read=read_timeout)
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=timeout
    ) as response:
        return list(response.iter_lines())


def test_refused_continuation_ends_with_an_error_event(harness: Harness) -> None:
    cutter = harness.upstream("cutter", cut_after_chunks=2)
    refuser = harness.upstream("refuser", status=400)
    _, url = harness.gateway(
        route_config(backend("cutter", cutter), backend("refuser", refuser), recovery=True, fallbacks=["refuser"])
    )
    events = raw_events(url, {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    # Never a silent truncation: the stream that could not be continued says so.
    assert "[DONE]" not in events
    assert "refused the continuation (400)" in json.loads(events[-1])["error"]["message"]
    assert len(refuser.requests) == 1
    audit = harness.audit(1)[0]
    assert (audit["status"], audit["error"], audit["attempts"]) == (502, "stream_interrupted", 2)


def test_a_gateway_bug_mid_stream_still_ends_with_an_error_event(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = harness.upstream("a", chunk_delay_s=0.01)
    _, url = harness.gateway(route_config(backend("a", upstream)))
    feed = SseRelay.feed
    calls = 0

    def failing_feed(self: SseRelay, chunk: bytes) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("a bug in the relay")
        return feed(self, chunk)

    monkeypatch.setattr(SseRelay, "feed", failing_feed)
    events = raw_events(url, {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["message"] == "Internal gateway error."
    audit = harness.audit(1)[0]
    assert (audit["status"], audit["error"]) == (500, "internal_error")
