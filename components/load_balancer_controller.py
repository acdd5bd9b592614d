"""The AWS Load Balancer Controller: it turns `loadBalancerClass: service.k8s.aws/nlb` Services into NLBs and
Ingresses of class `alb` into ALBs. Nothing else in EKS does either.

Installed from the official eks-charts chart, pinned, on the system nodes; its AWS permissions are the controller's
own published IAM policy (vendored), granted through EKS Pod Identity (the controller's docs call it the recommended
option: kubernetes-sigs/aws-load-balancer-controller@v3.5.0:docs/deploy/installation.md, "Option B").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws.eks as eks
import pulumi_aws.iam as iam
import pulumi_kubernetes as k8s

from components.aws_nodes import service_trust_policy

CHART = "aws-load-balancer-controller"
# aws/eks-charts@5239609242f3 stable/aws-load-balancer-controller/Chart.yaml: version 3.5.0, appVersion v3.5.0.
CHART_VERSION = "3.5.0"
CHART_REPO = "https://aws.github.io/eks-charts"
# https://raw.githubusercontent.com/kubernetes-sigs/aws-load-balancer-controller/v3.5.0/docs/install/iam_policy.json
# (tag v3.5.0 = commit 11eb202c97e4); the controller's version and its policy move together.
IAM_POLICY_FILE = Path(__file__).parent / "controllers_data" / "aws-load-balancer-controller-iam-policy-v3.5.0.json"
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
# The IngressClass the platform renders itself (rather than the chart's), so the render shows it and the tests can
# check that an Ingress names a class some installed controller serves.
INGRESS_CLASS = "alb"
ALB_CONTROLLER = "ingress.k8s.aws/alb"
NLB_LOAD_BALANCER_CLASS = "service.k8s.aws/nlb"


@dataclass(frozen=True)
class LoadBalancerControllerArgs:
    cluster_name: pulumi.Input[str]
    region: str
    vpc_id: pulumi.Input[str]
    # The AWS provider for IAM and the Pod Identity association, the cluster's for the chart.
    aws_provider: pulumi.ProviderResource
    kubernetes_provider: pulumi.ProviderResource
    node_selector: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def helm_values(
    cluster_name: pulumi.Input[str], region: str, vpc_id: pulumi.Input[str], node_selector: dict[str, str]
) -> dict[str, Any]:
    return {
        "clusterName": cluster_name,
        # The nodes' IMDS hop limit is 1 (components/aws_nodes.py), so the pods cannot look these up themselves;
        # the controller's docs say to pass region and VPC then (installation.md, "IMDSv2").
        "region": region,
        "vpcId": vpc_id,
        "replicaCount": 2,
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        "nodeSelector": node_selector,
        "createIngressClassResource": False,
        "ingressClassParams": {"create": False},
        # The chart's Service mutator webhook (mservice.elbv2.k8s.aws, failurePolicy Fail, every Service CREATE)
        # would fail any Service created while the controller is not ready; ours name loadBalancerClass themselves.
        "enableServiceMutatorWebhook": False,
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    }


class LoadBalancerController(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    ingress_class: k8s.networking.v1.IngressClass

    def __init__(self, name: str, args: LoadBalancerControllerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:LoadBalancerController", name, None, opts)
        on_aws = pulumi.ResourceOptions(parent=self, provider=args.aws_provider)
        on_k8s = pulumi.ResourceOptions(parent=self, provider=args.kubernetes_provider)
        policy = iam.Policy(
            f"{name}-policy",
            name=f"{name}-policy",
            description="AWS Load Balancer Controller v3.5.0 (upstream docs/install/iam_policy.json)",
            policy=IAM_POLICY_FILE.read_text(),
            tags=args.tags,
            opts=on_aws,
        )
        role = iam.Role(
            f"{name}-role",
            name=f"{name}-role",
            # EKS Pod Identity's trust policy (https://docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html).
            assume_role_policy=service_trust_policy("pods.eks.amazonaws.com", ["sts:AssumeRole", "sts:TagSession"]),
            tags=args.tags,
            opts=on_aws,
        )
        attachment = iam.RolePolicyAttachment(
            f"{name}-policy-attachment",
            role=role.name,
            policy_arn=policy.arn,
            opts=pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(parent=role)),
        )
        association = eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=args.cluster_name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role_arn=role.arn,
            tags=args.tags,
            opts=on_aws,
        )
        # Credentials are injected when a pod starts: the association and the policy must exist before the pods.
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=CHART,
            chart=CHART,
            version=CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=NAMESPACE,
            values=helm_values(args.cluster_name, args.region, args.vpc_id, args.node_selector),
            atomic=True,
            opts=pulumi.ResourceOptions.merge(on_k8s, pulumi.ResourceOptions(depends_on=[association, attachment])),
        )
        self.ingress_class = k8s.networking.v1.IngressClass(
            f"{name}-ingress-class",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=INGRESS_CLASS),
            spec=k8s.networking.v1.IngressClassSpecArgs(controller=ALB_CONTROLLER),
            opts=on_k8s,
        )
        self.register_outputs({})
