"""EKS managed add-ons the platform relies on: VPC CNI (with its NetworkPolicy agent), CoreDNS, kube-proxy and the
EKS Pod Identity agent, each pinned per Kubernetes version.

EKS installs vpc-cni, coredns and kube-proxy itself as *self-managed* add-ons; declaring them as managed add-ons
(`resolve_conflicts_on_create="OVERWRITE"`) adopts them, so their version and configuration are in code. The EBS CSI
driver stays in components/cluster.py: its StorageClass and IRSA role live there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pulumi
import pulumi_aws.eks as eks

log = logging.getLogger(__name__)

VPC_CNI = "vpc-cni"
COREDNS = "coredns"
KUBE_PROXY = "kube-proxy"
POD_IDENTITY_AGENT = "eks-pod-identity-agent"
ADDONS = (VPC_CNI, COREDNS, KUBE_PROXY, POD_IDENTITY_AGENT)

# The VPC CNI enforces NetworkPolicy only when its network-policy agent is on; the add-on's configuration key is
# `enableNetworkPolicy`, a string (https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy-configure.html;
# the same key and type as aws/eks-charts@5239609:stable/aws-vpc-cni/values.yaml `enableNetworkPolicy: "false"`).
# Needs VPC CNI v1.14.0 or later.
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}

# Kubernetes version -> add-on -> pinned add-on version. Values are the "latest version of the Amazon EKS add-on type
# for each Kubernetes version" tables of the EKS user guide, as served on 2026-12 at
#   coredns:    https://docs.aws.amazon.com/ja_jp/eks/latest/userguide/managing-coredns.md (table lists 1.30-1.36)
#   kube-proxy: https://docs.aws.amazon.com/ja_jp/eks/latest/userguide/managing-kube-proxy.md (1.31-1.36)
#   vpc-cni:    https://docs.aws.amazon.com/ja_jp/eks/latest/userguide/pod-networking.html (1.27-1.33)
# None means no version could be verified offline: EKS then installs its default version for the cluster's
# Kubernetes version (CreateAddon without addonVersion), which `pulumi refresh` records. Verify and pin with
#   aws eks describe-addon-versions --addon-name <name> --kubernetes-version <v> \
#     --query 'addons[].addonVersions[?compatibilities[?defaultVersion]].addonVersion'
# A new Kubernetes version is one more row.
ADDON_VERSIONS: dict[str, dict[str, str | None]] = {
    "1.32": {
        VPC_CNI: "v1.20.1-eksbuild.3",
        COREDNS: "v1.11.4-eksbuild.40",
        KUBE_PROXY: "v1.32.13-eksbuild.16",
        POD_IDENTITY_AGENT: None,
    },
    "1.33": {
        VPC_CNI: "v1.20.1-eksbuild.3",
        COREDNS: "v1.12.4-eksbuild.18",
        KUBE_PROXY: "v1.33.10-eksbuild.13",
        POD_IDENTITY_AGENT: None,
    },
    "1.34": {
        VPC_CNI: None,
        COREDNS: "v1.13.2-eksbuild.11",
        KUBE_PROXY: "v1.34.6-eksbuild.13",
        POD_IDENTITY_AGENT: None,
    },
    "1.35": {
        VPC_CNI: None,
        COREDNS: "v1.14.3-eksbuild.3",
        KUBE_PROXY: "v1.35.3-eksbuild.13",
        POD_IDENTITY_AGENT: None,
    },
}


def addon_version(kubernetes_version: str, addon: str) -> str | None:
    """The pinned version of `addon` for a cluster at `kubernetes_version`, or None for EKS's default."""
    versions = ADDON_VERSIONS.get(kubernetes_version)
    if versions is None:
        log.warning("no pinned EKS add-on versions for Kubernetes %s; EKS installs its defaults", kubernetes_version)
        return None
    return versions.get(addon)


@dataclass(frozen=True)
class ClusterAddonsArgs:
    cluster_name: pulumi.Input[str]
    kubernetes_version: str
    tags: dict[str, str] = field(default_factory=dict)


class ClusterAddons(pulumi.ComponentResource):
    """vpc-cni (NetworkPolicy on), coredns, kube-proxy and the Pod Identity agent as versioned EKS add-ons."""

    addons: dict[str, eks.Addon]

    def __init__(self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:ClusterAddons", name, None, opts)
        self.addons = {}
        for addon in ADDONS:
            self.addons[addon] = eks.Addon(
                f"{name}-{addon}",
                cluster_name=args.cluster_name,
                addon_name=addon,
                addon_version=addon_version(args.kubernetes_version, addon),
                configuration_values=json.dumps(VPC_CNI_CONFIGURATION, sort_keys=True) if addon == VPC_CNI else None,
                # Adopt the self-managed copies EKS installed at cluster creation, and keep this code the owner of
                # their configuration on later updates.
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                tags=args.tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})
