"""An EKS managed node group of GPU instances on the NVIDIA AMI, tainted so only GPU workloads land there."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws.eks as eks

from components.aws_nodes import launch_template, node_role
from components.naming import GPU_MODEL_LABEL, GPU_PRESENT_LABEL, GPU_TAINT_KEY, NODE_GROUP_LABEL

# EKS-optimized AL2023 with the NVIDIA driver, container toolkit and EFA; AL2_x86_64_GPU ends with Kubernetes 1.32.
NVIDIA_AMI_TYPE = "AL2023_x86_64_NVIDIA"


@dataclass(frozen=True)
class GpuNodeGroupArgs:
    cluster_name: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    instance_types: list[str]
    gpu_model: str
    capacity_type: str  # ON_DEMAND | SPOT
    min_size: int
    desired_size: int
    max_size: int
    disk_size_gib: int
    # gp3 root volume performance (None = gp3's 125 MiB/s / 3,000 IOPS baseline).
    root_volume_throughput_mibps: int | None = None
    root_volume_iops: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def node_labels(group_name: str, gpu_model: str, extra: dict[str, str]) -> dict[str, str]:
    """The labels vLLM pods select on; also used by the device plugin and DCGM exporter node affinity."""
    return {
        **extra,
        NODE_GROUP_LABEL: group_name,
        GPU_MODEL_LABEL: gpu_model,
        GPU_PRESENT_LABEL: "true",
    }


class GpuNodeGroup(pulumi.ComponentResource):
    node_group_name: pulumi.Output[str]
    labels: dict[str, str]
    node_group: eks.NodeGroup

    def __init__(self, name: str, args: GpuNodeGroupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:GpuNodeGroup", name, None, opts)
        role, policy_attachments = node_role(name, args.tags, self)
        template = launch_template(
            name,
            args.disk_size_gib,
            args.tags,
            self,
            throughput_mibps=args.root_volume_throughput_mibps,
            iops=args.root_volume_iops,
        )
        self.labels = node_labels(name, args.gpu_model, args.labels)
        group = eks.NodeGroup(
            name,
            node_group_name=name,
            cluster_name=args.cluster_name,
            node_role_arn=role.arn,
            subnet_ids=args.subnet_ids,
            instance_types=list(args.instance_types),
            capacity_type=args.capacity_type,
            ami_type=NVIDIA_AMI_TYPE,
            scaling_config=eks.NodeGroupScalingConfigArgs(
                min_size=args.min_size, desired_size=args.desired_size, max_size=args.max_size
            ),
            # One node at a time: a GPU node holds whole model replicas, and the PDBs keep serving capacity.
            update_config=eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            launch_template=eks.NodeGroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str)),
            labels=self.labels,
            taints=[eks.NodeGroupTaintArgs(key=GPU_TAINT_KEY, value="true", effect="NO_SCHEDULE")],
            tags={**args.tags, "k8s.io/cluster-autoscaler/node-template/label/" + NODE_GROUP_LABEL: name},
            # The cluster autoscaler owns the live size; a preview must not fight it.
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["scalingConfig.desiredSize"], depends_on=policy_attachments
            ),
        )
        self.node_group = group
        self.node_group_name = group.node_group_name
        self.register_outputs({"node_group_name": self.node_group_name, "labels": self.labels})
