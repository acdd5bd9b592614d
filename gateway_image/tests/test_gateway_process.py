"""`python -m llm_gateway` as a real process: SIGHUP reload under load, SIGTERM drain, config check."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import KEY, Harness, async_client, backend, free_port, team

pytestmark = pytest.mark.network


class GatewayProcess:
    def __init__(self, config_path: Path, tmp_path: Path) -> None:
        self.config_path = config_path
        self.stderr_path = tmp_path / "gateway.stderr"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "--config", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr_path.open("wb"),
        )

    def wait_ready(self, url: str) -> None:
        for _ in range(100):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"the gateway did not start: {self.stderr_path.read_text()}")

    def wait_for_stderr(self, text: str) -> None:
        for _ in range(100):
            if text in self.stderr_path.read_text():
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in {self.stderr_path.read_text()!r}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[Any]:
    started: list[GatewayProcess] = []

    def start(config: dict[str, Any]) -> tuple[GatewayProcess, str]:
        port = free_port()
        server = {"host": "127.0.0.1", "port": port, "drain_timeout_s": 5, "shutdown_delay_s": 0}
        config = {
            "teams": [team("alpha", KEY)],
            "audit": {"path": str(tmp_path / "audit.jsonl")},
            **config,
            "server": {**server, **config.get("server", {})},
        }
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        process = GatewayProcess(path, tmp_path)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        process.wait_ready(url)
        return process, url

    yield start
    for process in started:
        process.stop()


def rewrite(path: Path, **changes: Any) -> None:
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))


def test_sighup_reload_under_load_loses_no_request(harness: Harness, start_process: Any) -> None:
    old, new = harness.upstream("old", latency_s=0.05), harness.upstream("new", latency_s=0.05)
    process, url = start_process(
        {
            "backends": [backend("old", old), backend("new", new)],
            "routes": [{"model": "llama", "targets": [{"backend": "old"}]}],
        }
    )

    async def load() -> tuple[int, int, list[str]]:
        ok, failures = 0, []
        reloaded = False
        async with async_client(url) as c:

            async def worker() -> None:
                nonlocal ok
                for _ in range(60):
                    try:
                        await c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
                        ok += 1
                    except Exception as exc:  # every failure counts, whatever its kind
                        failures.append(repr(exc))
                    if reloaded and len(new.requests) >= 20:
                        return

            async def reload_midway() -> None:
                nonlocal reloaded
                while ok < 40:
                    await asyncio.sleep(0.01)
                rewrite(process.config_path, routes=[{"model": "llama", "targets": [{"backend": "new"}]}])
                process.process.send_signal(signal.SIGHUP)
                reloaded = True

            await asyncio.gather(reload_midway(), *(worker() for _ in range(8)))
        return ok, len(new.requests), failures

    ok, to_new, failures = asyncio.run(load())
    assert failures == []
    assert ok >= 60 and to_new >= 20
    process.wait_for_stderr("configuration reloaded")
    old_count = len(old.requests)
    asyncio.run(_one_request(url))
    assert len(old.requests) == old_count  # after the reload, nothing goes to the old route

    # A broken file is refused and the running config stays.
    process.config_path.write_text("backends: [\n")
    process.process.send_signal(signal.SIGHUP)
    process.wait_for_stderr("reload rejected")
    asyncio.run(_one_request(url))
    assert process.process.poll() is None


async def _one_request(url: str) -> None:
    async with async_client(url) as c:
        await c.chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])


def test_sigterm_drains_in_flight_requests(harness: Harness, start_process: Any) -> None:
    slow = harness.upstream("slow", latency_s=1.0)
    process, url = start_process(
        {"backends": [backend("slow", slow)], "routes": [{"model": "llama", "targets": [{"backend": "slow"}]}]}
    )

    async def request_then_stop() -> int:
        async with httpx.AsyncClient(timeout=10) as c:
            pending = asyncio.ensure_future(
                c.post(
                    url + "/v1/chat/completions",
                    json={"model": "llama", "messages": [{"role": "user", "content": "x"}]},
                    headers={"Authorization": f"Bearer {KEY}"},
                )
            )
            for _ in range(100):
                if slow.in_flight:
                    break
                await asyncio.sleep(0.02)
            process.process.send_signal(signal.SIGTERM)
            response = await pending
            return response.status_code

    assert asyncio.run(request_then_stop()) == 200
    assert process.process.wait(10) == 0
    process.wait_for_stderr("draining")


def test_sigterm_keeps_serving_during_the_shutdown_delay(harness: Harness, start_process: Any) -> None:
    upstream = harness.upstream("a")
    process, url = start_process(
        {
            "server": {"shutdown_delay_s": 3},
            "backends": [backend("a", upstream)],
            "routes": [{"model": "llama", "targets": [{"backend": "a"}]}],
        }
    )
    process.process.send_signal(signal.SIGTERM)
    process.wait_for_stderr("draining")
    # Load balancers see the pod as not ready, while requests that still arrive are served.
    assert httpx.get(url + "/readyz").status_code == 503
    asyncio.run(_one_request(url))
    assert process.process.wait(10) == 0


def test_check_flag_reports_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"backends": [{"name": "a", "kind": "tgi", "url": "http://x/v1"}], "routes": []}))
    result = subprocess.run(
        [sys.executable, "-m", "llm_gateway", "--config", str(bad), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 2
    assert "backends[0].kind: Input should be 'vllm' or 'openai' (got 'tgi')" in result.stderr
    assert "routes: List should have at least 1 item" in result.stderr


def test_schema_flag_prints_the_documented_schema() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llm_gateway", "--schema"], capture_output=True, text=True, timeout=30, check=True
    )
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["BackendConfig"]["additionalProperties"] is False
    # Every field of every model carries a description for the people who write the ConfigMap.
    for name, model in [("GatewayConfig", schema), *schema["$defs"].items()]:
        for field, spec in model["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"
