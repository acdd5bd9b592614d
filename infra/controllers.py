"""Wiring of the cluster's controllers: the objects the platform renders only work if something serves them.

- NetworkPolicy needs an enforcing CNI: on EKS the VPC CNI with its network-policy agent on (ClusterAddons); on a
  local kind cluster, kindnet enforces NetworkPolicy since kind v0.24.0 (kubernetes-sigs/kind#842, closed by #3612,
  "available now, in https://github.com/kubernetes-sigs/kind/releases/tag/v0.24.0"): a prerequisite the local stack
  states in its outputs, since the program cannot install a CNI into an existing cluster.
- A `service.k8s.aws/nlb` Service and an `alb` Ingress need the AWS Load Balancer Controller (only stacks that
  expose the gateway get it).
- A resource-metric HPA (the gateway's) needs metrics-server (every stack).
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi

from components.cluster import SYSTEM_NODE_LABEL
from components.cluster_addons import ClusterAddons, ClusterAddonsArgs
from components.load_balancer_controller import LoadBalancerController, LoadBalancerControllerArgs
from components.metrics_server import MetricsServer, MetricsServerArgs
from infra.config import PlatformConfig

# What a local cluster must bring itself (the README's kind steps create it so).
LOCAL_CLUSTER_PREREQUISITES = {
    "network_policy": "kind >= v0.24.0 with its default CNI (kindnet enforces NetworkPolicy); "
    "a cluster without an enforcing CNI silently ignores the serving namespace's NetworkPolicies",
}


def needs_load_balancer_controller(platform: PlatformConfig) -> bool:
    return platform.gateway.ingress.kind in ("nlb", "ingress")


def wire_aws_controllers(
    platform: PlatformConfig,
    cluster_name: str,
    cluster: pulumi.Resource,
    cluster_name_output: pulumi.Input[str],
    vpc_id: pulumi.Input[str],
    aws_provider: pulumi.ProviderResource,
    kubernetes_provider: pulumi.ProviderResource,
    tags: dict[str, str],
    on_addons: Callable[[pulumi.Resource], None] | None = None,
) -> list[pulumi.Resource]:
    """EKS add-ons and, where the gateway is exposed, the Load Balancer Controller; returns what the gateway's
    load balancer objects must wait for. `on_addons` wires what else needs the add-ons first (Karpenter)."""
    assert platform.cluster is not None and platform.aws is not None
    # After the whole cluster component (its system nodes included): CoreDNS only becomes ACTIVE with nodes to run on.
    addons = ClusterAddons(
        f"{cluster_name}-addons",
        ClusterAddonsArgs(
            cluster_name=cluster_name_output, kubernetes_version=platform.cluster.kubernetes_version, tags=tags
        ),
        opts=pulumi.ResourceOptions(providers=[aws_provider], depends_on=[cluster]),
    )
    if on_addons is not None:
        on_addons(addons)
    if not needs_load_balancer_controller(platform):
        return []
    controller = LoadBalancerController(
        f"{cluster_name}-lbc",
        LoadBalancerControllerArgs(
            cluster_name=cluster_name_output,
            region=platform.aws.region,
            vpc_id=vpc_id,
            aws_provider=aws_provider,
            kubernetes_provider=kubernetes_provider,
            node_selector=dict(SYSTEM_NODE_LABEL),
            tags=tags,
        ),
        # The Pod Identity agent hands the controller its credentials.
        opts=pulumi.ResourceOptions(depends_on=[addons]),
    )
    return [controller.release, controller.ingress_class]


def wire_metrics_server(platform: PlatformConfig, opts: pulumi.ResourceOptions) -> dict[str, object]:
    on_aws = platform.aws is not None
    MetricsServer(
        "metrics-server",
        MetricsServerArgs(kubelet_insecure_tls=not on_aws, node_selector=dict(SYSTEM_NODE_LABEL) if on_aws else {}),
        opts=opts,
    )
    return {} if on_aws else {"cluster_prerequisites": LOCAL_CLUSTER_PREREQUISITES}
