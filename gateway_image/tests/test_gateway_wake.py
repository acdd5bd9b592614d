"""A backend scaled to zero: the gateway holds its requests until an endpoint appears (activator.py).

The backend's DNS name is answered by a fake resolver: "no such name" while the backend is at zero (what a headless
Service with no ready pod answers), the fake upstream's address once a test lets it "wake".
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
from llm_gateway import health
from llm_gateway.config import ConfigError, DnsConfig, parse_config

from conftest import KEY, Harness, backend, client, metric

MODEL = "llama"
BACKEND = "llama-vllm"
HOST = "llama-pods.llm.svc.cluster.local"


class FakeDns:
    """Stands in for getaddrinfo: a name without addresses fails as glibc does for NXDOMAIN (EAI_NONAME)."""

    def __init__(self) -> None:
        self.addresses: dict[str, list[str]] = {}
        self.lookups = 0

    async def resolve(self, dns: DnsConfig) -> list[str]:
        self.lookups += 1
        urls = self.addresses.get(dns.host)
        if not urls:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(urls)


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDns]:
    dns = FakeDns()
    monkeypatch.setattr(health, "resolve", dns.resolve)
    yield dns


def wake_backend(**wake: Any) -> dict[str, Any]:
    # refresh_s far above the test's length: only the activator's own 1 s polling can find the new address.
    return {
        "name": BACKEND,
        "kind": "vllm",
        "dns": {"host": HOST, "refresh_s": 300},
        "health": {"interval_s": 0},
        "wake": {"deadline_s": 20, "keepalive_s": 0.3, **wake},
    }


def waiting(url: str) -> float | None:
    return metric(url, "llm_gateway_requests_waiting", backend=BACKEND)


def wake_outcomes(url: str, outcome: str) -> float | None:
    return metric(url, "llm_gateway_wake_requests_total", backend=BACKEND, outcome=outcome)


def until(condition: Callable[[], bool], what: str, limit_s: float = 10) -> None:
    """Poll a condition (bounded); fails naming what never happened."""
    for _ in range(int(limit_s / 0.05)):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def ask(url: str, content: str) -> str | None:
    answer = client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    return answer.choices[0].message.content


def raw_stream(url: str, content: str, lines: list[str]) -> None:
    """A streamed chat request read line by line, comments included (the openai client drops them)."""
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": content}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=headers, timeout=30) as response:
        lines.append(f"status {response.status_code} {response.headers.get('content-type')}")
        lines.extend(line for line in response.iter_lines() if line)


def test_requests_wait_for_a_backend_at_zero_and_are_served_in_order(harness: Harness, fake_dns: FakeDns) -> None:
    upstream = harness.upstream("woken")
    # One connection: requests released together reach the upstream in the order they leave the queue.
    config = {
        "backends": [{**wake_backend(), "max_connections": 1}],
        "routes": [{"model": MODEL, "targets": [{"backend": BACKEND}]}],
    }
    _, url = harness.gateway(config)
    assert httpx.get(url + "/readyz").status_code == 200  # at zero, yet ready: it takes requests to wake the model
    assert waiting(url) == 0.0
    streamed: list[str] = []
    with ThreadPoolExecutor(4) as pool:
        futures = []
        for i in range(3):
            futures.append(pool.submit(ask, url, f"plain {i}"))
            until(lambda n=i + 1: waiting(url) == n, f"{i + 1} requests waiting")  # type: ignore[misc]
        stream = pool.submit(raw_stream, url, "streamed 3", streamed)
        until(lambda: waiting(url) == 4, "4 requests waiting")
        # The streamed client got its 200 and SSE headers at once, and keep-alive comments while it waits.
        until(lambda: len(streamed) >= 3, "two keep-alive comments")
        assert upstream.requests == []
        fake_dns.addresses[HOST] = [upstream.url]
        answers = [future.result(timeout=20) for future in futures]
        stream.result(timeout=20)
    assert answers == [upstream.behaviour.answer] * 3
    assert [r["messages"][0]["content"] for r in upstream.requests] == ["plain 0", "plain 1", "plain 2", "streamed 3"]
    assert streamed[0] == "status 200 text/event-stream"
    comments = [line for line in streamed if line.startswith(":")]
    assert comments and set(comments) == {f": waiting for {MODEL}"}
    first_data = next(i for i, line in enumerate(streamed) if line.startswith("data:"))
    assert all(line.startswith(":") for line in streamed[1:first_data])
    assert streamed[-1] == "data: [DONE]"
    assert waiting(url) == 0.0
    assert wake_outcomes(url, "woken") == 4.0
    assert {line["status"] for line in harness.audit(4)} == {200}
    # Awake now: the next request goes straight through.
    assert client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "next"}]).choices
    assert wake_outcomes(url, "woken") == 4.0


def test_past_the_deadline_a_503_with_retry_after(harness: Harness, fake_dns: FakeDns) -> None:
    config = {
        "backends": [wake_backend(deadline_s=1, retry_after_s=45)],
        "routes": [{"model": MODEL, "targets": [{"backend": BACKEND}]}],
    }
    _, url = harness.gateway(config)
    with pytest.raises(openai.APIStatusError) as raised:
        client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 503
    assert raised.value.response.headers["Retry-After"] == "45"
    error = raised.value.response.json()["error"]
    assert error["code"] == "wake_timeout" and error["type"] == "api_error" and BACKEND in error["message"]
    # A stream already has its 200: the deadline ends it with an error event, which the openai client raises.
    with pytest.raises(openai.APIError, match="scaled to zero"):
        for _ in client(url).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
    assert wake_outcomes(url, "timed_out") == 2.0
    assert waiting(url) == 0.0
    lines = harness.audit(2)
    assert [(line["status"], line["error"]) for line in lines] == [(503, "wake_timeout")] * 2


def test_a_full_queue_gets_an_immediate_503(harness: Harness, fake_dns: FakeDns) -> None:
    upstream = harness.upstream("woken")
    config = {
        "backends": [wake_backend(max_waiting=2)],
        "routes": [{"model": MODEL, "targets": [{"backend": BACKEND}]}],
    }
    _, url = harness.gateway(config)
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(ask, url, f"held {i}") for i in range(2)]
        until(lambda: waiting(url) == 2, "2 requests waiting")
        with pytest.raises(openai.APIStatusError) as raised:
            client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "excess"}])
        assert raised.value.status_code == 503
        assert raised.value.response.headers["Retry-After"] == "30"
        assert raised.value.response.json()["error"]["code"] == "wake_queue_full"
        assert all(not future.done() for future in held)  # the excess did not disturb the queue
        fake_dns.addresses[HOST] = [upstream.url]
        assert [future.result(timeout=20) for future in held] == [upstream.behaviour.answer] * 2
    assert sorted(r["messages"][0]["content"] for r in upstream.requests) == ["held 0", "held 1"]
    assert wake_outcomes(url, "rejected") == 1.0 and wake_outcomes(url, "woken") == 2.0
    assert sorted(line["status"] for line in harness.audit(3)) == [200, 200, 503]


def test_the_fallback_serves_while_the_backend_wakes_and_the_demand_still_counts(
    harness: Harness, fake_dns: FakeDns
) -> None:
    upstream, spare = harness.upstream("woken"), harness.upstream("spare")
    config = {
        "backends": [wake_backend(), backend("openai-spare", spare, kind="openai")],
        "routes": [
            {
                "model": MODEL,
                "targets": [{"backend": BACKEND}],
                "fallbacks": ["openai-spare"],
                "fallback_while_waking": True,
            }
        ],
    }
    _, url = harness.gateway(config)
    answer = client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "now please"}])
    assert answer.choices[0].message.content == spare.behaviour.answer
    assert len(spare.requests) == 1 and upstream.requests == []
    # Served, but still demand for the sleeping backend: KEDA's trigger sees it and wakes the model.
    assert waiting(url) == 1.0
    assert wake_outcomes(url, "fallback") == 1.0
    fake_dns.addresses[HOST] = [upstream.url]
    until(lambda: waiting(url) == 0.0, "the demand cleared once the backend has an endpoint")
    client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "later"}])
    assert [r["messages"][0]["content"] for r in upstream.requests] == ["later"]
    assert len(spare.requests) == 1
    assert [line["backend"] for line in harness.audit(2)] == ["openai-spare", BACKEND]


def test_a_backend_back_at_zero_holds_again(harness: Harness, fake_dns: FakeDns) -> None:
    upstream = harness.upstream("woken")
    fake_dns.addresses[HOST] = [upstream.url]
    config = {"backends": [wake_backend()], "routes": [{"model": MODEL, "targets": [{"backend": BACKEND}]}]}
    gateway, url = harness.gateway(config)
    assert len(gateway.runtime.backends[BACKEND].endpoints) == 1
    # Scaled down: the name goes away, so do its endpoints (a backend without wake would keep them, see below).
    del fake_dns.addresses[HOST]
    harness.servers.run(health.refresh_endpoints(gateway.runtime.backends[BACKEND]))
    assert gateway.runtime.backends[BACKEND].endpoints == []
    done = threading.Event()

    def ask() -> None:
        client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "again"}])
        done.set()

    thread = threading.Thread(target=ask)
    thread.start()
    until(lambda: waiting(url) == 1.0, "1 request waiting")
    fake_dns.addresses[HOST] = [upstream.url]
    thread.join(20)
    assert done.is_set()


def test_without_wake_a_dns_backend_keeps_its_endpoints_when_the_name_goes(harness: Harness, fake_dns: FakeDns) -> None:
    upstream = harness.upstream("steady")
    fake_dns.addresses[HOST] = [upstream.url]
    spec = {k: v for k, v in wake_backend().items() if k != "wake"}
    gateway, url = harness.gateway(
        {"backends": [spec], "routes": [{"model": MODEL, "targets": [{"backend": BACKEND}]}]}
    )
    del fake_dns.addresses[HOST]
    harness.servers.run(health.refresh_endpoints(gateway.runtime.backends[BACKEND]))
    assert [e.base_url for e in gateway.runtime.backends[BACKEND].endpoints] == [upstream.url]
    assert client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}]).choices
    assert waiting(url) is None


def test_wake_needs_dns() -> None:
    spec = {"name": "fixed", "kind": "vllm", "url": "http://127.0.0.1:9/v1", "wake": {"deadline_s": 60}}
    with pytest.raises(ConfigError) as raised:
        parse_config(
            {
                "backends": [spec],
                "routes": [{"model": MODEL, "targets": [{"backend": "fixed"}]}],
                "server": {"require_api_key": False},
            }
        )
    assert "backend 'fixed' sets wake but not dns; a backend that scales to zero needs dns" in str(raised.value)


def test_the_wait_for_a_wake_does_not_count_against_the_request_deadline(harness: Harness, fake_dns: FakeDns) -> None:
    # A cold start far longer than request_timeout_s: the request's own deadline starts once a pod is ready.
    upstream = harness.upstream("late")
    config = {
        "server": {"request_timeout_s": 1.5},
        "backends": [wake_backend(deadline_s=30)],
        "routes": [{"model": MODEL, "targets": [{"backend": BACKEND}]}],
    }
    _, url = harness.gateway(config)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(ask, url, "slow wake")
        until(lambda: waiting(url) == 1, "1 request waiting")
        time.sleep(2.5)  # longer than request_timeout_s, well within the wake deadline
        fake_dns.addresses[HOST] = [upstream.url]
        assert answer.result(timeout=20) == upstream.behaviour.answer
    assert wake_outcomes(url, "woken") == 1.0


def test_a_stream_that_waited_gets_the_upstream_failure_as_an_error_event(harness: Harness, fake_dns: FakeDns) -> None:
    # Its 200 is gone with the first keep-alive: a failure after the wake can only end the stream with an error.
    broken = harness.upstream("broken", status=500)
    config = {"backends": [wake_backend()], "routes": [{"model": MODEL, "targets": [{"backend": BACKEND}]}]}
    _, url = harness.gateway(config)
    streamed: list[str] = []
    thread = threading.Thread(target=raw_stream, args=(url, "hi", streamed))
    thread.start()
    until(lambda: len(streamed) >= 2, "a keep-alive comment")
    fake_dns.addresses[HOST] = [broken.url]
    thread.join(20)
    assert streamed[0] == "status 200 text/event-stream"
    error = json.loads(streamed[-1].removeprefix("data: "))["error"]
    assert error["type"] == "api_error" and "Upstream answered 500" in error["message"]
    assert len(broken.requests) == 2  # the first try and one retry on the same backend (retry.same_backend 1)
    assert [(line["status"], line["error"]) for line in harness.audit(1)] == [(502, "upstream_error")]


def test_a_stream_that_waited_still_fails_over_before_its_first_content(harness: Harness, fake_dns: FakeDns) -> None:
    # The woken address refuses connections: only comments went out, so the route's fallback may still answer.
    spare = harness.upstream("spare")
    dead = harness.upstream("dead")
    harness.stop_upstream(dead)
    config = {
        "backends": [wake_backend(), backend("spare", spare)],
        "routes": [{"model": MODEL, "targets": [{"backend": BACKEND}], "fallbacks": ["spare"]}],
    }
    _, url = harness.gateway(config)
    streamed: list[str] = []
    thread = threading.Thread(target=raw_stream, args=(url, "hi", streamed))
    thread.start()
    until(lambda: len(streamed) >= 2, "a keep-alive comment")
    fake_dns.addresses[HOST] = [dead.url]
    thread.join(20)
    assert streamed[-1] == "data: [DONE]"
    text = "".join(
        json.loads(line.removeprefix("data: "))["choices"][0]["delta"].get("content") or ""
        for line in streamed
        if line.startswith("data: {")
    )
    assert text == spare.behaviour.answer
    assert [(line["status"], line["backend"]) for line in harness.audit(1)] == [(200, "spare")]


def test_a_client_that_leaves_frees_its_place(harness: Harness, fake_dns: FakeDns) -> None:
    config = {"backends": [wake_backend()], "routes": [{"model": MODEL, "targets": [{"backend": BACKEND}]}]}
    _, url = harness.gateway(config)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=1)
    # Noticed at the next keep-alive tick (0.3 s here), long before the 20 s deadline.
    until(lambda: waiting(url) == 0.0, "the departed client's place freed")
    assert [(line["status"], line["error"]) for line in harness.audit(1)] == [(499, "client_closed")]


def test_a_reload_keeps_the_waiting_requests(harness: Harness, fake_dns: FakeDns) -> None:
    upstream = harness.upstream("woken")
    config = {"backends": [wake_backend()], "routes": [{"model": MODEL, "targets": [{"backend": BACKEND}]}]}
    gateway, url = harness.gateway(config)
    with ThreadPoolExecutor(1) as pool:
        before = pool.submit(ask, url, "before the reload")
        until(lambda: waiting(url) == 1.0, "1 request waiting")
        reloaded = parse_config(
            {
                **config,
                "teams": gateway.runtime.config.model_dump()["teams"],
                "audit": {"path": str(harness.audit_path)},
            }
        )
        assert harness.servers.run(gateway.reload(reloaded))
        assert waiting(url) == 1.0  # the same queue, the same gauge
        fake_dns.addresses[HOST] = [upstream.url]
        assert before.result(timeout=20) == upstream.behaviour.answer
    assert waiting(url) == 0.0
