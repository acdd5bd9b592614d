"""Routing through the real gateway with the official openai client: split, balancing, failover, health."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable

import httpx
import openai
import pytest

from conftest import Harness, async_client, backend, client, metric

pytestmark = pytest.mark.network


def test_chat_completion_and_model_rewrite(harness: Harness) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(
        {
            "backends": [backend("vllm-a", upstream, model="meta-llama/Llama-3.1-8B-Instruct")],
            "routes": [{"model": "llama", "targets": [{"backend": "vllm-a"}]}],
        }
    )
    reply = client(url).chat.completions.create(model="llama", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == upstream.behaviour.answer
    assert reply.usage is not None and reply.usage.completion_tokens == 13
    # The backend saw the model name it expects, and never the client's key.
    assert upstream.requests[-1]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert "sk-team" not in json.dumps(upstream.headers[-1])
    models = client(url).models.list()
    assert [m.id for m in models.data] == ["llama"]


def test_completions_and_embeddings(harness: Harness) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(
        {
            "backends": [backend("vllm-a", upstream)],
            "routes": [{"model": "llama", "targets": [{"backend": "vllm-a"}]}],
        }
    )
    completion = client(url).completions.create(model="llama", prompt="once upon a time")
    assert completion.choices[0].text == upstream.behaviour.answer
    chunks = client(url).completions.create(model="llama", prompt="once upon a time", stream=True)
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == upstream.behaviour.answer
    embedding = client(url).embeddings.create(model="llama", input=["a b", "c"])
    assert len(embedding.data) == 2 and embedding.usage.prompt_tokens == 3


def test_weighted_split_follows_weights(harness: Harness) -> None:
    vllm, cloud = harness.upstream("vllm"), harness.upstream("cloud")
    _, url = harness.gateway(
        {
            "backends": [backend("vllm", vllm), backend("cloud", cloud, kind="openai")],
            "routes": [
                {"model": "llama", "targets": [{"backend": "vllm", "weight": 80}, {"backend": "cloud", "weight": 20}]}
            ],
        }
    )

    async def send_all() -> None:
        async with async_client(url) as c:
            for _ in range(8):
                await asyncio.gather(
                    *(
                        c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
                        for _ in range(50)
                    )
                )

    asyncio.run(send_all())
    assert len(vllm.requests) + len(cloud.requests) == 400
    share = len(vllm.requests) / 400
    assert 0.73 <= share <= 0.87, share


def test_least_outstanding_spreads_concurrent_slow_requests(harness: Harness) -> None:
    ups = [harness.upstream(f"u{i}", latency_s=0.4) for i in range(3)]
    _, url = harness.gateway(
        {"backends": [backend("pool", *ups)], "routes": [{"model": "llama", "targets": [{"backend": "pool"}]}]}
    )

    async def burst() -> None:
        async with async_client(url) as c:
            await asyncio.gather(
                *(
                    c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
                    for _ in range(9)
                )
            )

    asyncio.run(burst())
    # Nine requests in flight together over three endpoints: least-outstanding gives each exactly three.
    assert [len(u.requests) for u in ups] == [3, 3, 3]
    assert [u.max_in_flight for u in ups] == [3, 3, 3]


def test_least_outstanding_keeps_new_requests_off_a_busy_endpoint(harness: Harness) -> None:
    """What round robin cannot do: an endpoint busy with a slow request gets no more while its siblings are free.

    Four clients, each sending its next request when the last one is answered, 60 requests in all. Worked by hand:
    at most four are in flight, so the slow endpoint (1 s per answer) holds at most one while two fast siblings are
    idle or hold one; it gets a new request only when it is among the least loaded, i.e. free. The fast ones answer
    60 requests in well under a second, so the slow one serves a handful at most. A balancer whose counts never went
    back down picks by requests served, i.e. round robin: 20 requests, 20 s, for the slow one.
    """
    slow = harness.upstream("slow", latency_s=1.0)
    fast = [harness.upstream(f"fast{i}") for i in range(2)]
    gateway, url = harness.gateway(
        {"backends": [backend("pool", slow, *fast)], "routes": [{"model": "llama", "targets": [{"backend": "pool"}]}]}
    )
    queue = iter(range(60))

    async def worker(c: openai.AsyncOpenAI) -> None:
        for _ in queue:
            await c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])

    async def run() -> None:
        async with async_client(url) as c:
            await asyncio.gather(*(worker(c) for _ in range(4)))

    asyncio.run(run())
    assert sum(len(u.requests) for u in [slow, *fast]) == 60
    assert len(slow.requests) <= 6, [len(u.requests) for u in [slow, *fast]]
    assert [e.outstanding for e in gateway.runtime.backends["pool"].endpoints] == [0, 0, 0]


@pytest.mark.parametrize(
    "behaviour",
    [{}, {"status": 500}, {"status": 400}, {"latency_s": 2}, {"cut_after_chunks": 2}],
    ids=["ok", "500", "400", "timeout", "cut-stream"],
)
def test_every_attempt_gives_back_its_outstanding_count(harness: Harness, behaviour: dict[str, object]) -> None:
    """Whatever the outcome of an attempt, plain or streamed, the endpoint's in-flight count returns to 0 after it:
    a count that only grows sends every later request elsewhere (or, all leaking alike, round robin)."""
    first, second = harness.upstream("first", **behaviour), harness.upstream("second", **behaviour)
    gateway, url = harness.gateway(
        {
            "server": {"request_timeout_s": 1},
            "backends": [backend("pool", first, second, timeout_s=0.3)],
            "routes": [{"model": "llama", "targets": [{"backend": "pool"}]}],
        }
    )
    c = client(url)
    for stream in (False, True, False, True):
        try:
            if stream:
                for _ in c.chat.completions.create(
                    model="llama", messages=[{"role": "user", "content": "x"}], stream=True
                ):
                    pass
            else:
                c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
        except (openai.APIError, httpx.HTTPError):
            pass  # the outcome is the upstream's doing; what is checked is the gateway's bookkeeping
    assert len(first.requests) + len(second.requests) >= 4
    assert [e.outstanding for e in gateway.runtime.backends["pool"].endpoints] == [0, 0]


def test_killed_endpoint_fails_over_and_is_ejected(harness: Harness) -> None:
    first, second = harness.upstream("first"), harness.upstream("second")
    _, url = harness.gateway(
        {
            "backends": [
                backend("pool", first, second, health={"interval_s": 0.2, "failures_to_eject": 2, "cooldown_s": 30})
            ],
            "routes": [{"model": "llama", "targets": [{"backend": "pool"}]}],
        }
    )
    c = client(url)
    for _ in range(10):
        c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert first.requests and second.requests
    harness.stop_upstream(first)
    before = len(first.requests)
    # No request fails: a refused connection moves to the other endpoint of the same backend.
    for _ in range(30):
        c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert len(first.requests) == before
    assert metric(url, "llm_gateway_endpoint_healthy", backend="pool", endpoint=f"127.0.0.1:{first.port}") == 0
    assert metric(url, "llm_gateway_endpoint_healthy", backend="pool", endpoint=f"127.0.0.1:{second.port}") == 1
    assert httpx.get(url + "/readyz").status_code == 200


@pytest.mark.parametrize("status", [500, 503, 429, 401])
def test_failing_backend_falls_back(harness: Harness, status: int) -> None:
    broken = harness.upstream("broken", status=status)
    spare = harness.upstream("spare")
    _, url = harness.gateway(
        {
            "backends": [backend("primary", broken), backend("spare", spare, kind="openai")],
            "routes": [{"model": "llama", "targets": [{"backend": "primary"}], "fallbacks": ["spare"]}],
        }
    )
    reply = client(url).chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == spare.behaviour.answer
    # A 5xx or a 429 is retried once on the same backend first (retry.same_backend defaults to 1); a 401 is not.
    assert len(broken.requests) == (1 if status == 401 else 2) and len(spare.requests) == 1
    fallbacks = metric(url, "llm_gateway_fallbacks_total", model="llama", from_backend="primary", to_backend="spare")
    assert fallbacks == 1


def test_all_backends_failing_gives_openai_error(harness: Harness) -> None:
    broken = harness.upstream("broken", status=503, retry_after="7")
    _, url = harness.gateway(
        {"backends": [backend("primary", broken)], "routes": [{"model": "llama", "targets": [{"backend": "primary"}]}]}
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client(url).chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 503
    body = caught.value.response.json()["error"]
    assert "Upstream answered 503" in body["message"]
    assert body["request_id"] == caught.value.response.headers["x-request-id"]
    assert caught.value.response.headers["Retry-After"] == "7"


def test_slow_upstream_hits_the_deadline(harness: Harness) -> None:
    slow = harness.upstream("slow", latency_s=3)
    _, url = harness.gateway(
        {
            "server": {"request_timeout_s": 0.3},
            "backends": [backend("slow", slow)],
            "routes": [{"model": "llama", "targets": [{"backend": "slow"}]}],
        }
    )
    with pytest.raises(openai.APIStatusError) as caught:
        client(url).chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 504
    assert "deadline of 0.3 s" in caught.value.response.json()["error"]["message"]
    audit = harness.audit(1)
    assert audit[-1]["status"] == 504 and audit[-1]["error"] == "timeout"


def test_dns_backend_resolves_and_balances(harness: Harness) -> None:
    upstream = harness.upstream("dns")
    gateway, url = harness.gateway(
        {
            "backends": [
                {
                    "name": "vllm-dns",
                    "kind": "vllm",
                    "dns": {"host": "localhost", "port": upstream.port, "refresh_s": 0.2},
                    "health": {"interval_s": 0},
                }
            ],
            "routes": [{"model": "llama", "targets": [{"backend": "vllm-dns"}]}],
        }
    )
    endpoints = [e.base_url for e in gateway.runtime.backends["vllm-dns"].endpoints]
    assert f"http://127.0.0.1:{upstream.port}/v1" in endpoints
    c = client(url)
    # localhost may also resolve to ::1, where nothing listens: those attempts move to 127.0.0.1.
    for _ in range(6):
        c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert len(upstream.requests) == 6
    assert Counter(r["model"] for r in upstream.requests) == {"llama": 6}


def test_recovered_endpoint_is_readmitted_after_the_cooldown(harness: Harness) -> None:
    first, second = harness.upstream("first"), harness.upstream("second")
    _, url = harness.gateway(
        {
            "backends": [
                backend("pool", first, second, health={"interval_s": 0.05, "failures_to_eject": 1, "cooldown_s": 0.2})
            ],
            "routes": [{"model": "llama", "targets": [{"backend": "pool"}]}],
        }
    )
    label = {"backend": "pool", "endpoint": f"127.0.0.1:{first.port}"}
    harness.stop_upstream(first)
    assert wait_for(lambda: metric(url, "llm_gateway_endpoint_healthy", **label) == 0)
    assert httpx.get(url + "/readyz").status_code == 200  # the other endpoint still serves
    harness.servers.run(first.start())  # same port again
    assert wait_for(lambda: metric(url, "llm_gateway_endpoint_healthy", **label) == 1)
    before = len(first.requests)
    c = client(url)
    for _ in range(10):
        c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert len(first.requests) > before


def test_readyz_fails_when_no_endpoint_is_healthy(harness: Harness) -> None:
    only = harness.upstream("only")
    _, url = harness.gateway(
        {
            "backends": [backend("solo", only, health={"interval_s": 0.05, "failures_to_eject": 1, "cooldown_s": 60})],
            "routes": [{"model": "llama", "targets": [{"backend": "solo"}]}],
        }
    )
    assert httpx.get(url + "/readyz").status_code == 200
    harness.stop_upstream(only)
    assert wait_for(lambda: httpx.get(url + "/readyz").status_code == 503)
    # Panic mode still tries the ejected endpoint; the client gets what really happened, and it stays ejected.
    with pytest.raises(openai.APIStatusError) as caught:
        client(url).chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502
    assert "Upstream solo failed" in caught.value.response.json()["error"]["message"]
    assert httpx.get(url + "/readyz").status_code == 503
    assert httpx.get(url + "/healthz").status_code == 200  # alive all the same


def wait_for(condition: Callable[[], bool], attempts: int = 100) -> bool:
    """Poll a condition a bounded number of times, 20 ms apart."""
    for _ in range(attempts):
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_dead_endpoints_leave_attempts_for_the_fallback(harness: Harness) -> None:
    dead = [harness.upstream(f"dead{i}") for i in range(3)]
    spare = harness.upstream("spare")
    _, url = harness.gateway(
        {
            "backends": [backend("pool", *dead), backend("spare", spare, kind="openai")],
            "routes": [{"model": "llama", "targets": [{"backend": "pool"}], "fallbacks": ["spare"]}],
        }
    )
    for upstream in dead:
        harness.stop_upstream(upstream)
    reply = client(url).chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == spare.behaviour.answer
    audit = harness.audit(1)[0]
    # Two siblings of the dead pool were tried, then the fallback: three attempts, the configured maximum.
    assert (audit["attempts"], audit["backend"], audit["status"]) == (3, "spare", 200)


def test_an_endpoint_answering_500_is_retried_on_a_sibling_then_ejected(harness: Harness) -> None:
    failing = harness.upstream("failing", status=500)
    healthy = [harness.upstream(f"ok{i}") for i in range(2)]
    _, url = harness.gateway(
        {
            # One backend, no fallbacks: only a sibling endpoint can save a request that met the failing one.
            "backends": [
                backend("pool", failing, *healthy, health={"interval_s": 0, "failures_to_eject": 3, "cooldown_s": 60})
            ],
            "routes": [{"model": "llama", "targets": [{"backend": "pool"}]}],
        }
    )
    c = client(url)
    requests = 60
    for i in range(requests):
        if i % 2:
            reply = c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
            assert reply.choices[0].message.content == failing.behaviour.answer
        else:
            chunks = c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}], stream=True)
            text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
            assert text == failing.behaviour.answer
    # One request at a time: the failing endpoint met exactly its three consecutive failures, then was ejected.
    assert len(failing.requests) == 3
    assert sum(len(u.requests) for u in healthy) == requests
    assert metric(url, "llm_gateway_endpoint_healthy", backend="pool", endpoint=failing.label) == 0
    assert all(metric(url, "llm_gateway_endpoint_healthy", backend="pool", endpoint=u.label) == 1 for u in healthy)
    audit = harness.audit(requests)
    assert Counter(line["status"] for line in audit) == {200: requests}
    assert Counter(line["attempts"] for line in audit) == {1: requests - 3, 2: 3}


def test_a_backend_with_every_endpoint_ejected_serves_in_panic_mode(harness: Harness) -> None:
    # Health checks fail (as on a starved node) while the servers answer requests: all three get ejected.
    ups = [harness.upstream(f"u{i}", health_status=503) for i in range(3)]
    _, url = harness.gateway(
        {
            "backends": [backend("pool", *ups, health={"interval_s": 0.05, "failures_to_eject": 1, "cooldown_s": 60})],
            "routes": [{"model": "llama", "targets": [{"backend": "pool"}]}],
        }
    )

    def gauges() -> list[float | None]:
        return [metric(url, "llm_gateway_endpoint_healthy", backend="pool", endpoint=u.label) for u in ups]

    assert wait_for(lambda: gauges() == [0, 0, 0])
    assert httpx.get(url + "/readyz").status_code == 503

    async def burst() -> list[str | None]:
        async with async_client(url) as c:
            replies = await asyncio.gather(
                *(
                    c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
                    for _ in range(30)
                )
            )
        return [reply.choices[0].message.content for reply in replies]

    assert asyncio.run(burst()) == [ups[0].behaviour.answer] * 30
    # Balanced over all of them, and the health signals still tell the truth.
    assert all(u.requests for u in ups), [len(u.requests) for u in ups]
    assert gauges() == [0, 0, 0]
    assert httpx.get(url + "/readyz").status_code == 503


@pytest.mark.parametrize(("panic_threshold", "ejected_gets_traffic"), [(0.0, False), (0.9, True)])
def test_panic_threshold_share(harness: Harness, panic_threshold: float, ejected_gets_traffic: bool) -> None:
    ejected = harness.upstream("ejected", health_status=503)
    others = [harness.upstream(f"ok{i}") for i in range(2)]
    health = {"interval_s": 0.05, "failures_to_eject": 1, "cooldown_s": 60, "panic_threshold": panic_threshold}
    _, url = harness.gateway(
        {
            "backends": [backend("pool", ejected, *others, health=health)],
            "routes": [{"model": "llama", "targets": [{"backend": "pool"}]}],
        }
    )
    assert wait_for(lambda: metric(url, "llm_gateway_endpoint_healthy", backend="pool", endpoint=ejected.label) == 0)
    c = client(url)
    for _ in range(30):
        c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    # Two of three available: above a threshold of 0, below one of 0.9 (which puts the backend in panic).
    assert bool(ejected.requests) is ejected_gets_traffic, len(ejected.requests)


def test_a_fallback_with_healthy_endpoints_goes_before_panic(harness: Harness) -> None:
    primary = harness.upstream("primary", health_status=503)
    spare = harness.upstream("spare")
    _, url = harness.gateway(
        {
            "backends": [
                backend("primary", primary, health={"interval_s": 0.05, "failures_to_eject": 1, "cooldown_s": 60}),
                backend("spare", spare, kind="openai"),
            ],
            "routes": [{"model": "llama", "targets": [{"backend": "primary"}], "fallbacks": ["spare"]}],
        }
    )
    assert wait_for(lambda: metric(url, "llm_gateway_endpoint_healthy", backend="primary", endpoint=primary.label) == 0)
    c = client(url)
    for _ in range(5):
        reply = c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
        assert reply.choices[0].message.content == spare.behaviour.answer
    assert not primary.requests and len(spare.requests) == 5
