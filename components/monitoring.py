"""Monitoring of the serving platform: kube-prometheus-stack, dashboards, scrape targets, alerts, DCGM, autoscaling.

kube-prometheus-stack (Prometheus Operator, Prometheus, Alertmanager, Grafana, kube-state-metrics, node-exporter) is
installed as a helm Release; everything this platform adds on top is rendered here as plain Kubernetes objects, so
that a render under mocks shows (and tests check) exactly what is applied: Grafana dashboards as sidecar-loaded
ConfigMaps, PodMonitors for vLLM and the gateway, a PrometheusRule, the DCGM exporter on GPU nodes, and KEDA
ScaledObjects that scale vLLM on its request queue. See docs/monitoring.md for the why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.alerts import AlertSettings, rule_groups
from components.naming import GPU_PRESENT_LABEL, GPU_TAINT_KEY, VLLM_APP, waiting_requests_query
from components.tracing import TraceCollector, TraceCollectorArgs

DASHBOARDS_DIR = Path(__file__).parent / "dashboards"
DCGM_COUNTERS_FILE = Path(__file__).parent / "monitoring_data" / "dcgm-counters.csv"

# Pinned: chart upgrades change CRDs and defaults; bump deliberately (docs/monitoring.md).
KUBE_PROMETHEUS_STACK_CHART = "kube-prometheus-stack"
KUBE_PROMETHEUS_STACK_VERSION = "78.2.1"
KUBE_PROMETHEUS_STACK_REPO = "https://prometheus-community.github.io/helm-charts"
KEDA_CHART = "keda"
KEDA_VERSION = "2.17.2"
KEDA_REPO = "https://kedacore.github.io/charts"
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04"
# The image's ENTRYPOINT (NVIDIA/dcgm-exporter@4.2.3-4.1.3:docker/dcgm-exporter-entrypoint.sh) runs `ldconfig` (writes
# /etc/ld.so.cache) and `setcap` on the binary under `set -euo pipefail`: on a read-only root it dies before the
# exporter starts. Neither write is needed here: the ubuntu image's Dockerfile (docker/Dockerfile.ubuntu, same tag)
# already runs `ldconfig` after installing libdcgm, the NVIDIA container toolkit's hook refreshes the cache for the
# driver libraries it injects, and a uid-0 process with SYS_ADMIN in its capability set needs no file capability.
# So the pod runs the binary the entrypoint would `exec` (`$(which dcgm-exporter)`, copied to /usr/bin by the
# Dockerfile) with the same arguments, and keeps its read-only root (components/image_needs.py records this).
DCGM_EXPORTER_COMMAND = ["/usr/bin/dcgm-exporter"]
DCGM_EXPORTER_PORT = 9400

# The release is named and `fullnameOverride` set so that service names are known in advance: KEDA's
# Prometheus scaler needs the Prometheus Service address.
RELEASE_NAME = "kps"
PROMETHEUS_SERVICE = f"{RELEASE_NAME}-prometheus"
GRAFANA_ADMIN_SECRET = "grafana-admin"
GATEWAY_APP = "llm-gateway"


@dataclass(frozen=True)
class AutoscaledModel:
    """A vLLM Deployment (named like the model) that KEDA scales on requests waiting per replica."""

    name: str
    min_replicas: int
    max_replicas: int
    target_waiting_requests: float
    # A model at min_replicas 0: seconds without a request waiting or running before KEDA scales it to zero.
    idle_seconds: int = 900
    # Sequences one replica runs at once (vLLM's --max-num-seqs): the target of the in-use trigger.
    max_num_seqs: int = 64


# Alertmanager reads receiver URLs and keys from files of this Secret (alertmanagerSpec.secrets mounts each listed
# Secret at /etc/alertmanager/secrets/<name>/), so none of them sits in helm values, stored in clear in the release.
ALERTMANAGER_RECEIVERS_SECRET = "alertmanager-receivers"
ALERTMANAGER_SECRETS_DIR = f"/etc/alertmanager/secrets/{ALERTMANAGER_RECEIVERS_SECRET}"
# The `*_file` field of each receiver kind: prometheus/alertmanager@v0.28.1 (the chart's alertmanager image tag in
# kube-prometheus-stack-78.2.1 values.yaml) config/notifiers.go: SlackConfig.APIURLFile `api_url_file`,
# PagerdutyConfig.RoutingKeyFile `routing_key_file`, WebhookConfig.URLFile `url_file`.
RECEIVER_FIELDS = {
    "slack": ("slack_configs", "api_url_file"),
    "pagerduty": ("pagerduty_configs", "routing_key_file"),
    "webhook": ("webhook_configs", "url_file"),
}


@dataclass(frozen=True)
class AlertReceiver:
    """One Alertmanager receiver; `secret_value` (URL or routing key) stays a Pulumi secret."""

    name: str
    kind: str
    severities: list[str]
    secret_value: pulumi.Input[str]
    channel: str | None = None
    send_resolved: bool = True


@dataclass(frozen=True)
class MonitoringArgs:
    serving_namespace: str
    alerts: AlertSettings
    grafana_admin_password: pulumi.Input[str]
    namespace: str = "monitoring"
    light: bool = False
    retention: str = "15d"
    storage_gib: int | None = None
    storage_class: str = "gp3"
    scrape_interval: str = "15s"
    # DCGM exporter runs only when the cluster has GPU nodes.
    gpu_nodes: bool = False
    autoscaled_models: list[AutoscaledModel] = field(default_factory=list)
    # EKS (and any managed control plane): no scheduler, controller-manager or etcd endpoints to scrape.
    managed_control_plane: bool = False
    alert_receivers: list[AlertReceiver] = field(default_factory=list)
    alert_repeat_interval: str = "4h"
    # The usage ledger (components/spend_dashboard.py): Grafana's PostgreSQL datasource as a provisioning file (a
    # secret: it holds the password) and the "Spend by team" dashboard; None without a ledger.
    ledger_datasource_yaml: pulumi.Input[str] | None = None
    spend_dashboard: dict[str, Any] | None = None
    # The OpenTelemetry Collector (and its trace backend) that the gateway and vLLM export spans to; None: off.
    tracing: TraceCollectorArgs | None = None


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Dashboard file name -> Grafana dashboard model."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def _resources(cpu: str, memory: str, memory_limit: str) -> dict[str, Any]:
    # No CPU limit: throttling a scraper or a query engine makes gaps in the graphs; memory limits stop a leak.
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}}


def alertmanager_config(receivers: list[AlertReceiver], repeat_interval: str = "4h") -> dict[str, Any]:
    """The whole `alertmanager.config` of the chart. Every top-level key the chart's default has (global,
    inhibit_rules, route, receivers, templates: kube-prometheus-stack-78.2.1 values.yaml `alertmanager.config`) is
    given, so helm's merge of maps adds nothing unseen and `amtool check-config` checks what will run."""
    routes: list[dict[str, Any]] = [
        # Watchdog fires always (it proves the alert pipeline works); it is for a dead-man's switch, not for people.
        {"receiver": "null", "matchers": ['alertname = "Watchdog"']},
    ]
    entries: list[dict[str, Any]] = [{"name": "null"}]
    for receiver in receivers:
        severities = "|".join(receiver.severities)
        # `continue`: a critical alert may go both to the pager and to the chat channel.
        routes.append({"receiver": receiver.name, "matchers": [f'severity =~ "{severities}"'], "continue": True})
        configs_key, file_key = RECEIVER_FIELDS[receiver.kind]
        config: dict[str, Any] = {file_key: f"{ALERTMANAGER_SECRETS_DIR}/{receiver.name}"}
        config["send_resolved"] = receiver.send_resolved
        if receiver.channel is not None:
            config["channel"] = receiver.channel
        entries.append({"name": receiver.name, configs_key: [config]})
    return {
        "global": {"resolve_timeout": "5m"},
        # The chart's default inhibitions: a critical alert silences warnings and infos of the same alert.
        "inhibit_rules": [
            {
                "source_matchers": ["severity = critical"],
                "target_matchers": ["severity =~ warning|info"],
                "equal": ["namespace", "alertname"],
            },
            {
                "source_matchers": ["severity = warning"],
                "target_matchers": ["severity = info"],
                "equal": ["namespace", "alertname"],
            },
        ],
        "route": {
            "receiver": "null",
            "group_by": ["namespace", "alertname"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": repeat_interval,
            "routes": routes,
        },
        "receivers": entries,
        "templates": ["/etc/alertmanager/config/*.tmpl"],
    }


def _prometheus_spec(args: MonitoringArgs) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "retention": args.retention,
        "scrapeInterval": args.scrape_interval,
        "resources": _resources("100m", "512Mi", "1Gi") if args.light else _resources("500m", "2Gi", "4Gi"),
        # Select every PodMonitor/ServiceMonitor/PrometheusRule, not only those labelled with the release.
        "podMonitorSelectorNilUsesHelmValues": False,
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "ruleSelectorNilUsesHelmValues": False,
    }
    if args.storage_gib is not None:
        spec["storageSpec"] = {
            "volumeClaimTemplate": {
                "metadata": {"name": "prometheus-db"},
                "spec": {
                    "storageClassName": args.storage_class,
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": f"{args.storage_gib}Gi"}},
                },
            }
        }
    return spec


def _grafana_values(args: MonitoringArgs) -> dict[str, Any]:
    return {
        "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user", "passwordKey": "admin-password"},
        "sidecar": {
            "dashboards": {
                "enabled": True,
                "label": "grafana_dashboard",
                "labelValue": "1",
                "folderAnnotation": "grafana_folder",
                "provider": {"foldersFromFilesStructure": True},
            },
            "datasources": {"enabled": True, "defaultDatasourceEnabled": True},
        },
        "resources": _resources("50m", "128Mi", "256Mi") if args.light else _resources("100m", "256Mi", "512Mi"),
    }


def _unscrapable_control_plane(args: MonitoringArgs) -> dict[str, Any]:
    """Values that turn off the scrapes (and their rules) of control-plane parts Prometheus cannot reach."""
    disabled = {
        component: {"enabled": False}
        for component in ("kubeEtcd", "kubeScheduler", "kubeControllerManager", "kubeProxy")
    }
    if args.light:
        # A laptop has no etcd/scheduler/controller-manager endpoints to scrape; the rules would only fire.
        return {"defaultRules": {"create": False}, **disabled}
    if args.managed_control_plane:
        # EKS runs etcd, the scheduler and the controller manager out of the cluster's reach: their ServiceMonitors
        # find no endpoints and KubeSchedulerDown/KubeControllerManagerDown/etcd alerts fire forever. The chart
        # drops each one's rules with its `enabled` (kube-prometheus-stack-78.2.1
        # templates/prometheus/rules-1.14/{etcd,kube-scheduler.rules,kubernetes-system-scheduler,
        # kubernetes-system-controller-manager,kubernetes-system-kube-proxy}.yaml test `.Values.<component>.enabled`).
        # kube-proxy runs on the nodes but serves metrics on 127.0.0.1:10249 only (kube-proxy's default
        # metricsBindAddress, kept by the EKS add-on's kube-proxy-config), which Prometheus cannot reach.
        return disabled
    return {}


def helm_values(args: MonitoringArgs) -> dict[str, Any]:
    """kube-prometheus-stack values. No secret ever goes in here: values are stored in the release in clear."""
    values: dict[str, Any] = {
        "fullnameOverride": RELEASE_NAME,
        "prometheus": {"prometheusSpec": _prometheus_spec(args)},
        "grafana": _grafana_values(args),
        "alertmanager": {"enabled": not args.light},
        # kube-state-metrics feeds the replicas-not-ready and GPU-node alerts, so even the light stack keeps it.
        "kube-state-metrics": {"resources": _resources("10m", "64Mi", "128Mi")},
        # node-exporter needs host access a laptop cluster (kind) may not grant; it adds nothing to LLM dashboards.
        "nodeExporter": {"enabled": not args.light},
        "prometheusOperator": {"resources": _resources("50m", "128Mi", "256Mi")},
    }
    if not args.light:
        alertmanager_spec: dict[str, Any] = {"resources": _resources("20m", "64Mi", "128Mi")}
        if args.alert_receivers:
            alertmanager_spec["secrets"] = [ALERTMANAGER_RECEIVERS_SECRET]
        values["alertmanager"]["alertmanagerSpec"] = alertmanager_spec
        values["alertmanager"]["config"] = alertmanager_config(args.alert_receivers, args.alert_repeat_interval)
    return {**values, **_unscrapable_control_plane(args)}


def _metadata(name: str, namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "llm-serving", **(labels or {})},
    }


def _meta_args(
    name: str, namespace: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> k8s.meta.v1.ObjectMetaArgs:
    plain = _metadata(name, namespace, labels)
    return k8s.meta.v1.ObjectMetaArgs(
        name=plain["name"], namespace=plain["namespace"], labels=plain["labels"], annotations=annotations
    )


def pod_monitor(name: str, namespace: str, target_namespace: str, app: str, interval: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _metadata(name, namespace),
        "spec": {
            "namespaceSelector": {"matchNames": [target_namespace]},
            "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
            "podMetricsEndpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": interval,
                    # Dashboards and alerts group by model and node; pods carry both, metrics do not.
                    "relabelings": [
                        {
                            "sourceLabels": ["__meta_kubernetes_pod_label_llm_serving_model"],
                            "targetLabel": "model",
                            "regex": "(.+)",
                            "action": "replace",
                        },
                        {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"},
                    ]
                    if app == VLLM_APP
                    else [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
                }
            ],
        },
    }


def _dcgm_container() -> dict[str, Any]:
    return {
        "name": "dcgm-exporter",
        "image": DCGM_EXPORTER_IMAGE,
        "command": DCGM_EXPORTER_COMMAND,
        "args": ["-f", "/etc/dcgm-exporter/custom/dcgm-counters.csv"],
        "env": [
            # Without a GPU request the NVIDIA runtime hides the GPUs; the exporter watches all of them and must
            # not take one away from vLLM.
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
            {"name": "DCGM_EXPORTER_LISTEN", "value": f":{DCGM_EXPORTER_PORT}"},
            # Adds pod/namespace labels of the workload using each GPU (pod-resources API).
            {"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"},
        ],
        "ports": [{"name": "metrics", "containerPort": DCGM_EXPORTER_PORT}],
        "securityContext": {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": False,
            "runAsUser": 0,
            # SYS_ADMIN, and nothing more: DCGM's profiling (DCP) fields such as DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
            # read the GPU's performance counters, which the driver only opens to CAP_SYS_ADMIN. Full
            # `privileged` is not needed.
            "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
        },
        # A CPU limit here (unlike Prometheus): an exporter on a GPU node must never take CPU the vLLM engine
        # needs for scheduling and detokenizing.
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        },
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": DCGM_EXPORTER_PORT},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": DCGM_EXPORTER_PORT},
            "initialDelaySeconds": 45,
            "periodSeconds": 10,
        },
        "volumeMounts": [
            {"name": "counters", "mountPath": "/etc/dcgm-exporter/custom", "readOnly": True},
            {"name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def dcgm_daemonset(namespace: str, counters_configmap: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "dcgm-exporter"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _metadata("dcgm-exporter", namespace, labels),
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {**labels, "app.kubernetes.io/part-of": "llm-serving"}},
                "spec": {
                    "nodeSelector": {GPU_PRESENT_LABEL: "true"},
                    "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
                    "priorityClassName": "system-node-critical",
                    "automountServiceAccountToken": False,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [_dcgm_container()],
                    "volumes": [
                        {"name": "counters", "configMap": {"name": counters_configmap}},
                        {
                            "name": "pod-resources",
                            "hostPath": {"path": "/var/lib/kubelet/pod-resources", "type": "Directory"},
                        },
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def dcgm_service_monitor_spec(namespace: str, interval: str) -> dict[str, Any]:
    return {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "dcgm-exporter"}},
        "namespaceSelector": {"matchNames": [namespace]},
        "endpoints": [
            {
                "port": "metrics",
                "interval": interval,
                # GPU series are per node: name the node, not the exporter pod, in every series.
                "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
            }
        ],
    }


def scaled_object(model: AutoscaledModel, serving_namespace: str, monitoring_namespace: str) -> dict[str, Any]:
    query = f'sum(vllm:num_requests_waiting{{namespace="{serving_namespace}", model="{model.name}"}})'
    if model.min_replicas == 0:
        return scale_to_zero(
            _scaled_object(model, query + " or vector(0)", monitoring_namespace, serving_namespace),
            model,
            serving_namespace,
            monitoring_namespace,
        )
    return _scaled_object(model, query, monitoring_namespace, serving_namespace)


def _scaled_object(
    model: AutoscaledModel, query: str, monitoring_namespace: str, serving_namespace: str
) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(model.name, serving_namespace, {"llm-serving/model": model.name}),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": model.name},
            "minReplicaCount": model.min_replicas,
            "maxReplicaCount": model.max_replicas,
            "pollingInterval": 15,
            # A new vLLM replica takes minutes (node, image, weights); scaling down too eagerly throws that away.
            "cooldownPeriod": 600,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": 60,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": 900,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 600}],
                        },
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    # AverageValue: the HPA divides the queue by the replica count, i.e. waiting per replica.
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": f"http://{PROMETHEUS_SERVICE}.{monitoring_namespace}.svc:9090",
                        "query": query,
                        "threshold": f"{model.target_waiting_requests:g}",
                        # Prometheus unreachable: keep the current size rather than scale to the minimum.
                        "ignoreNullValues": "false",
                    },
                }
            ],
        },
    }


def scale_to_zero(
    obj: dict[str, Any], model: AutoscaledModel, serving_namespace: str, monitoring_namespace: str
) -> dict[str, Any]:
    """A model that may sit at zero replicas: woken by the gateway's count of requests held for it, kept while any
    request waits or runs, and scaled to zero after `idle_seconds` of neither.

    KEDA activates a scaled-to-zero target (0 -> 1) when any trigger's value exceeds its `activationThreshold`, and
    scales it back to 0 once no trigger has been active for `cooldownPeriod` seconds; between 1 and the maximum the
    HPA scales on `threshold` (https://keda.sh/docs/2.17/reference/scaledobject-spec/ cooldownPeriod,
    https://keda.sh/docs/2.17/concepts/scaling-deployments/ "Activating and Scaling thresholds"). At zero the vLLM
    series are gone, so each vLLM query ends in `or vector(0)`: with ignoreNullValues false an empty answer is a
    scaler error, not an idle model.
    """
    server = f"http://{PROMETHEUS_SERVICE}.{monitoring_namespace}.svc:9090"
    selector = f'namespace="{serving_namespace}"'
    extra = [
        # The gateway's activator holds requests for a model with no ready endpoint and counts them here
        # (`llm_gateway_requests_waiting{backend}`, the backend being the model's name): the wake signal.
        (
            "gateway-waiting",
            waiting_requests_query(model.name, serving_namespace),
            model.target_waiting_requests,
        ),
        # Requests running in vLLM: a model busy with requests that never queue must not count as idle.
        (
            "in-use",
            f'sum(vllm:num_requests_running{{{selector}, model="{model.name}"}}) or vector(0)',
            model.max_num_seqs,
        ),
    ]
    spec = obj["spec"]
    spec["cooldownPeriod"] = model.idle_seconds
    spec["triggers"][0]["name"] = "vllm-waiting"
    for name, query, threshold in extra:
        spec["triggers"].append(
            {
                "type": "prometheus",
                "name": name,
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": server,
                    "query": query,
                    "threshold": f"{threshold:g}",
                    "activationThreshold": "0",
                    "ignoreNullValues": "false",
                },
            }
        )
    return obj


class Monitoring(pulumi.ComponentResource):
    """Prometheus, Grafana, dashboards, alerts, DCGM exporter (GPU stacks) and KEDA autoscaling of vLLM."""

    namespace: str
    prometheus_url: str
    grafana_service: str

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args.namespace
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": ns, "labels": {"app.kubernetes.io/part-of": "llm-serving"}},
            opts=child,
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        release = self._kube_prometheus_stack(name, args, namespace, in_ns)
        after_release = pulumi.ResourceOptions(parent=self, depends_on=[release])

        self._dashboards_and_scrapes(name, args, in_ns, after_release)
        if args.gpu_nodes:
            self._dcgm_exporter(name, args, in_ns, after_release)
        if args.autoscaled_models:
            self._keda(name, args, child)
        if args.tracing is not None:
            TraceCollector(f"{name}-tracing", args.tracing, opts=in_ns)

        self.namespace = ns
        self.prometheus_url = f"http://{PROMETHEUS_SERVICE}.{ns}.svc:9090"
        self.grafana_service = f"{RELEASE_NAME}-grafana.{ns}.svc"
        self.register_outputs({"namespace": ns, "prometheus_url": self.prometheus_url})

    def _kube_prometheus_stack(
        self, name: str, args: MonitoringArgs, namespace: k8s.core.v1.Namespace, in_ns: pulumi.ResourceOptions
    ) -> k8s.helm.v3.Release:
        """The chart's release, after the Secrets its values only name (Grafana's admin, Alertmanager's receivers)."""
        ns = args.namespace
        # Grafana reads its admin credentials from this Secret (grafana.admin.existingSecret), so the password never
        # sits in helm values, which helm stores in clear in the release record.
        admin_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=_meta_args(GRAFANA_ADMIN_SECRET, ns),
            type="Opaque",
            string_data={
                "admin-user": "admin",
                "admin-password": pulumi.Output.secret(args.grafana_admin_password),
            },
            opts=in_ns,
        )
        release_deps: list[pulumi.Resource] = [namespace, admin_secret]
        if args.alert_receivers and not args.light:
            release_deps.append(
                k8s.core.v1.Secret(
                    f"{name}-alertmanager-receivers",
                    metadata=_meta_args(ALERTMANAGER_RECEIVERS_SECRET, ns),
                    type="Opaque",
                    string_data={
                        receiver.name: pulumi.Output.secret(receiver.secret_value) for receiver in args.alert_receivers
                    },
                    opts=in_ns,
                )
            )
        return k8s.helm.v3.Release(
            f"{name}-kube-prometheus-stack",
            name=RELEASE_NAME,
            chart=KUBE_PROMETHEUS_STACK_CHART,
            version=KUBE_PROMETHEUS_STACK_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KUBE_PROMETHEUS_STACK_REPO),
            namespace=ns,
            values=helm_values(args),
            # The CRDs (PodMonitor, PrometheusRule) must be established before our objects are applied.
            atomic=True,
            timeout=900,
            opts=pulumi.ResourceOptions(parent=self, depends_on=release_deps),
        )

    def _dashboards_and_scrapes(
        self, name: str, args: MonitoringArgs, in_ns: pulumi.ResourceOptions, after_release: pulumi.ResourceOptions
    ) -> None:
        """Dashboards for Grafana's sidecar; PodMonitors of vLLM and the gateway and the alert rules, once the
        release has installed their CRDs."""
        ns = args.namespace
        for filename, dashboard in load_dashboards().items():
            stem = filename.removesuffix(".json")
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{stem}",
                metadata=_meta_args(
                    f"grafana-dashboard-{stem}", ns, {"grafana_dashboard": "1"}, {"grafana_folder": "LLM serving"}
                ),
                data={filename: json.dumps(dashboard, indent=1, sort_keys=True)},
                opts=in_ns,
            )

        if args.ledger_datasource_yaml is not None and args.spend_dashboard is not None:
            self._ledger_view(name, args, in_ns)

        for monitor_name, app in (("vllm", VLLM_APP), ("llm-gateway", GATEWAY_APP)):
            monitor = pod_monitor(monitor_name, ns, args.serving_namespace, app, args.scrape_interval)
            k8s.apiextensions.CustomResource(
                f"{name}-podmonitor-{monitor_name}",
                api_version=monitor["apiVersion"],
                kind=monitor["kind"],
                metadata=monitor["metadata"],
                spec=monitor["spec"],
                opts=after_release,
            )
        k8s.apiextensions.CustomResource(
            f"{name}-rules",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata=_metadata("llm-serving-alerts", ns),
            spec={"groups": rule_groups(args.alerts)},
            opts=after_release,
        )

    def _ledger_view(self, name: str, args: MonitoringArgs, in_ns: pulumi.ResourceOptions) -> None:
        """The ledger's datasource as a Secret and the spend dashboard as a ConfigMap, both loaded by Grafana's
        sidecars: the chart's datasource sidecar reads Secrets and ConfigMaps labelled `grafana_datasource: "1"` in
        the release namespace (grafana/helm-charts, grafana-9.x values.yaml: sidecar.datasources.label, resource:
        both)."""
        ns = args.namespace
        assert args.ledger_datasource_yaml is not None and args.spend_dashboard is not None
        k8s.core.v1.Secret(
            f"{name}-datasource-ledger",
            metadata=_meta_args("grafana-datasource-ledger", ns, {"grafana_datasource": "1"}),
            type="Opaque",
            string_data={"ledger-datasource.yaml": pulumi.Output.secret(args.ledger_datasource_yaml)},
            opts=in_ns,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-dashboard-spend",
            metadata=_meta_args(
                "grafana-dashboard-spend", ns, {"grafana_dashboard": "1"}, {"grafana_folder": "LLM serving"}
            ),
            data={"spend.json": json.dumps(args.spend_dashboard, indent=1, sort_keys=True)},
            opts=in_ns,
        )

    def _dcgm_exporter(
        self, name: str, args: MonitoringArgs, in_ns: pulumi.ResourceOptions, after_release: pulumi.ResourceOptions
    ) -> None:
        ns = args.namespace
        counters = k8s.core.v1.ConfigMap(
            f"{name}-dcgm-counters",
            metadata=_meta_args("dcgm-exporter-counters", ns),
            data={"dcgm-counters.csv": DCGM_COUNTERS_FILE.read_text()},
            opts=in_ns,
        )
        daemonset = dcgm_daemonset(ns, "dcgm-exporter-counters")
        k8s.apps.v1.DaemonSet(
            f"{name}-dcgm-exporter",
            metadata=daemonset["metadata"],
            spec=daemonset["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[counters]),
        )
        labels = {"app.kubernetes.io/name": "dcgm-exporter"}
        k8s.core.v1.Service(
            f"{name}-dcgm-exporter",
            metadata=_meta_args("dcgm-exporter", ns, labels),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=labels,
                ports=[k8s.core.v1.ServicePortArgs(name="metrics", port=DCGM_EXPORTER_PORT, target_port="metrics")],
            ),
            opts=in_ns,
        )
        # Only Prometheus may read the exporter (GPU inventory and workload names are not for every pod).
        k8s.networking.v1.NetworkPolicy(
            f"{name}-dcgm-exporter",
            metadata=_meta_args("dcgm-exporter", ns, labels),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                pod_selector=k8s.meta.v1.LabelSelectorArgs(
                                    match_labels={"app.kubernetes.io/name": "prometheus"}
                                )
                            )
                        ],
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=DCGM_EXPORTER_PORT, protocol="TCP")],
                    )
                ],
            ),
            opts=in_ns,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-servicemonitor-dcgm",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=_metadata("dcgm-exporter", ns),
            spec=dcgm_service_monitor_spec(ns, args.scrape_interval),
            opts=after_release,
        )

    def _keda(self, name: str, args: MonitoringArgs, child: pulumi.ResourceOptions) -> None:
        keda_namespace = k8s.core.v1.Namespace(f"{name}-keda-namespace", metadata={"name": "keda"}, opts=child)
        keda = k8s.helm.v3.Release(
            f"{name}-keda",
            name="keda",
            chart=KEDA_CHART,
            version=KEDA_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KEDA_REPO),
            namespace="keda",
            values={
                "resources": {
                    "operator": _resources("50m", "128Mi", "512Mi"),
                    "metricServer": _resources("50m", "128Mi", "512Mi"),
                    "webhooks": _resources("10m", "64Mi", "256Mi"),
                }
            },
            atomic=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[keda_namespace]),
        )
        for model in args.autoscaled_models:
            obj = scaled_object(model, args.serving_namespace, args.namespace)
            k8s.apiextensions.CustomResource(
                f"{name}-scaledobject-{model.name}",
                api_version=obj["apiVersion"],
                kind=obj["kind"],
                metadata=obj["metadata"],
                spec=obj["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[keda]),
            )
