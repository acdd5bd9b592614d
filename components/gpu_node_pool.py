"""A GPU node pool provisioned by Karpenter: one EC2NodeClass (how a node is built) and one NodePool (which nodes
may exist), the Karpenter counterpart of components/gpu_node_group.py.

The nodes carry the same labels and `nvidia.com/gpu` taint as a managed GPU node group's, so the vLLM pods, the
device plugin and the DCGM exporter select and tolerate them unchanged. Facts below are from Karpenter v1.14's docs
(aws/karpenter-provider-aws@1d927085 website/content/en/v1.14/concepts/), cited per field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.gpu_node_group import node_labels
from components.karpenter import DISCOVERY_TAG
from components.naming import GPU_TAINT_KEY

NODE_POOL_API = "karpenter.sh/v1"
NODE_CLASS_API = "karpenter.k8s.aws/v1"
# Karpenter's own well-known requirement keys (concepts/nodepools.md, "Well-Known Labels").
INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
CAPACITY_TYPE_KEY = "karpenter.sh/capacity-type"
# "If a NodePool is compatible with multiple capacity types, Karpenter will prioritize `reserved` capacity, followed
# by `spot`, then finally `on-demand`" (concepts/nodepools.md:277): a SPOT group may fall back to on-demand.
CAPACITY_TYPES = {"SPOT": ["spot", "on-demand"], "ON_DEMAND": ["on-demand"]}
# An empty node leaves this long after its last vLLM pod: long enough that a model scaled up again right away finds
# its node (and its image) still there, short enough that an idle GPU costs minutes, not hours.
CONSOLIDATE_AFTER = "5m"
# Nodes are replaced at least this often (the default, concepts/disruption.md:201), so a pinned AMI alias still
# rolls; with `@latest` a new AMI drifts the nodes sooner.
EXPIRE_AFTER = "720h"
# How long a drain (drift, expiry) waits for pods before it deletes them: the vLLM pods' own grace period (120 s,
# components/vllm_deployment.py TERMINATION_GRACE_SECONDS) and its eviction retries fit well inside it
# (concepts/disruption.md:213 advises a terminationGracePeriod whenever expireAfter is set).
TERMINATION_GRACE_PERIOD = "1h"


@dataclass(frozen=True)
class GpuNodePoolArgs:
    # The name the NodePool and EC2NodeClass take; nodes carry it as `llm-serving/node-group` (like a managed group).
    node_group_label: str
    cluster_name: str
    node_role_name: pulumi.Input[str]
    instance_types: list[str]
    capacity_type: str  # ON_DEMAND | SPOT
    gpu_model: str
    # The GPU limit: a spend cap, max_nodes x gpus_per_node.
    max_nodes: int
    gpus_per_node: int
    disk_size_gib: int
    ami_alias: str = "al2023@latest"
    root_volume_throughput_mibps: int | None = None
    root_volume_iops: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def ec2_node_class_spec(args: GpuNodePoolArgs) -> dict[str, Any]:
    ebs: dict[str, Any] = {
        "volumeSize": f"{args.disk_size_gib}Gi",
        "volumeType": "gp3",
        "encrypted": True,
        "deleteOnTermination": True,
    }
    if args.root_volume_iops is not None:
        ebs["iops"] = args.root_volume_iops
    if args.root_volume_throughput_mibps is not None:
        ebs["throughput"] = args.root_volume_throughput_mibps
    discovery = [{"tags": {DISCOVERY_TAG: args.cluster_name}}]
    return {
        # An alias selects the EKS-optimized AMI and lets Karpenter pick its variant per instance type, the NVIDIA
        # one for GPU types ("Unless using an alias, Karpenter cannot detect requirements other than architecture",
        # concepts/nodeclasses.md:837); the family (AL2023) is implied by the alias (nodeclasses.md:434).
        "amiSelectorTerms": [{"alias": args.ami_alias}],
        "role": args.node_role_name,
        "subnetSelectorTerms": discovery,
        "securityGroupSelectorTerms": discovery,
        # IMDSv2 only and a hop limit of 1: pods cannot borrow the node's credentials (nodeclasses.md:132), as on
        # the managed groups' launch template (components/aws_nodes.py).
        "metadataOptions": {
            "httpEndpoint": "enabled",
            "httpProtocolIPv6": "disabled",
            "httpPutResponseHopLimit": 1,
            "httpTokens": "required",
        },
        # AL2023's root device; encrypted gp3 sized and provisioned like the managed groups' (infra/storage.py).
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": ebs}],
        "tags": {**args.tags, "Name": args.node_group_label},
    }


def node_pool_spec(args: GpuNodePoolArgs) -> dict[str, Any]:
    return {
        "template": {
            "metadata": {"labels": node_labels(args.node_group_label, args.gpu_model, args.labels)},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": args.node_group_label},
                "requirements": [
                    # Exactly the group's types: the capacity planner checked each of them (infra/semantics.py).
                    {"key": INSTANCE_TYPE_KEY, "operator": "In", "values": list(args.instance_types)},
                    {"key": CAPACITY_TYPE_KEY, "operator": "In", "values": CAPACITY_TYPES[args.capacity_type]},
                ],
                "taints": [{"key": GPU_TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
                "expireAfter": EXPIRE_AFTER,
                "terminationGracePeriod": TERMINATION_GRACE_PERIOD,
            },
        },
        # The spend cap: Karpenter launches nothing that would take the pool past this many GPUs.
        "limits": {"nvidia.com/gpu": args.max_nodes * args.gpus_per_node},
        "disruption": {
            # WhenEmpty: consolidation only removes nodes with no pods, so it never evicts a serving vLLM pod to
            # pack replicas tighter; a node goes once KEDA has scaled its model's pods away.
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": CONSOLIDATE_AFTER,
            # One node of the pool at a time for drift and expiry: the model's other replicas keep serving.
            "budgets": [{"nodes": "1"}],
        },
    }


class GpuNodePool(pulumi.ComponentResource):
    """`opts` must carry the cluster's Kubernetes provider and depend on the Karpenter release (its CRDs)."""

    node_pool: k8s.apiextensions.CustomResource
    node_class: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:GpuNodePool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.node_class = k8s.apiextensions.CustomResource(
            f"{name}-node-class",
            api_version=NODE_CLASS_API,
            kind="EC2NodeClass",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.node_group_label),
            spec=ec2_node_class_spec(args),
            opts=child,
        )
        self.node_pool = k8s.apiextensions.CustomResource(
            f"{name}-node-pool",
            api_version=NODE_POOL_API,
            kind="NodePool",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.node_group_label),
            spec=node_pool_spec(args),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.node_class]),
        )
        self.register_outputs({})
