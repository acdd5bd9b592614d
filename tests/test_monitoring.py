"""The Monitoring component under the Pulumi mocks, per stack: what it registers and with which inputs."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components.gpu_node_group import node_labels
from components.monitoring import DCGM_COUNTERS_FILE, DCGM_EXPORTER_IMAGE, load_dashboards
from components.naming import GPU_TAINT_KEY
from infra import render
from infra.config import PLATFORM_KEY
from infra.observability import wire_monitoring
from infra.plan import plan_platform, replica_bounds
from infra.secrets import Secrets
from infra.validation import parse_platform
from tests.conftest import rendered

STACKS = render.stack_names()
GPU_STACKS = ["dev", "prod", "staging"]


def component_records(stack: str) -> list[render.Recorded]:
    result = rendered(stack)
    components = [record for record in result.resources if record.type == "llm-serving:index:Monitoring"]
    assert len(components) == 1, f"{stack}: expected one Monitoring component"
    return [record for record in result.resources if record.parent == components[0].urn]


def objects(stack: str, kind: str) -> dict[str, dict[str, Any]]:
    """The component's Kubernetes objects of one kind, by metadata.name."""
    found = {}
    for record in component_records(stack):
        if record.type.startswith("kubernetes:") and record.inputs.get("kind") == kind:
            found[record.inputs["metadata"]["name"]] = record.inputs
    return found


def release(stack: str, name: str) -> dict[str, Any]:
    releases = {
        record.inputs["name"]: record.inputs
        for record in component_records(stack)
        if record.type == "kubernetes:helm.sh/v3:Release"
    }
    assert name in releases, f"{stack}: no helm release {name!r} (found {sorted(releases)})"
    return releases[name]


def stack_platform(stack: str) -> Any:
    return parse_platform(stack, render.read_stack_file(stack)[PLATFORM_KEY])


@pytest.mark.parametrize("stack", STACKS)
def test_every_object_has_an_explicit_name(stack: str) -> None:
    for record in component_records(stack):
        if record.type == "kubernetes:helm.sh/v3:Release":
            assert record.inputs["name"], record.name
        elif record.type.startswith("kubernetes:"):
            assert record.inputs["metadata"]["name"], record.name


@pytest.mark.parametrize(
    ("stack", "retention", "storage"), [("prod", "30d", "200Gi"), ("staging", "7d", "50Gi"), ("dev", "3d", None)]
)
def test_prometheus_retention_and_volume_follow_the_stack(stack: str, retention: str, storage: str | None) -> None:
    spec = release(stack, "kps")["values"]["prometheus"]["prometheusSpec"]
    assert spec["retention"] == retention
    if storage is None:
        assert "storageSpec" not in spec
    else:
        claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
        assert claim["storageClassName"] == "gp3"
        assert claim["resources"]["requests"]["storage"] == storage
        assert claim["accessModes"] == ["ReadWriteOnce"]
    assert spec["resources"]["requests"]["memory"] and spec["resources"]["limits"]["memory"]


def test_chart_is_pinned_and_selects_every_monitor_and_rule() -> None:
    kps = release("prod", "kps")
    assert kps["chart"] == "kube-prometheus-stack" and kps["version"].count(".") == 2
    assert kps["namespace"] == "monitoring"
    spec = kps["values"]["prometheus"]["prometheusSpec"]
    for key in ("podMonitorSelectorNilUsesHelmValues", "serviceMonitorSelectorNilUsesHelmValues"):
        assert spec[key] is False
    assert spec["ruleSelectorNilUsesHelmValues"] is False


@pytest.mark.parametrize("stack", STACKS)
def test_grafana_password_only_through_an_existing_secret(stack: str) -> None:
    grafana = release(stack, "kps")["values"]["grafana"]
    assert grafana["admin"] == {
        "existingSecret": "grafana-admin",
        "userKey": "admin-user",
        "passwordKey": "admin-password",
    }
    assert "adminPassword" not in json.dumps(grafana)
    secret = objects(stack, "Secret")["grafana-admin"]
    assert secret["metadata"]["namespace"] == "monitoring"
    data = secret["stringData"]
    # The render masks secret leaves (or the whole field, depending on how the SDK reports secretness).
    assert data == render.SECRET_MARK or data["admin-password"] == render.SECRET_MARK
    # The stand-in password the render feeds in appears nowhere in clear: not in values, not in a ConfigMap.
    everything = json.dumps([record.inputs for record in rendered(stack).resources])
    assert "placeholder-grafanaAdminPassword" not in everything


@pytest.mark.parametrize("stack", STACKS)
def test_dashboards_are_sidecar_configmaps_with_the_shipped_json(stack: str) -> None:
    sidecar = release(stack, "kps")["values"]["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True and (sidecar["label"], sidecar["labelValue"]) == ("grafana_dashboard", "1")
    configmaps = {name: cm for name, cm in objects(stack, "ConfigMap").items() if name.startswith("grafana-dashboard-")}
    # The spend dashboard is built per stack from its budgets (tests/test_stores.py checks it).
    configmaps.pop("grafana-dashboard-spend", None)
    assert sorted(configmaps) == ["grafana-dashboard-gateway", "grafana-dashboard-gpus", "grafana-dashboard-vllm"]
    shipped = load_dashboards()
    for cm in configmaps.values():
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((filename, text),) = cm["data"].items()
        assert json.loads(text) == shipped[filename]


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_dcgm_exporter_runs_on_gpu_nodes_only_tolerating_their_taint(stack: str) -> None:
    daemonset = objects(stack, "DaemonSet")["dcgm-exporter"]
    pod = daemonset["spec"]["template"]["spec"]
    # The same label and taint the GPU node group puts on its nodes.
    gpu_labels = node_labels("g", "L40S", {})
    assert pod["nodeSelector"].items() <= gpu_labels.items()
    assert {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    (container,) = pod["containers"]
    assert container["image"] == DCGM_EXPORTER_IMAGE and not container["image"].endswith(":latest")
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    # The exporter reads the shipped counters file from the mounted ConfigMap.
    counters = objects(stack, "ConfigMap")["dcgm-exporter-counters"]
    assert counters["data"] == {"dcgm-counters.csv": DCGM_COUNTERS_FILE.read_text()}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "counters")
    assert container["args"] == ["-f", f"{mount['mountPath']}/dcgm-counters.csv"]
    assert {"name": "counters", "configMap": {"name": "dcgm-exporter-counters"}} in pod["volumes"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    policy = objects(stack, "NetworkPolicy")["dcgm-exporter"]["spec"]
    assert policy["podSelector"]["matchLabels"] == daemonset["spec"]["selector"]["matchLabels"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": 9400, "protocol": "TCP"}]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    service = objects(stack, "Service")["dcgm-exporter"]
    assert service["spec"]["selector"] == daemonset["spec"]["selector"]["matchLabels"]
    monitor = objects(stack, "ServiceMonitor")["dcgm-exporter"]
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"


def test_no_dcgm_exporter_without_gpus() -> None:
    assert "dcgm-exporter" not in objects("local", "DaemonSet")
    assert objects("local", "ServiceMonitor") == {}


@pytest.mark.parametrize("stack", STACKS)
def test_pod_monitors_scrape_vllm_and_gateway_pods_in_the_serving_namespace(stack: str) -> None:
    monitors = objects(stack, "PodMonitor")
    for name, app in (("vllm", "vllm"), ("llm-gateway", "llm-gateway")):
        spec = monitors[name]["spec"]
        assert spec["selector"] == {"matchLabels": {"app.kubernetes.io/name": app}}
        assert spec["namespaceSelector"] == {"matchNames": [stack_platform(stack).namespace]}
        (endpoint,) = spec["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    relabel = monitors["vllm"]["spec"]["podMetricsEndpoints"][0]["relabelings"][0]
    assert relabel["sourceLabels"] == ["__meta_kubernetes_pod_label_llm_serving_model"]
    assert relabel["targetLabel"] == "model"


def test_scaled_objects_only_for_autoscaled_models_bounded_by_gpus() -> None:
    scaled = objects("prod", "ScaledObject")
    assert sorted(scaled) == ["llama-3-1-8b", "llama-3-3-70b"]
    big = scaled["llama-3-3-70b"]["spec"]
    # replicas 2; autoscaling.max_replicas 3; node group gpu-l40s-x4: max_size 3 x 4 GPUs // 4 GPUs per replica = 3.
    assert (big["minReplicaCount"], big["maxReplicaCount"]) == (2, 3)
    assert big["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama-3-3-70b"}
    (trigger,) = big["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "8"
    assert (
        trigger["metadata"]["query"] == 'sum(vllm:num_requests_waiting{namespace="llm-serving", model="llama-3-3-70b"})'
    )
    assert trigger["metadata"]["serverAddress"] == "http://kps-prometheus.monitoring.svc:9090"
    small = scaled["llama-3-1-8b"]["spec"]
    assert (small["minReplicaCount"], small["maxReplicaCount"]) == (2, 4)
    assert small["triggers"][0]["metadata"]["threshold"] == "4"
    assert scaled["llama-3-1-8b"]["metadata"]["namespace"] == "llm-serving"
    assert release("prod", "keda")["chart"] == "keda"


@pytest.mark.parametrize("stack", ["local"])
def test_no_keda_without_autoscaled_models(stack: str) -> None:
    assert objects(stack, "ScaledObject") == {}
    assert "keda" not in {r.inputs.get("name") for r in component_records(stack) if r.type.endswith(":Release")}


def test_max_replicas_is_capped_by_the_node_groups_gpus() -> None:
    platform = stack_platform("prod")
    model = next(m for m in platform.models if m.name == "llama-3-3-70b")
    assert model.autoscaling is not None
    greedy = model.model_copy(update={"autoscaling": model.autoscaling.model_copy(update={"max_replicas": 10})})
    # 3 nodes x 4 GPUs hold 3 replicas of 4 GPUs, whatever the model asks for.
    assert replica_bounds(platform, greedy) == (2, 3)
    assert replica_bounds(platform, model) == (2, 3)


def test_max_replicas_leaves_room_for_other_models_on_the_same_group() -> None:
    platform = stack_platform("prod")
    small = next(m for m in platform.models if m.name == "llama-3-1-8b")
    assert small.autoscaling is not None
    # A second 1-GPU model with 2 replicas joins gpu-l40s (max_size 4 x 1 GPU): 4 - 2 = 2 left for llama-3-1-8b.
    neighbour = small.model_copy(update={"name": "neighbour", "autoscaling": None})
    shared = platform.model_copy(update={"models": [*platform.models, neighbour]})
    assert replica_bounds(shared, small) == (2, 2)


def test_light_local_stack_is_laptop_sized() -> None:
    values = release("local", "kps")["values"]
    assert values["alertmanager"]["enabled"] is False
    assert values["nodeExporter"]["enabled"] is False
    spec = values["prometheus"]["prometheusSpec"]
    assert "storageSpec" not in spec and spec["retention"] == "1d"
    assert spec["resources"]["limits"]["memory"] == "1Gi"
    prod_spec = release("prod", "kps")["values"]["prometheus"]["prometheusSpec"]
    assert prod_spec["resources"]["limits"]["memory"] == "4Gi"
    assert release("prod", "kps")["values"]["alertmanager"]["enabled"] is True


@pytest.mark.parametrize("stack", ["prod", "local"])
def test_plain_kubernetes_objects_pass_strict_schema_validation(stack: str) -> None:
    version = stack_platform(stack).cluster_version
    for kind in ("DaemonSet", "Service", "ConfigMap", "Secret", "Namespace", "NetworkPolicy"):
        for obj in objects(stack, kind).values():
            checked = obj if obj.get("stringData") != render.SECRET_MARK else {**obj, "stringData": {}}
            kubernetes_validate.validate(checked, version, strict=True)


def test_monitoring_disabled_creates_nothing_and_a_missing_password_is_refused() -> None:
    platform = stack_platform("dev")
    disabled = platform.model_copy(update={"monitoring": platform.monitoring.model_copy(update={"enabled": False})})
    no_secrets = Secrets(None, None, None, None, None)
    assert wire_monitoring(disabled, plan_platform(disabled), no_secrets, pulumi.ResourceOptions()) == {}
    with pytest.raises(pulumi.RunError, match="grafanaAdminPassword"):
        wire_monitoring(platform, plan_platform(platform), no_secrets, pulumi.ResourceOptions())
