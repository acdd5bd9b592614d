"""Issue 16, failover fidelity: each behaviour with the `openai` client against fake upstreams that inject exactly
that fault (gateway_image/tests/fake_upstream.py). Expected figures are worked out by hand in the comments."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from test_gateway_streaming import raw_events

from conftest import Harness, backend, client, metric

pytestmark = pytest.mark.network

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def config(*backends: dict[str, Any], recovery: bool = False, **route: Any) -> dict[str, Any]:
    return {
        "backends": list(backends),
        "routes": [{"model": "llama", "targets": [{"backend": backends[0]["name"]}], **route}],
        "stream_recovery": recovery,
    }


def streamed_text(url: str, **options: Any) -> str:
    chunks = client(url).chat.completions.create(model="llama", messages=HI, stream=True, **options)
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


# ---- 1. passive ejection holds against passing active checks ---------------------------------------------------


def test_an_endpoint_that_passes_checks_but_fails_requests_is_ejected(harness: Harness) -> None:
    sick = harness.upstream("sick", status=503, health_status=200)  # /health 200, every completion 503
    spare = harness.upstream("spare")
    health = {"interval_s": 0.02, "failures_to_eject": 3, "cooldown_s": 60}
    _, url = harness.gateway(
        config(backend("primary", sick, health=health), backend("spare", spare, kind="openai"), fallbacks=["spare"])
    )
    c = client(url)
    for _ in range(15):
        assert c.chat.completions.create(model="llama", messages=HI).choices[0].message.content == ANSWER
        time.sleep(0.05)  # a couple of passing checks between requests: before the fix each reset the count
    assert sick.health_checks > 15
    # Request 1: a 503 and its same-backend retry (2 failures); request 2: the third failure ejects it. Then none:
    # 3 = failures_to_eject. Before the fix: 2 per request, 30 in all.
    assert len(sick.requests) == 3
    assert len(spare.requests) == 15
    assert metric(url, "llm_gateway_endpoint_healthy", backend="primary", endpoint=sick.label) == 0


ANSWER = "the quick brown fox jumps over the lazy dog and runs far away"


# ---- 2. a bounded same-backend retry ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_500_once_is_retried_on_the_same_backend_not_the_paid_fallback(harness: Harness, stream: bool) -> None:
    primary = harness.upstream("primary", status=500, fail_count=1)
    paid = harness.upstream("paid")
    _, url = harness.gateway(
        config(backend("primary", primary), backend("paid", paid, kind="openai"), fallbacks=["paid"])
    )
    if stream:
        assert streamed_text(url) == ANSWER
    else:
        assert client(url).chat.completions.create(model="llama", messages=HI).choices[0].message.content == ANSWER
    assert len(primary.requests) == 2 and not paid.requests
    audit = harness.audit(1)[0]
    assert (audit["status"], audit["backend"], audit["attempts"]) == (200, "primary", 2)


def test_a_429_with_a_short_retry_after_waits_and_retries_the_same_backend(harness: Harness) -> None:
    primary = harness.upstream("primary", status=429, retry_after="1", fail_count=1)
    paid = harness.upstream("paid")
    _, url = harness.gateway(
        config(backend("primary", primary), backend("paid", paid, kind="openai"), fallbacks=["paid"])
    )
    started = time.monotonic()
    assert client(url).chat.completions.create(model="llama", messages=HI).choices[0].message.content == ANSWER
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 honoured
    assert len(primary.requests) == 2 and not paid.requests


def test_a_429_with_a_retry_after_beyond_the_bound_fails_over_at_once(harness: Harness) -> None:
    primary = harness.upstream("primary", status=429, retry_after="30", fail_count=1)
    paid = harness.upstream("paid")
    _, url = harness.gateway(
        config(backend("primary", primary), backend("paid", paid, kind="openai"), fallbacks=["paid"])
    )
    started = time.monotonic()
    assert client(url).chat.completions.create(model="llama", messages=HI).choices[0].message.content == ANSWER
    assert time.monotonic() - started < 1.0  # 30 s > retry.max_retry_after_s (5): no wait
    assert len(primary.requests) == 1 and len(paid.requests) == 1


def test_same_backend_retries_can_be_turned_off(harness: Harness) -> None:
    primary = harness.upstream("primary", status=500, fail_count=1)
    paid = harness.upstream("paid")
    _, url = harness.gateway(
        config(
            backend("primary", primary, retry={"same_backend": 0}),
            backend("paid", paid, kind="openai"),
            fallbacks=["paid"],
        )
    )
    client(url).chat.completions.create(model="llama", messages=HI)
    assert len(primary.requests) == 1 and len(paid.requests) == 1


# ---- 3. a complete stream without [DONE] -----------------------------------------------------------------------


@pytest.mark.parametrize("recovery", [False, True], ids=["recovery-off", "recovery-on"])
def test_a_finished_stream_without_done_is_complete(harness: Harness, recovery: bool) -> None:
    terse = harness.upstream("terse", omit_done=True)
    spare = harness.upstream("spare")
    gateway, url = harness.gateway(
        config(backend("terse", terse), backend("spare", spare), recovery=recovery, fallbacks=["spare"])
    )
    assert streamed_text(url) == ANSWER
    events = raw_events(url, {"model": "llama", "messages": HI, "stream": True})
    assert events[-1] == "[DONE]" and not any('"error"' in e for e in events)
    assert not spare.requests  # no continuation call for an answer that was already whole
    assert gateway.runtime.backends["terse"].endpoints[0].failures == 0
    audit = harness.audit(2)
    assert [(a["status"], a["error"], a["attempts"], a["completion_tokens"]) for a in audit] == [(200, None, 1, 13)] * 2


# ---- 4. every attempt's tokens billed, each at its backend's price ----------------------------------------------

PRICES = {"cut-model": (1000.0, 2000.0), "spare-model": (3000.0, 5000.0)}


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_recovered_stream_bills_what_every_attempt_delivered(harness: Harness, fault: str) -> None:
    if fault == "cut":
        first = harness.upstream("first", cut_after_chunks=5)
    else:
        first = harness.upstream("first", hold_after_chunks=5, release=harness.event())
    spare = harness.upstream("spare")
    _, url = harness.gateway(
        {
            **config(
                backend("first", first, model="cut-model", timeout_s=0.5),
                backend("spare", spare, model="spare-model"),
                recovery=True,
                fallbacks=["spare"],
            ),
            "pricing": {m: {"input_per_million": i, "output_per_million": o} for m, (i, o) in PRICES.items()},
        }
    )
    chunks = list(
        client(url).chat.completions.create(
            model="llama", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    # First attempt: 5 words delivered, no usage from it: 5 completion tokens (one per content event) and the
    # prompt "hi" estimated at ceil(2 / 4) = 1. Continuation: the fake counts words: prompt "hi" + the 5 words
    # delivered = 6, completion the 8 words left. Totals 7 + 13; 13 = the 13 words of the answer.
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 13, 20)
    audit = harness.audit(1)[0]
    assert (audit["prompt_tokens"], audit["completion_tokens"], audit["backend"]) == (7, 13, "spare")
    cost = (1 * 1000 + 5 * 2000 + 6 * 3000 + 8 * 5000) / 1e6
    assert audit["cost_usd"] == pytest.approx(cost)
    assert metric(url, "llm_gateway_output_tokens_total", team="alpha", model="llama", backend="spare") == 13


def test_a_broken_stream_without_recovery_bills_what_was_delivered(harness: Harness) -> None:
    cutter = harness.upstream("cutter", cut_after_chunks=4)
    _, url = harness.gateway(config(backend("cutter", cutter)))
    with pytest.raises(openai.APIError):
        streamed_text(url)
    audit = harness.audit(1)[0]
    assert (audit["status"], audit["prompt_tokens"], audit["completion_tokens"]) == (502, math.ceil(2 / 4), 4)


# ---- 5. a refused continuation does not hide the real cause -----------------------------------------------------


def test_a_refused_continuation_reports_the_original_cut(harness: Harness) -> None:
    cutter = harness.upstream("cutter", cut_after_chunks=2)
    refuser = harness.upstream("refuser", status=400)
    _, url = harness.gateway(
        config(backend("cutter", cutter), backend("refuser", refuser), recovery=True, fallbacks=["refuser"])
    )
    with pytest.raises(openai.APIError) as caught:
        streamed_text(url)
    # The client learns why its stream broke (the cut on `cutter`), then that recovery failed.
    assert str(caught.value.message).startswith("Upstream cutter failed: ClientPayloadError"), caught.value.message
    events = raw_events(url, {"model": "llama", "messages": HI, "stream": True})
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_error"
    assert "Recovery failed: Upstream refuser refused the continuation (400)." in error["message"]
    audit = harness.audit(2)[-1]
    assert (audit["status"], audit["error"]) == (502, "stream_interrupted")
    assert audit["recovery_error"] == "Upstream refuser refused the continuation (400)."


# ---- 6. a malformed chunk is never relayed ---------------------------------------------------------------------


def test_a_malformed_chunk_is_not_relayed_and_ends_the_stream_with_an_error(harness: Harness) -> None:
    garbler = harness.upstream("garbler", malformed_after_chunks=3)
    _, url = harness.gateway(config(backend("garbler", garbler)))
    with pytest.raises(openai.APIError) as caught:
        streamed_text(url)
    # The openai SDK got our error event, not the bad JSON (which would raise a JSONDecodeError instead).
    assert "not a JSON object" in caught.value.message
    assert metric(url, "llm_gateway_malformed_stream_events_total", backend="garbler") == 1
    assert harness.audit(1)[0]["error"] == "stream_interrupted"


def test_a_malformed_chunk_is_recovered_like_a_cut(harness: Harness) -> None:
    garbler = harness.upstream("garbler", malformed_after_chunks=3)
    spare = harness.upstream("spare")
    _, url = harness.gateway(
        config(backend("garbler", garbler), backend("spare", spare), recovery=True, fallbacks=["spare"])
    )
    assert streamed_text(url) == ANSWER
    assert spare.requests[-1]["messages"][-1] == {"role": "assistant", "content": "the quick brown"}


def test_a_malformed_first_chunk_fails_over_whole(harness: Harness) -> None:
    garbler = harness.upstream("garbler", malformed_after_chunks=0)
    spare = harness.upstream("spare")
    _, url = harness.gateway(
        config(backend("garbler", garbler), backend("spare", spare, kind="openai"), fallbacks=["spare"])
    )
    assert streamed_text(url) == ANSWER
    assert "continue_final_message" not in spare.requests[-1]


# ---- 7. a first-token timeout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_no_first_token_in_time_fails_over_like_a_timeout(harness: Harness, stream: bool) -> None:
    # Headers and the role chunk at once, the first token after 3 s (a plain answer: nothing for 3 s).
    slow = harness.upstream("slow", first_token_delay_s=3.0, latency_s=0.0 if stream else 3.0)
    spare = harness.upstream("spare")
    _, url = harness.gateway(
        config(
            backend("slow", slow, first_token_timeout_s=0.3),
            backend("spare", spare, kind="openai"),
            fallbacks=["spare"],
        )
    )
    started = time.monotonic()
    if stream:
        assert streamed_text(url) == ANSWER
    else:
        assert client(url).chat.completions.create(model="llama", messages=HI).choices[0].message.content == ANSWER
    assert time.monotonic() - started < 2.0
    assert len(slow.requests) == 1 and len(spare.requests) == 1  # a timeout is not retried on the same backend
    audit = harness.audit(1)[0]
    assert (audit["status"], audit["backend"], audit["attempts"]) == (200, "spare", 2)


# ---- 8. context fallbacks --------------------------------------------------------------------------------------


def test_a_context_length_error_moves_to_the_context_fallback(harness: Harness) -> None:
    short = harness.upstream("short", max_model_len=5)
    long = harness.upstream("long")
    _, url = harness.gateway(
        config(backend("short", short), backend("long", long, kind="openai"), context_fallbacks=["long"])
    )
    prompt: list[ChatCompletionMessageParam] = [{"role": "user", "content": "one two three four five six seven eight"}]
    reply = client(url).chat.completions.create(model="llama", messages=prompt)
    assert reply.choices[0].message.content == ANSWER
    assert len(short.requests) == 1 and len(long.requests) == 1
    # A prompt that fits stays on the short model.
    client(url).chat.completions.create(model="llama", messages=HI)
    assert len(short.requests) == 2 and len(long.requests) == 1


def test_a_prompt_clearly_too_long_goes_straight_to_the_context_fallback(harness: Harness) -> None:
    short = harness.upstream("short")
    long = harness.upstream("long")
    _, url = harness.gateway(
        config(
            backend("short", short, max_model_len=10),
            backend("long", long, kind="openai"),
            context_fallbacks=["long"],
        )
    )
    # 200 characters, estimated at 200 / 4 = 50 tokens: clearly more than 1.25 x 10.
    prompt: list[ChatCompletionMessageParam] = [{"role": "user", "content": "word " * 40}]
    assert client(url).chat.completions.create(model="llama", messages=prompt, stream=True)
    assert not short.requests and len(long.requests) == 1


def test_without_context_fallbacks_the_400_is_passed_on(harness: Harness) -> None:
    short = harness.upstream("short", max_model_len=5)
    _, url = harness.gateway(config(backend("short", short)))
    with pytest.raises(openai.BadRequestError) as caught:
        client(url).chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "one two three four five six"}]
        )
    assert "maximum context length is 5 tokens" in caught.value.message
