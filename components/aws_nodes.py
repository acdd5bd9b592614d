"""Pieces every EKS node group shares: its IAM role and a hardened launch template.

Helpers, not components: the node group components call them with themselves as parent.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws.ec2 as ec2
import pulumi_aws.iam as iam

# The three managed policies EKS documents for worker nodes; no SSM or admin policies (least privilege).
NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)


def service_trust_policy(service: str, action: str | list[str]) -> str:
    """An IAM trust policy that lets one AWS service assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": action}],
        }
    )


def node_role(
    name: str, tags: dict[str, str], parent: pulumi.Resource
) -> tuple[iam.Role, list[iam.RolePolicyAttachment]]:
    """The nodes' role and its policy attachments; a node group must depend on the attachments, not just the role:
    nodes that boot before AmazonEKSWorkerNodePolicy is attached cannot join, and the group fails to create."""
    role = iam.Role(
        f"{name}-role",
        name=f"{name}-role",
        assume_role_policy=service_trust_policy("ec2.amazonaws.com", "sts:AssumeRole"),
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    attachments = [
        iam.RolePolicyAttachment(
            f"{name}-{policy.rsplit('/', 1)[1]}",
            role=role.name,
            policy_arn=policy,
            opts=pulumi.ResourceOptions(parent=role),
        )
        for policy in NODE_POLICIES
    ]
    return role, attachments


def launch_template(
    name: str,
    disk_size_gib: int,
    tags: dict[str, str],
    parent: pulumi.Resource,
    *,
    throughput_mibps: int | None = None,
    iops: int | None = None,
) -> ec2.LaunchTemplate:
    """IMDSv2 only, with a hop limit of 1 so pods cannot borrow the node's credentials (they use IRSA).

    `throughput_mibps`/`iops` provision the gp3 root volume above its 125 MiB/s / 3,000 IOPS baseline (None keeps
    the baseline): on GPU nodes the image and an emptyDir weight cache are read from it.
    """
    return ec2.LaunchTemplate(
        f"{name}-lt",
        name=f"{name}-lt",
        metadata_options=ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled",
            http_tokens="required",
            http_put_response_hop_limit=1,
            instance_metadata_tags="disabled",
        ),
        block_device_mappings=[
            ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/xvda",
                ebs=ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=disk_size_gib,
                    volume_type="gp3",
                    throughput=throughput_mibps,
                    iops=iops,
                    encrypted="true",
                    delete_on_termination="true",
                ),
            )
        ],
        tag_specifications=[
            ec2.LaunchTemplateTagSpecificationArgs(resource_type="instance", tags={**tags, "Name": name}),
            ec2.LaunchTemplateTagSpecificationArgs(resource_type="volume", tags={**tags, "Name": name}),
        ],
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )
