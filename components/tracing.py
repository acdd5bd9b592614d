"""Request tracing: an OpenTelemetry Collector that receives OTLP from the gateway and vLLM, and where it sends it.

The collector (official chart open-telemetry/opentelemetry-collector, mode deployment) is the one address every
workload exports to, so the trace backend can change without touching a pod. Its backend is either Grafana Tempo
(chart grafana-community/tempo, single binary, added to Grafana as a datasource beside Prometheus: traces open next
to the dashboards that show the slow requests) or any OTLP/HTTP endpoint the operator already runs (a vendor, a
central Tempo): `backend: otlp`. The values are pure functions, tested as data; see docs/monitoring.md (Tracing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

# Pinned: chart upgrades change defaults and the collector's config schema; bump deliberately.
# open-telemetry/opentelemetry-helm-charts@f5178cb9:charts/opentelemetry-collector/Chart.yaml (version 0.170.0,
# appVersion 0.158.0: the image tag used when none is set).
COLLECTOR_CHART = "opentelemetry-collector"
COLLECTOR_VERSION = "0.170.0"
COLLECTOR_REPO = "https://open-telemetry.github.io/opentelemetry-helm-charts"
# The chart requires image.repository (templates/NOTES.txt fails without it). The k8s distribution carries the
# otlp receiver, otlphttp exporter, batch and memory_limiter processors and the health_check extension used below.
COLLECTOR_IMAGE = "otel/opentelemetry-collector-k8s"
COLLECTOR_RELEASE = "otel-collector"  # also its fullnameOverride: the Service's name
# Grafana Tempo's single-binary chart moved from grafana/helm-charts (deprecated there at 1.24.4) to
# grafana-community/helm-charts@3386a115:charts/tempo/Chart.yaml (version 2.2.4, appVersion 2.10.8).
TEMPO_CHART = "tempo"
TEMPO_VERSION = "2.2.4"
TEMPO_REPO = "https://grafana-community.github.io/helm-charts"
TEMPO_RELEASE = "tempo"  # also its fullnameOverride
# Tempo's query API (charts/tempo/values.yaml tempo.server.http_listen_port) and its OTLP/HTTP receiver
# (tempo.receivers.otlp.protocols.http.endpoint 0.0.0.0:4318), both on the Service (templates/_ports.tpl).
TEMPO_QUERY_PORT = 3200
OTLP_HTTP_PORT = 4318  # OTLP/HTTP's default port (https://opentelemetry.io/docs/specs/otlp/#otlphttp-request)
# kube-prometheus-stack's Grafana sidecar loads datasources from ConfigMaps with this label, any value (grafana
# chart values.yaml sidecar.datasources.label grafana_datasource, labelValue ""; the stack keeps both).
GRAFANA_DATASOURCE_LABEL = "grafana_datasource"


def collector_traces_url(namespace: str) -> str:
    """The OTLP/HTTP traces URL of the collector, as the gateway and vLLM export to it."""
    return f"http://{COLLECTOR_RELEASE}.{namespace}.svc:{OTLP_HTTP_PORT}/v1/traces"


@dataclass(frozen=True)
class TraceCollectorArgs:
    namespace: str
    # Namespace whose pods (gateway, vLLM) send spans; only they may reach the collector's OTLP port.
    serving_namespace: str
    backend: Literal["tempo", "otlp"] = "tempo"
    # backend otlp: the OTLP/HTTP base URL the collector forwards to (the exporter appends /v1/traces).
    otlp_endpoint: str | None = None
    tempo_retention: str = "72h"
    # None: Tempo keeps traces on an emptyDir (lost with the pod); else a claim of this size.
    tempo_storage_gib: int | None = None
    storage_class: str = "gp3"
    light: bool = False


def collector_config(args: TraceCollectorArgs) -> dict[str, Any]:
    """The collector's whole configuration (the chart's `alternateConfig`: used as is, never merged with defaults)."""
    if args.backend == "tempo":
        exporter_name, endpoint = "otlphttp/tempo", f"http://{TEMPO_RELEASE}.{args.namespace}.svc:{OTLP_HTTP_PORT}"
    else:
        assert args.otlp_endpoint is not None, "backend otlp needs otlp_endpoint"
        exporter_name, endpoint = "otlphttp", args.otlp_endpoint
    return {
        # The chart's probes call health_check on the pod IP (its values.yaml: "mandatory for this chart").
        "extensions": {"health_check": {"endpoint": "${env:MY_POD_IP}:13133"}},
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "${env:MY_POD_IP}:4317"},
                    "http": {"endpoint": f"${{env:MY_POD_IP}}:{OTLP_HTTP_PORT}"},
                }
            }
        },
        "processors": {
            # The chart's own defaults: refuse data before the pod's memory limit is reached, then batch.
            "memory_limiter": {"check_interval": "5s", "limit_percentage": 80, "spike_limit_percentage": 25},
            "batch": {},
        },
        "exporters": {exporter_name: {"endpoint": endpoint}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": [exporter_name],
                }
            },
        },
    }


def _resources(cpu: str, memory: str, memory_limit: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}}


def collector_values(args: TraceCollectorArgs) -> dict[str, Any]:
    return {
        "mode": "deployment",
        "fullnameOverride": COLLECTOR_RELEASE,
        "image": {"repository": COLLECTOR_IMAGE},
        "replicaCount": 1 if args.light else 2,
        "alternateConfig": collector_config(args),
        # Only OTLP is received: the chart's Jaeger and Zipkin ports would be open for nothing.
        "ports": {name: {"enabled": False} for name in ("jaeger-compact", "jaeger-thrift", "jaeger-grpc", "zipkin")},
        # memory_limiter's percentages are of this limit.
        "resources": _resources("50m", "128Mi", "256Mi") if args.light else _resources("200m", "256Mi", "512Mi"),
    }


def tempo_values(args: TraceCollectorArgs) -> dict[str, Any]:
    values: dict[str, Any] = {
        "fullnameOverride": TEMPO_RELEASE,
        "tempo": {
            "retention": args.tempo_retention,
            "resources": _resources("50m", "256Mi", "1Gi") if args.light else _resources("250m", "1Gi", "4Gi"),
        },
    }
    if args.tempo_storage_gib is not None:
        values["persistence"] = {
            "enabled": True,
            "size": f"{args.tempo_storage_gib}Gi",
            "storageClassName": args.storage_class,
        }
    return values


def tempo_datasource(namespace: str) -> dict[str, Any]:
    """Grafana's provisioning file for Tempo (https://grafana.com/docs/grafana/latest/datasources/tempo/)."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Tempo",
                "type": "tempo",
                "uid": "tempo",
                "access": "proxy",
                "url": f"http://{TEMPO_RELEASE}.{namespace}.svc:{TEMPO_QUERY_PORT}",
                # Spans of a trace link back to the metrics of the same service.
                "jsonData": {"serviceMap": {"datasourceUid": "prometheus"}, "nodeGraph": {"enabled": True}},
            }
        ],
    }


class TraceCollector(pulumi.ComponentResource):
    """The OpenTelemetry Collector, and Tempo with its Grafana datasource when it is the backend."""

    traces_url: str

    def __init__(self, name: str, args: TraceCollectorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:TraceCollector", name, None, opts)
        # Children do not inherit the component's depends_on (the namespace they go into): pass it on.
        child = pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts is not None else None)
        ns = args.namespace
        depends: list[pulumi.Resource] = []
        if args.backend == "tempo":
            depends.append(self._tempo(name, args, child))
        k8s.helm.v3.Release(
            f"{name}-collector",
            name=COLLECTOR_RELEASE,
            chart=COLLECTOR_CHART,
            version=COLLECTOR_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=COLLECTOR_REPO),
            namespace=ns,
            values=collector_values(args),
            atomic=True,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=depends)),
        )
        self._collector_policy(name, args, child)
        self.traces_url = collector_traces_url(ns)
        self.register_outputs({"traces_url": self.traces_url})

    def _tempo(self, name: str, args: TraceCollectorArgs, child: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
        release = k8s.helm.v3.Release(
            f"{name}-tempo",
            name=TEMPO_RELEASE,
            chart=TEMPO_CHART,
            version=TEMPO_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=TEMPO_REPO),
            namespace=args.namespace,
            values=tempo_values(args),
            atomic=True,
            opts=child,
        )
        k8s.core.v1.ConfigMap(
            f"{name}-tempo-datasource",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="grafana-datasource-tempo",
                namespace=args.namespace,
                labels={GRAFANA_DATASOURCE_LABEL: "1"},
            ),
            data={"tempo.yaml": pulumi.Output.json_dumps(tempo_datasource(args.namespace))},
            opts=child,
        )
        return release

    def _collector_policy(self, name: str, args: TraceCollectorArgs, child: pulumi.ResourceOptions) -> None:
        """Only the serving namespace's pods may send spans (OTLP has no authentication here)."""
        selector = k8s.meta.v1.LabelSelectorArgs
        k8s.networking.v1.NetworkPolicy(
            f"{name}-collector-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{COLLECTOR_RELEASE}-ingress", namespace=args.namespace),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                # The chart's selector labels (templates/_helpers.tpl selectorLabels): the release's instance.
                pod_selector=selector(match_labels={"app.kubernetes.io/instance": COLLECTOR_RELEASE}),
                policy_types=["Ingress"],
                ingress=[
                    k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                        from_=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                namespace_selector=selector(
                                    match_labels={"kubernetes.io/metadata.name": args.serving_namespace}
                                )
                            )
                        ],
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=OTLP_HTTP_PORT, protocol="TCP")],
                    ),
                ],
            ),
            opts=child,
        )
