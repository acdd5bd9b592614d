"""Wiring of the GPU nodes: each `gpu_node_groups[]` entry becomes a Karpenter pool (NodePool + EC2NodeClass,
components/gpu_node_pool.py) or an EKS managed node group (components/gpu_node_group.py), by its `provisioner`;
Karpenter itself (components/karpenter.py) is installed when any pool needs it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi

from components.cluster import SYSTEM_NODE_LABEL
from components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from components.karpenter import Karpenter, KarpenterArgs
from infra.config import GpuNodeGroupConfig, PlatformConfig
from infra.plan import GroupPlan, Plan
from infra.storage import WEIGHT_VOLUME_IOPS, WEIGHT_VOLUME_THROUGHPUT_MIBPS

if TYPE_CHECKING:
    from components.cluster import Cluster


def karpenter_args(
    platform: PlatformConfig, plan: Plan, cluster: Cluster, aws_provider: pulumi.ProviderResource, tags: dict[str, str]
) -> KarpenterArgs:
    assert platform.aws is not None and platform.network is not None and platform.cluster is not None
    return KarpenterArgs(
        cluster_name=plan.cluster_name,
        region=platform.aws.region,
        cluster_name_output=cluster.cluster_name,
        cluster_security_group_id=cluster.security_group_id,
        aws_provider=aws_provider,
        kubernetes_provider=cluster.provider,
        existing_subnet_ids=list(platform.network.existing_private_subnet_ids),
        # The chart's pods keep apart by hostname (required anti-affinity): no more replicas than system nodes.
        replicas=min(2, platform.cluster.system_nodes.scaling.desired_size),
        node_selector=dict(SYSTEM_NODE_LABEL),
        tags=tags,
    )


def pool_args(
    group: GpuNodeGroupConfig,
    group_plan: GroupPlan,
    cluster_name: str,
    node_role_name: pulumi.Input[str],
    tags: dict[str, str],
) -> GpuNodePoolArgs:
    return GpuNodePoolArgs(
        node_group_label=group_plan.component_name,
        cluster_name=cluster_name,
        node_role_name=node_role_name,
        instance_types=list(group.instance_types),
        capacity_type=group.capacity_type,
        gpu_model=str(group_plan.shape.gpu_model),
        max_nodes=group.scaling.max_size,
        gpus_per_node=group_plan.shape.gpu_count,
        disk_size_gib=group_plan.disk_gib,
        ami_alias=group.ami_alias,
        root_volume_throughput_mibps=WEIGHT_VOLUME_THROUGHPUT_MIBPS,
        root_volume_iops=WEIGHT_VOLUME_IOPS,
        labels={**group.labels, "llm-serving/node-group-name": group.name},
        tags=tags,
    )


def wire_karpenter_pools(
    platform: PlatformConfig,
    plan: Plan,
    cluster: Cluster,
    aws_provider: pulumi.ProviderResource,
    tags: dict[str, str],
    after: list[pulumi.Resource],
) -> list[pulumi.Resource]:
    """Karpenter and one pool per `provisioner: karpenter` group; returns what the vLLM workloads wait for.
    `after`: what the controller needs first (the Pod Identity agent add-on hands it its credentials)."""
    pools = [(g, p) for g, p in zip(platform.gpu_node_groups, plan.groups, strict=True) if g.provisioner == "karpenter"]
    if not pools:
        return []
    karpenter = Karpenter(
        f"{plan.cluster_name}-karpenter",
        karpenter_args(platform, plan, cluster, aws_provider, tags),
        opts=pulumi.ResourceOptions(depends_on=after),
    )
    # The CRDs come with the chart: the pools follow the release.
    on_cluster = pulumi.ResourceOptions(provider=cluster.provider, depends_on=[karpenter.release])
    return [
        GpuNodePool(
            group_plan.component_name,
            pool_args(group, group_plan, plan.cluster_name, karpenter.node_role_name, tags),
            opts=on_cluster,
        ).node_pool
        for group, group_plan in pools
    ]
