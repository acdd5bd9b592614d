"""Stacks that trace requests: the OpenTelemetry Collector and Tempo in the monitoring component, vLLM's OTLP flag and
environment, the gateway's tracing block, and the config errors of the `monitoring.tracing` section."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from components import tracing
from components.tracing import TraceCollectorArgs, collector_config
from infra import render
from infra.config import PLATFORM_KEY, ConfigError
from infra.validation import parse_platform
from tests.conftest import rendered

# Hand-written from the pieces the docs name: the release's fullnameOverride `otel-collector`, the monitoring
# namespace, OTLP/HTTP's default port 4318 and its traces path /v1/traces (https://opentelemetry.io/docs/specs/otlp/).
COLLECTOR_URL = "http://otel-collector.monitoring.svc:4318/v1/traces"
TRACED = ["dev", "prod", "staging"]
RELEASE = "kubernetes:helm.sh/v3:Release"


def releases(stack: str) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: r.inputs for r in rendered(stack).resources if r.type == RELEASE}


def vllm_containers(stack: str) -> list[dict[str, Any]]:
    return [
        container
        for obj in rendered(stack).kubernetes_objects()
        if obj["kind"] == "Deployment" and obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "vllm"
        for container in obj["spec"]["template"]["spec"]["containers"]
    ]


def gateway_config(stack: str) -> dict[str, Any]:
    (config,) = [
        yaml.safe_load(obj["data"]["config.yaml"])
        for obj in rendered(stack).kubernetes_objects()
        if obj["kind"] == "ConfigMap" and "config.yaml" in obj.get("data", {})
    ]
    return config


@pytest.mark.parametrize("stack", TRACED)
def test_the_collector_is_the_pinned_official_chart_in_deployment_mode(stack: str) -> None:
    collector = releases(stack)["otel-collector"]
    assert collector["chart"] == "opentelemetry-collector"
    assert collector["version"] == "0.170.0"
    assert collector["repositoryOpts"]["repo"] == "https://open-telemetry.github.io/opentelemetry-helm-charts"
    assert collector["namespace"] == "monitoring"
    values = collector["values"]
    assert values["mode"] == "deployment"
    assert values["image"]["repository"] == "otel/opentelemetry-collector-k8s"
    pipeline = values["alternateConfig"]["service"]["pipelines"]["traces"]
    assert pipeline == {
        "receivers": ["otlp"],
        "processors": ["memory_limiter", "batch"],
        "exporters": ["otlphttp/tempo"],
    }
    exporter = values["alternateConfig"]["exporters"]["otlphttp/tempo"]
    # The otlphttp exporter appends /v1/traces to its endpoint; Tempo's OTLP/HTTP receiver listens on 4318.
    assert exporter == {"endpoint": "http://tempo.monitoring.svc:4318"}


@pytest.mark.parametrize("stack", TRACED)
def test_tempo_runs_with_the_stacks_retention_and_grafana_gets_its_datasource(stack: str) -> None:
    tempo = releases(stack)["tempo"]
    assert (tempo["chart"], tempo["version"]) == ("tempo", "2.2.4")
    assert tempo["repositoryOpts"]["repo"] == "https://grafana-community.github.io/helm-charts"
    expected = {"dev": ("72h", None), "staging": ("72h", "20Gi"), "prod": ("168h", "100Gi")}[stack]
    persistence = tempo["values"].get("persistence", {})
    assert (tempo["values"]["tempo"]["retention"], persistence.get("size")) == expected
    (datasource,) = [
        obj
        for obj in rendered(stack).kubernetes_objects()
        if obj["kind"] == "ConfigMap" and obj["metadata"].get("labels", {}).get("grafana_datasource") == "1"
    ]
    (source,) = json.loads(datasource["data"]["tempo.yaml"])["datasources"]
    assert (source["type"], source["url"]) == ("tempo", "http://tempo.monitoring.svc:3200")


@pytest.mark.parametrize("stack", TRACED)
def test_only_the_serving_namespace_reaches_the_collectors_otlp_port(stack: str) -> None:
    (policy,) = [
        obj
        for obj in rendered(stack).kubernetes_objects()
        if obj["kind"] == "NetworkPolicy" and obj["metadata"]["name"] == "otel-collector-ingress"
    ]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 4318, "protocol": "TCP"}]
    namespace = rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    assert namespace == render.read_stack_file(stack)[PLATFORM_KEY].get("namespace", "llm-serving")


@pytest.mark.parametrize("stack", TRACED)
def test_vllm_exports_its_traces_to_the_collector_over_otlp_http(stack: str) -> None:
    for container in vllm_containers(stack):
        args = container["args"]
        assert args[args.index("--otlp-traces-endpoint") + 1] == COLLECTOR_URL
        env = {e["name"]: e.get("value") for e in container["env"]}
        # vLLM 0.32 exports over gRPC unless this says otherwise (vllm/tracing/otel.py get_span_exporter).
        assert env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
        assert env["OTEL_SERVICE_NAME"] == "vllm"


@pytest.mark.parametrize(("stack", "ratio"), [("dev", 1.0), ("staging", 1.0), ("prod", 0.1)])
def test_the_gateway_exports_to_the_collector_at_the_stacks_sample_ratio(stack: str, ratio: float) -> None:
    assert gateway_config(stack)["tracing"] == {"enabled": True, "endpoint": COLLECTOR_URL, "sample_ratio": ratio}


def test_a_stack_without_tracing_renders_none_of_it() -> None:
    assert not {"otel-collector", "tempo"} & set(releases("local"))
    assert "tracing" not in gateway_config("local")
    for container in vllm_containers("local"):
        assert "--otlp-traces-endpoint" not in container["args"]
        assert not any(e["name"].startswith("OTEL_") for e in container["env"])


def test_an_otlp_backend_forwards_to_the_configured_endpoint() -> None:
    args = TraceCollectorArgs("monitoring", "llm-serving", backend="otlp", otlp_endpoint="https://otlp.example.com")
    config = collector_config(args)
    assert config["exporters"] == {"otlphttp": {"endpoint": "https://otlp.example.com"}}
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlphttp"]
    assert tracing.collector_traces_url("observability") == "http://otel-collector.observability.svc:4318/v1/traces"


def _tracing(stack: str, **settings: Any) -> dict[str, Any]:
    platform = copy.deepcopy(render.read_stack_file(stack)[PLATFORM_KEY])
    platform["monitoring"]["tracing"] = settings
    return platform


@pytest.mark.parametrize(
    ("platform", "fragments"),
    [
        (_tracing("dev", enabled=True, backend="otlp"), ["platform.monitoring.tracing", "needs `otlp_endpoint`"]),
        (
            _tracing("dev", enabled=True, otlp_endpoint="https://otlp.example.com"),
            ["platform.monitoring.tracing", "is for backend `otlp`"],
        ),
        (_tracing("dev", enabled=True, sample_ratio=2), ["platform.monitoring.tracing.sample_ratio", "2", "<= 1"]),
        (_tracing("dev", vllm_detailed_traces=["gpu"]), ["tracing.vllm_detailed_traces[0]", "'gpu'", "'worker'"]),
        (_tracing("dev", endpoint="x"), ["platform.monitoring.tracing.endpoint", "unknown key"]),
    ],
)
def test_tracing_mistakes_name_the_stack_key_value_and_what_is_accepted(
    platform: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as error:
        parse_platform("dev", platform)
    message = str(error.value)
    assert "stack 'dev'" in message
    for fragment in fragments:
        assert fragment in message, message


def test_tracing_needs_monitoring() -> None:
    platform = _tracing("dev", enabled=True)
    platform["monitoring"]["enabled"] = False
    with pytest.raises(ConfigError, match=r"platform\.monitoring.*tracing\.enabled needs monitoring\.enabled"):
        parse_platform("dev", platform)
