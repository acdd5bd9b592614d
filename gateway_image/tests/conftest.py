"""Real servers on 127.0.0.1: fake upstreams and the gateway on one background event loop thread."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
import uvloop
from aiohttp import web
from fake_upstream import Behaviour, FakeUpstream
from llm_gateway.config import parse_config
from llm_gateway.server import Gateway, start_server, stop_server
from pg_server import pg_dsn, pg_server  # noqa: F401  (fixtures: a real PostgreSQL for any test)

T = TypeVar("T")
KEY = "sk-team-alpha-secret"
OTHER_KEY = "sk-team-beta-secret"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopThread:
    """An event loop in a daemon thread; tests hand it coroutines and wait for their results (bounded)."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="servers", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_leftovers() -> None:
            # Handlers of upstreams that were still sleeping when their server stopped.
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_leftovers(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Harness:
    """Starts upstreams and gateways for one test and stops all of them afterwards."""

    def __init__(self, servers: LoopThread, tmp_path: Path) -> None:
        self.servers = servers
        self.tmp_path = tmp_path
        self.upstreams: list[FakeUpstream] = []
        self.gateways: list[tuple[Gateway, web.AppRunner]] = []

    def upstream(self, name: str, **behaviour: Any) -> FakeUpstream:
        upstream = FakeUpstream(name, Behaviour(**behaviour))
        self.servers.run(upstream.start())
        self.upstreams.append(upstream)
        return upstream

    def event(self) -> asyncio.Event:
        async def make() -> asyncio.Event:
            return asyncio.Event()

        return self.servers.run(make())

    def set_event(self, event: asyncio.Event) -> None:
        self.servers.loop.call_soon_threadsafe(event.set)

    def gateway(self, config: dict[str, Any]) -> tuple[Gateway, str]:
        config = {"audit": {"path": str(self.tmp_path / "audit.jsonl")}, **config}
        config.setdefault("teams", [team("alpha", KEY)])
        gateway = Gateway(parse_config(config))
        port = free_port()
        runner = self.servers.run(start_server(gateway, "127.0.0.1", port))
        self.gateways.append((gateway, runner))
        return gateway, f"http://127.0.0.1:{port}"

    def stop_upstream(self, upstream: FakeUpstream) -> None:
        self.servers.run(upstream.stop())

    def close(self) -> None:
        for gateway, runner in self.gateways:
            self.servers.run(stop_server(gateway, runner))
        for upstream in self.upstreams:
            self.servers.run(upstream.stop())

    @property
    def audit_path(self) -> Path:
        return self.tmp_path / "audit.jsonl"

    def audit(self, count: int) -> list[dict[str, Any]]:
        """The audit lines once there are `count` of them: a stream's line is written just after its last byte."""
        lines: list[dict[str, Any]] = []
        for _ in range(200):
            text = self.audit_path.read_text() if self.audit_path.exists() else ""
            lines = [json.loads(line) for line in text.splitlines()]
            if len(lines) >= count:
                break
            time.sleep(0.01)
        assert len(lines) == count, lines
        return lines


def team(name: str, key: str, **limits: Any) -> dict[str, Any]:
    return {"name": name, "key_sha256": [sha256(key)], **limits}


def backend(name: str, *upstreams: FakeUpstream, kind: str = "vllm", **extra: Any) -> dict[str, Any]:
    """A backend over the given upstreams; active health checks off unless `health` is given."""
    spec: dict[str, Any] = {"name": name, "kind": kind, "health": {"interval_s": 0}, **extra}
    if len(upstreams) == 1:
        spec["url"] = upstreams[0].url
    else:
        spec["endpoints"] = [u.url for u in upstreams]
    return spec


def client(base_url: str, key: str = KEY, **options: Any) -> openai.OpenAI:
    # max_retries=0: the client must not hide failures that the gateway should have handled.
    return openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=20, **options)


def async_client(base_url: str, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=20)


def chat(model: str = "llama", content: str = "hello there") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


@pytest.fixture(scope="session")
def servers() -> Iterator[LoopThread]:
    loop_thread = LoopThread()
    yield loop_thread
    loop_thread.close()


@pytest.fixture
def harness(servers: LoopThread, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(servers, tmp_path)
    try:
        yield h
    finally:
        h.close()


def metric(base_url: str, name: str, **labels: str) -> float | None:
    """The value of one sample on the gateway's /metrics page, or None if absent."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(httpx.get(base_url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None
