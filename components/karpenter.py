"""Karpenter: the GPU node provisioner. It launches an EC2 instance when a pod is Pending for want of a node that a
NodePool may create, and removes the node once it is empty; KEDA scales the vLLM pods, Karpenter follows with nodes.

Installed from the official chart, pinned, on the system nodes (a managed node group: Karpenter must not run on
nodes it manages). Its AWS side is the upstream getting-started CloudFormation template, vendored unchanged
(controllers_data/karpenter-cloudformation-v1.14.1.yaml, from aws/karpenter-provider-aws@1d927085
website/content/en/docs/getting-started/getting-started-with-karpenter/cloudformation.yaml): the controller's
policies, the interruption queue and its EventBridge rules are read from it here, so a version bump is a file swap.
The controller's role is granted through EKS Pod Identity; the node role gets an EKS access entry of type EC2_LINUX
(the cluster authenticates with access entries only: components/cluster.py `authentication_mode="API"`).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_aws.cloudwatch as cloudwatch
import pulumi_aws.ec2 as ec2
import pulumi_aws.eks as eks
import pulumi_aws.iam as iam
import pulumi_aws.sqs as sqs
import pulumi_kubernetes as k8s
import yaml

from components.aws_nodes import node_role, service_trust_policy

# aws/karpenter-provider-aws@1d927085 charts/karpenter/Chart.yaml: version 1.14.1, appVersion 1.14.1; the chart is
# published as an OCI artifact (website/content/en/docs/getting-started/getting-started-with-karpenter/_index.md:
# `helm upgrade --install karpenter oci://public.ecr.aws/karpenter/karpenter --version "${KARPENTER_VERSION}"`).
CHART = "oci://public.ecr.aws/karpenter/karpenter"
CHART_VERSION = "1.14.1"
CLOUDFORMATION_FILE = Path(__file__).parent / "controllers_data" / "karpenter-cloudformation-v1.14.1.yaml"
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"
# The tag Karpenter's EC2NodeClass selectors find the node subnets and security group by (the getting-started
# guide's convention: `karpenter.sh/discovery: ${CLUSTER_NAME}`).
DISCOVERY_TAG = "karpenter.sh/discovery"
# The controller policies of the template the controller needs. ZonalShiftPolicy is left out: only read when
# settings.enableZonalShift is on, which this platform does not set.
CONTROLLER_POLICIES = (
    "NodeLifecyclePolicy",
    "IAMIntegrationPolicy",
    "EKSIntegrationPolicy",
    "InterruptionPolicy",
    "ResourceDiscoveryPolicy",
)


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads the template's short-form intrinsics as plain values (`!Sub "x"` -> "x", `!GetAtt A.B` -> "A.B")."""


def _intrinsic(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode), f"{CLOUDFORMATION_FILE.name}: a long-form intrinsic at {node.start_mark}"
    return str(loader.construct_scalar(node))


for _tag in ("!Sub", "!GetAtt", "!Ref"):
    _CloudFormationLoader.add_constructor(_tag, _intrinsic)


@cache
def cloudformation_resources() -> dict[str, dict[str, Any]]:
    document = yaml.load(CLOUDFORMATION_FILE.read_text(), Loader=_CloudFormationLoader)  # a SafeLoader
    resources: dict[str, dict[str, Any]] = document["Resources"]
    return resources


def interruption_rules() -> dict[str, dict[str, Any]]:
    """EventBridge rule name in the template -> its event pattern (spot interruption, rebalance, state change,
    scheduled change, capacity reservation interruption)."""
    return {
        name: resource["Properties"]["EventPattern"]
        for name, resource in cloudformation_resources().items()
        if resource["Type"] == "AWS::Events::Rule"
    }


def substitute(template: str, values: dict[str, str]) -> str:
    """CloudFormation's `!Sub` for the variables the template uses; an unknown one is an error, not a blank."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise KeyError(f"{CLOUDFORMATION_FILE.name}: no value for ${{{match.group(1)}}}")
        return values[match.group(1)]

    return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", replace, template)


def controller_policy(name: str, values: dict[str, str]) -> str:
    """One of the template's controller policies with its variables filled in, as compact JSON."""
    document = cloudformation_resources()[name]["Properties"]["PolicyDocument"]
    return json.dumps(json.loads(substitute(document, values)), sort_keys=True)


def queue_policy(queue_arn: str) -> str:
    """The template's KarpenterInterruptionQueuePolicy (EventBridge and SQS may send; HTTP is denied)."""
    document = cloudformation_resources()["KarpenterInterruptionQueuePolicy"]["Properties"]["PolicyDocument"]
    return json.dumps(
        json.loads(json.dumps(document).replace('"KarpenterInterruptionQueue.Arn"', json.dumps(queue_arn)))
    )


def _filled_policy(name: str, values: dict[str, str]) -> str:
    return controller_policy(name, values)


@dataclass(frozen=True)
class KarpenterArgs:
    # The EKS cluster's name (known from config: it is also the queue's name and in the policies' conditions).
    cluster_name: str
    region: str
    # Waited on through the Output, so the controller's Pod Identity association follows the cluster.
    cluster_name_output: pulumi.Input[str]
    cluster_security_group_id: pulumi.Input[str]
    aws_provider: pulumi.ProviderResource
    kubernetes_provider: pulumi.ProviderResource
    # Subnets the network component did not create (an existing VPC): tagged here for discovery.
    existing_subnet_ids: list[str] = field(default_factory=list)
    replicas: int = 2
    node_selector: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def helm_values(args: KarpenterArgs, queue_name: pulumi.Input[str]) -> dict[str, Any]:
    return {
        "replicas": args.replicas,
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        "nodeSelector": args.node_selector,
        # The chart's defaults name them (charts/karpenter/values.yaml `settings`): the cluster to join nodes to,
        # and the SQS queue of interruption events (handling is off when it is empty).
        "settings": {"clusterName": args.cluster_name, "interruptionQueue": queue_name},
        "controller": {"resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}},
    }


class Karpenter(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    node_role_name: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    rules: list[cloudwatch.EventRule]

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:Karpenter", name, None, opts)
        on_aws = pulumi.ResourceOptions(parent=self, provider=args.aws_provider)
        node, node_policies = node_role(f"{name}-node", args.tags, self)
        # Nodes Karpenter launches join with this role: without an entry the API server refuses their kubelets.
        access = eks.AccessEntry(
            f"{name}-node-access",
            cluster_name=args.cluster_name_output,
            principal_arn=node.arn,
            type="EC2_LINUX",
            tags=args.tags,
            opts=pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(depends_on=node_policies)),
        )
        queue = self._interruption_queue(name, args, on_aws)
        association = self._controller_identity(name, args, node, queue, on_aws)
        self._discovery_tags(name, args, on_aws)
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="karpenter",
            chart=CHART,
            version=CHART_VERSION,
            namespace=NAMESPACE,
            values=helm_values(args, queue.name),
            atomic=True,
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.kubernetes_provider, depends_on=[association, access, *self.policies]
            ),
        )
        self.node_role_name = node.name
        self.queue_name = queue.name
        self.register_outputs({"node_role_name": self.node_role_name, "queue_name": self.queue_name})

    def _interruption_queue(self, name: str, args: KarpenterArgs, on_aws: pulumi.ResourceOptions) -> sqs.Queue:
        properties = cloudformation_resources()["KarpenterInterruptionQueue"]["Properties"]
        queue = sqs.Queue(
            f"{name}-interruption-queue",
            name=args.cluster_name,
            message_retention_seconds=properties["MessageRetentionPeriod"],
            sqs_managed_sse_enabled=properties["SqsManagedSseEnabled"],
            tags=args.tags,
            opts=on_aws,
        )
        sqs.QueuePolicy(
            f"{name}-interruption-queue-policy", queue_url=queue.url, policy=queue.arn.apply(queue_policy), opts=on_aws
        )
        self.rules = []
        for rule_name, pattern in interruption_rules().items():
            slug = re.sub(r"(?<!^)(?=[A-Z])", "-", rule_name.removesuffix("Rule")).lower()
            rule = cloudwatch.EventRule(
                f"{name}-{slug}",
                name=f"{args.cluster_name}-karpenter-{slug}"[:64],
                event_pattern=json.dumps(pattern, sort_keys=True),
                tags=args.tags,
                opts=on_aws,
            )
            cloudwatch.EventTarget(
                f"{name}-{slug}-target",
                rule=rule.name,
                target_id="KarpenterInterruptionQueueTarget",
                arn=queue.arn,
                opts=pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(parent=rule)),
            )
            self.rules.append(rule)
        return queue

    def _controller_identity(
        self, name: str, args: KarpenterArgs, node: iam.Role, queue: sqs.Queue, on_aws: pulumi.ResourceOptions
    ) -> eks.PodIdentityAssociation:
        role = iam.Role(
            f"{name}-controller-role",
            name=f"{name}-controller-role",
            # EKS Pod Identity's trust policy (https://docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html).
            assume_role_policy=service_trust_policy("pods.eks.amazonaws.com", ["sts:AssumeRole", "sts:TagSession"]),
            tags=args.tags,
            opts=on_aws,
        )
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(provider=args.aws_provider)).partition
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(provider=args.aws_provider)).account_id
        values: pulumi.Output[dict[str, str]] = pulumi.Output.all(partition, account, node.arn, queue.arn).apply(
            lambda parts: {
                "AWS::Partition": parts[0],
                "AWS::Region": args.region,
                "AWS::AccountId": parts[1],
                "ClusterName": args.cluster_name,
                "KarpenterNodeRole.Arn": parts[2],
                "KarpenterInterruptionQueue.Arn": parts[3],
            }
        )
        self.policies: list[pulumi.Resource] = []
        for policy_name in CONTROLLER_POLICIES:
            slug = re.sub(r"(?<!^)(?=[A-Z])", "-", policy_name).lower()
            policy = iam.Policy(
                f"{name}-{slug}",
                name=f"{name}-{slug}",
                description=f"Karpenter {CHART_VERSION} {policy_name} (upstream getting-started CloudFormation)",
                policy=values.apply(functools.partial(_filled_policy, policy_name)),
                tags=args.tags,
                opts=on_aws,
            )
            self.policies.append(
                iam.RolePolicyAttachment(
                    f"{name}-{slug}-attachment",
                    role=role.name,
                    policy_arn=policy.arn,
                    opts=pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(parent=role)),
                )
            )
        return eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=args.cluster_name_output,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role_arn=role.arn,
            tags=args.tags,
            opts=on_aws,
        )

    def _discovery_tags(self, name: str, args: KarpenterArgs, on_aws: pulumi.ResourceOptions) -> None:
        """The cluster security group (EKS creates it, so no resource of ours carries its tags) and the subnets of an
        existing VPC get the discovery tag; subnets the network component creates carry it already."""
        targets = [("cluster-sg", args.cluster_security_group_id)]
        targets += [(f"subnet-{index}", subnet) for index, subnet in enumerate(args.existing_subnet_ids)]
        for slug, resource_id in targets:
            ec2.Tag(
                f"{name}-discovery-{slug}",
                resource_id=resource_id,
                key=DISCOVERY_TAG,
                value=args.cluster_name,
                opts=on_aws,
            )
