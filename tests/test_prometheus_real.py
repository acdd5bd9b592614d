"""A real Prometheus (the Debian binary) on 127.0.0.1 scrapes the real gateway and a real vLLM every second, loads
our alerting rules, and answers the dashboards' own queries with data.

The PodMonitors add `namespace`, `pod` and `model` labels from Kubernetes; here static target labels stand in for
them, so the dashboards' and the autoscaler's queries run unchanged.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from components.monitoring import AutoscaledModel, load_dashboards, scaled_object
from tests.conftest import rendered
from tests.test_dashboards import GRAFANA_VARIABLE, _wait_http, free_port, gateway_with_fake_upstream
from tests.vllm_server import VllmServer, vllm_server

pytestmark = pytest.mark.network
__all__ = ["vllm_server"]  # the fixture, imported for pytest

NAMESPACE = "llm-serving"
QUERY_DEADLINE_SECONDS = 45
# Values for the dashboards' variables; regex matchers get "match anything" like Grafana's "All".
VARIABLES = {"namespace": NAMESPACE, "model": ".*", "pod": ".*", "backend": ".*", "team": ".*"}


def dashboard_expr(filename: str, title: str, ref_id: str = "A") -> str:
    """A panel query exactly as shipped, with the variables Grafana would fill in."""
    panel = next(p for p in load_dashboards()[filename]["panels"] if p["title"] == title)
    expr: str = next(t["expr"] for t in panel["targets"] if t["refId"] == ref_id)
    return GRAFANA_VARIABLE.sub(lambda m: "1m" if m.group(1).startswith("__") else VARIABLES[m.group(1)], expr)


@contextmanager
def running_prometheus(tmp_path: Path, jobs: dict[str, tuple[str, dict[str, str]]]) -> Iterator[str]:
    """Prometheus scraping `jobs` (name -> (host:port, target labels)) every second, with the local stack's rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed: run scripts/install-prometheus.sh")
    tmp_path.mkdir(parents=True, exist_ok=True)
    rules = next(o for o in rendered("local").kubernetes_objects() if o["kind"] == "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules["spec"]))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": [target], "labels": labels}]}
            for name, (target, labels) in jobs.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/-/ready", process, "Prometheus", attempts=200)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(prometheus + "/api/v1/query", params={"query": expr}, timeout=5)
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for(prometheus: str, expr: str, accept: Any = lambda value: True) -> list[dict[str, Any]]:
    """Poll an instant query until a series' value passes `accept` (bounded by QUERY_DEADLINE_SECONDS)."""
    deadline = time.monotonic() + QUERY_DEADLINE_SECONDS
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = query(prometheus, expr)
        if any(accept(float(series["value"][1])) for series in result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"no acceptable data for {expr!r} after {QUERY_DEADLINE_SECONDS} s: {json.dumps(result)}")


def test_prometheus_scrapes_the_real_gateway_and_answers_dashboard_queries(tmp_path: Path) -> None:
    with gateway_with_fake_upstream(tmp_path / "gateway") as gateway:
        target = gateway.url.removeprefix("http://")
        labels = {"namespace": NAMESPACE, "pod": "llm-gateway-test"}
        with running_prometheus(tmp_path / "prometheus", {"llm-gateway": (target, labels)}) as prometheus:
            assert gateway.one_streamed_request()
            # A counter's first sample is its first value: a second request after a scrape makes a rate.
            wait_for(prometheus, "llm_gateway_requests_total")
            assert gateway.one_streamed_request()

            requests = wait_for(
                prometheus, dashboard_expr("gateway.json", "Requests/s by route and backend"), lambda v: v > 0
            )
            assert {(s["metric"]["model"], s["metric"]["backend"]) for s in requests} == {("llama", "spare")}
            fallbacks = wait_for(prometheus, dashboard_expr("gateway.json", "Fallback ratio by route"), lambda v: v > 0)
            # Every request failed over from the dead primary: the ratio is 1.
            assert float(fallbacks[0]["value"][1]) == pytest.approx(1.0)
            budget = wait_for(prometheus, dashboard_expr("gateway.json", "Month-to-date spend vs budget", "B"))
            assert [(s["metric"]["team"], float(s["value"][1])) for s in budget] == [("search", 10.0)]
            spend = wait_for(prometheus, dashboard_expr("gateway.json", "Budget used this month"), lambda v: v > 0)
            assert 0 < float(spend[0]["value"][1]) < 0.01

            # Our rules load and evaluate against real data (the fallback rate is far above its 10% budget).
            rules = httpx.get(prometheus + "/api/v1/rules", timeout=5).json()["data"]["groups"]
            assert {group["name"] for group in rules} == {"llm-serving.vllm", "llm-serving.gateway"}
            assert all(rule["health"] in {"ok", "unknown"} for group in rules for rule in group["rules"])


@pytest.mark.vllm
def test_prometheus_scrapes_real_vllm_for_the_dashboard_and_the_autoscaler(
    vllm_server: VllmServer, tmp_path: Path
) -> None:
    target = vllm_server.root_url.removeprefix("http://")
    labels = {"namespace": NAMESPACE, "pod": "vllm-test", "model": vllm_server.model}
    client = openai.OpenAI(base_url=vllm_server.base_url, api_key=vllm_server.api_key, max_retries=0, timeout=60)
    with running_prometheus(tmp_path, {"vllm": (target, labels)}) as prometheus:
        running = wait_for(prometheus, dashboard_expr("vllm.json", "Requests running"))
        assert {s["metric"]["model"] for s in running} == {vllm_server.model}
        for _ in range(2):
            client.chat.completions.create(
                model=vllm_server.model, messages=[{"role": "user", "content": "hi"}], max_tokens=8
            )
        tokens = wait_for(prometheus, dashboard_expr("vllm.json", "Generation tokens/s"), lambda v: v > 0)
        assert tokens[0]["metric"]["pod"] == "vllm-test"
        ttft = wait_for(prometheus, dashboard_expr("vllm.json", "Time to first token", "B"), lambda v: v > 0)
        assert 0 < float(ttft[0]["value"][1]) < 60
        kv = wait_for(prometheus, dashboard_expr("vllm.json", "KV cache usage"))
        assert 0 <= float(kv[0]["value"][1]) <= 1

        # The ScaledObject's query, unchanged, finds the queue of this model (empty now: 0 waiting).
        autoscaler = scaled_object(AutoscaledModel(vllm_server.model, 1, 2, 4.0), NAMESPACE, "monitoring")
        waiting = wait_for(prometheus, autoscaler["spec"]["triggers"][0]["metadata"]["query"])
        assert [float(s["value"][1]) for s in waiting] == [0.0]
