"""KEDA's scale-from-zero query (components/naming.py waiting_requests_query) in a real Prometheus (the Debian
binary) that scrapes the real gateway every second: above 0 while requests wait for a model at zero, 0 once they
are served. The gateway runs in this process so that its DNS look-up can be answered: "no such name" while the
model is at zero (what a headless Service with no ready pod answers), the fake upstream's address once it wakes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from llm_gateway import health
from llm_gateway.config import DnsConfig, parse_config
from llm_gateway.server import Gateway, start_server, stop_server

from components.naming import waiting_requests_query
from tests.conftest import rendered
from tests.test_dashboards import FAKE_UPSTREAM, ROOT, _stop, _wait_http, free_port
from tests.test_prometheus_real import NAMESPACE, query, running_prometheus, wait_for

pytestmark = pytest.mark.network
T = TypeVar("T")
MODEL = "llama-3-1-8b"  # the dev stack's model; a vLLM model's backend is named after the model
HOST = f"{MODEL}-pods.{NAMESPACE}.svc.cluster.local"


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_leftovers() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_leftovers(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@contextmanager
def fake_upstream() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(FAKE_UPSTREAM), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT / "gateway_image")},
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", process, "the fake upstream")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(process)


@contextmanager
def gateway_with_model_at_zero(tmp_path: Path) -> Iterator[str]:
    config = {
        "server": {"require_api_key": False, "drain_timeout_s": 1},
        "backends": [
            {
                "name": MODEL,
                "kind": "vllm",
                "dns": {"host": HOST, "refresh_s": 300},
                "health": {"interval_s": 0},
                "wake": {"deadline_s": 60},
            }
        ],
        "routes": [{"model": MODEL, "targets": [{"backend": MODEL}]}],
        "audit": {"path": str(tmp_path / "audit.jsonl")},
    }
    threads = LoopThread()
    gateway = Gateway(parse_config(config))
    port = free_port()
    runner = threads.run(start_server(gateway, "127.0.0.1", port))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        threads.run(stop_server(gateway, runner))
        threads.close()


def test_the_scale_from_zero_query_sees_waiting_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    addresses: dict[str, list[str]] = {}

    async def resolve(dns: DnsConfig) -> list[str]:
        if not addresses.get(dns.host):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return addresses[dns.host]

    monkeypatch.setattr(health, "resolve", resolve)
    # The query exactly as the dev stack's ScaledObject renders it (a model at min 0 there).
    scaled = next(o for o in rendered("dev").kubernetes_objects() if o["kind"] == "ScaledObject")
    assert scaled["metadata"]["namespace"] == NAMESPACE
    activation = next(t for t in scaled["spec"]["triggers"] if t["name"] == "gateway-waiting")["metadata"]["query"]
    assert activation == waiting_requests_query(MODEL, NAMESPACE)
    assert 'backend="llama-3-1-8b"' in activation  # the name KEDA and the gateway share
    body = {"model": MODEL, "messages": [{"role": "user", "content": "wake up"}]}
    with (
        fake_upstream() as upstream,
        gateway_with_model_at_zero(tmp_path) as gateway,
        running_prometheus(
            tmp_path / "prometheus",
            {"llm-gateway": (gateway.removeprefix("http://"), {"namespace": NAMESPACE, "pod": "llm-gateway-test"})},
        ) as prometheus,
        ThreadPoolExecutor(2) as pool,
    ):
        # The gateway is up and nothing waits: 0, not an empty result (KEDA would treat "no data" as an error).
        assert [float(s["value"][1]) for s in wait_for(prometheus, activation)] == [0.0]
        held = [pool.submit(httpx.post, gateway + "/v1/chat/completions", json=body, timeout=60) for _ in range(2)]
        waiting = wait_for(prometheus, activation, lambda value: value == 2)
        assert len(waiting) == 1  # one series: the sum over every gateway replica
        other = query(prometheus, waiting_requests_query("another-model", NAMESPACE))
        assert [float(s["value"][1]) for s in other] == [0.0]  # nothing waits for it: 0 by `or vector(0)`
        addresses[HOST] = [upstream]  # the model's first pod is ready
        assert [future.result(timeout=30).status_code for future in held] == [200, 200]
        served = wait_for(prometheus, activation, lambda value: value == 0)
        assert [float(s["value"][1]) for s in served] == [0.0]
