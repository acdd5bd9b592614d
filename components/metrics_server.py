"""metrics-server: the `metrics.k8s.io` API that resource-metric HorizontalPodAutoscalers read. Neither EKS nor kind
ships it (https://docs.aws.amazon.com/eks/latest/userguide/metrics-server.html: "it isn't deployed by default").

The official chart, pinned, on every stack: one code path for EKS and a laptop cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

CHART = "metrics-server"
# kubernetes-sigs/metrics-server@5ed5d3a2cf94 charts/metrics-server/Chart.yaml: version 3.13.1, appVersion 0.8.1
# (tag metrics-server-helm-chart-3.13.1).
CHART_VERSION = "3.13.1"
CHART_REPO = "https://kubernetes-sigs.github.io/metrics-server/"
NAMESPACE = "kube-system"


@dataclass(frozen=True)
class MetricsServerArgs:
    # kind's kubelets serve self-signed certificates; metrics-server must then skip verifying them
    # (kubernetes-sigs/metrics-server README: "Kubelet certificate needs to be signed by cluster Certificate
    # Authority (or disable certificate validation by passing --kubelet-insecure-tls)"). EKS kubelets' are
    # signed by the cluster CA, so EKS keeps verification.
    kubelet_insecure_tls: bool = False
    node_selector: dict[str, str] = field(default_factory=dict)


def helm_values(args: MetricsServerArgs) -> dict[str, Any]:
    values: dict[str, Any] = {
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "nodeSelector": args.node_selector,
    }
    if args.kubelet_insecure_tls:
        values["args"] = ["--kubelet-insecure-tls"]
    return values


class MetricsServer(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: MetricsServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:MetricsServer", name, None, opts)
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=CHART,
            chart=CHART,
            version=CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=NAMESPACE,
            values=helm_values(args),
            atomic=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
