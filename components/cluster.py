"""The EKS control plane, its IAM, IRSA, secrets encryption, a CPU system node group and a Kubernetes provider."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws.eks as eks
import pulumi_aws.iam as iam
import pulumi_aws.kms as kms
import pulumi_aws.vpc as vpc
import pulumi_kubernetes as k8s

from components.aws_nodes import launch_template, node_role, service_trust_policy


@dataclass(frozen=True)
class ClusterArgs:
    region: str
    kubernetes_version: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    system_instance_types: list[str]
    system_min_size: int
    system_desired_size: int
    system_max_size: int
    system_disk_size_gib: int = 50
    endpoint_public_access: bool = False
    endpoint_private_access: bool = True
    public_access_cidrs: list[str] = field(default_factory=list)
    # Ways into a private endpoint: each becomes a 443 ingress rule on the EKS-created cluster security group.
    private_access_cidrs: list[str] = field(default_factory=list)
    private_access_security_group_ids: list[str] = field(default_factory=list)
    # The cluster's upgradePolicy.supportType: STANDARD (auto-upgrade, never billed extended) or EXTENDED.
    support_type: str = "STANDARD"
    # gp3 performance of the `gp3` StorageClass's volumes (None = the EBS CSI driver's 125 MiB/s / 3,000 IOPS).
    volume_throughput_mibps: int | None = None
    volume_iops: int | None = None
    log_types: list[str] = field(default_factory=lambda: ["api", "audit", "authenticator"])
    tags: dict[str, str] = field(default_factory=dict)


SYSTEM_NODE_LABEL = {"llm-serving/node-role": "system"}


def kubeconfig(cluster_name: str, region: str, endpoint: str, certificate_authority: str) -> str:
    """A kubeconfig whose credentials come from `aws eks get-token`: nothing secret is stored in state."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster_name,
                    "cluster": {"server": endpoint, "certificate-authority-data": certificate_authority},
                }
            ],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
            "current-context": cluster_name,
            "users": [
                {
                    "name": cluster_name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region],
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )


def vpc_config(args: ClusterArgs) -> eks.ClusterVpcConfigArgs:
    """The endpoint's reach: private subnets, and a public endpoint only with its allow-list."""
    return eks.ClusterVpcConfigArgs(
        subnet_ids=args.private_subnet_ids,
        endpoint_private_access=args.endpoint_private_access,
        endpoint_public_access=args.endpoint_public_access,
        public_access_cidrs=args.public_access_cidrs if args.endpoint_public_access else None,
    )


def gp3_parameters(args: ClusterArgs) -> dict[str, str]:
    """The `gp3` StorageClass's parameters: encrypted ext4 gp3, with the configured throughput and IOPS if any.

    `throughput` (MiB/s) and `iops` are the EBS CSI driver's StorageClass parameters
    (kubernetes-sigs/aws-ebs-csi-driver docs/parameters.md); without them a volume gets 125 MiB/s.
    """
    volume_performance = {
        key: str(value)
        for key, value in (("throughput", args.volume_throughput_mibps), ("iops", args.volume_iops))
        if value is not None
    }
    return {"type": "gp3", "encrypted": "true", "fsType": "ext4", **volume_performance}


def oidc_issuer(identities: Sequence[eks.outputs.ClusterIdentity]) -> str:
    """The cluster's OIDC issuer URL, or "" while EKS has not reported one."""
    return (identities[0].oidcs[0].issuer or "") if identities and identities[0].oidcs else ""


class Cluster(pulumi.ComponentResource):
    """The control plane and what it needs to be usable: IAM, KMS, OIDC, private access rules, the system node
    group, the EBS CSI driver, a Kubernetes provider and the default gp3 StorageClass."""

    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    # EKS's cluster security group, on every node of a managed node group: what the stores admit (aws_stores.py).
    cluster_security_group_id: pulumi.Output[str]
    provider: k8s.Provider
    storage_class: k8s.storage.v1.StorageClass
    # The security group EKS creates for the control plane and its managed nodes (Karpenter's nodes join it too).
    security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster = self._control_plane(name, args)
        self._private_access_rules(name, args, cluster)
        issuer: pulumi.Output[str] = cluster.identities.apply(oidc_issuer)
        oidc = iam.OpenIdConnectProvider(
            f"{name}-oidc",
            url=issuer,
            client_id_lists=["sts.amazonaws.com"],
            tags=args.tags,
            opts=child,
        )
        system_nodes = self._system_nodes(name, args, cluster)
        # The add-on turns ACTIVE only once its controller pods run, which needs nodes to schedule on.
        ebs_csi = self._ebs_csi_driver(name, args, cluster, oidc, issuer, system_nodes)

        self.cluster_name = cluster.name
        self.endpoint = cluster.endpoint
        self.security_group_id = cluster.vpc_config.apply(lambda config: config.cluster_security_group_id or "")
        self.oidc_provider_arn = oidc.arn
        self.oidc_issuer = issuer
        self.cluster_security_group_id = cluster.vpc_config.apply(lambda config: config.cluster_security_group_id or "")
        self.kubeconfig = pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority).apply(
            lambda parts: kubeconfig(parts[0], args.region, parts[1], parts[2]["data"] if parts[2] else "")
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=child,
        )
        # EKS's default class is gp2 with the in-tree provisioner; model caches and Prometheus ask for gp3.
        self.storage_class = k8s.storage.v1.StorageClass(
            "gp3",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="gp3", annotations={"storageclass.kubernetes.io/is-default-class": "true"}
            ),
            provisioner="ebs.csi.aws.com",
            parameters=gp3_parameters(args),
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[ebs_csi]),
        )
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "endpoint": self.endpoint,
                "oidc_provider_arn": self.oidc_provider_arn,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _control_plane(self, name: str, args: ClusterArgs) -> eks.Cluster:
        """The EKS cluster with its service role and the KMS key that envelope-encrypts Secrets."""
        child = pulumi.ResourceOptions(parent=self)
        cluster_role = iam.Role(
            f"{name}-cluster-role",
            name=f"{name}-cluster-role",
            assume_role_policy=service_trust_policy("eks.amazonaws.com", ["sts:AssumeRole", "sts:TagSession"]),
            tags=args.tags,
            opts=child,
        )
        policy_attachment = iam.RolePolicyAttachment(
            f"{name}-cluster-policy",
            role=cluster_role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=pulumi.ResourceOptions(parent=cluster_role),
        )
        secrets_key = kms.Key(
            f"{name}-secrets-key",
            description=f"Envelope encryption of Kubernetes Secrets in {name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=args.tags,
            opts=child,
        )
        return eks.Cluster(
            name,
            name=name,
            version=args.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config=vpc_config(args),
            encryption_config=eks.ClusterEncryptionConfigArgs(
                resources=["secrets"],
                provider=eks.ClusterEncryptionConfigProviderArgs(key_arn=secrets_key.arn),
            ),
            access_config=eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=True,
            ),
            # Explicit, because EKS's own default is EXTENDED (billed 6x once the version leaves standard support).
            upgrade_policy=eks.ClusterUpgradePolicyArgs(support_type=args.support_type),
            enabled_cluster_log_types=list(args.log_types),
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy_attachment]),
        )

    def _system_nodes(self, name: str, args: ClusterArgs, cluster: eks.Cluster) -> eks.NodeGroup:
        """On-demand CPU nodes for the platform's own pods (gateway, controllers, monitoring)."""
        system_role, system_policies = node_role(f"{name}-system", args.tags, self)
        system_template = launch_template(f"{name}-system", args.system_disk_size_gib, args.tags, self)
        return eks.NodeGroup(
            f"{name}-system",
            node_group_name=f"{name}-system",
            cluster_name=cluster.name,
            node_role_arn=system_role.arn,
            subnet_ids=args.private_subnet_ids,
            instance_types=list(args.system_instance_types),
            capacity_type="ON_DEMAND",
            ami_type="AL2023_x86_64_STANDARD",
            scaling_config=eks.NodeGroupScalingConfigArgs(
                min_size=args.system_min_size,
                desired_size=args.system_desired_size,
                max_size=args.system_max_size,
            ),
            update_config=eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            launch_template=eks.NodeGroupLaunchTemplateArgs(
                id=system_template.id, version=system_template.latest_version.apply(str)
            ),
            labels=SYSTEM_NODE_LABEL,
            tags=args.tags,
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["scalingConfig.desiredSize"], depends_on=system_policies
            ),
        )

    def _private_access_rules(self, name: str, args: ClusterArgs, cluster: eks.Cluster) -> None:
        """443 into the cluster security group from the configured networks and security groups.

        EKS creates the cluster security group and lets only itself in; the private endpoint's ENIs carry it, so
        without a rule no deployer (VPN user, CI runner) reaches the API server
        (https://docs.aws.amazon.com/eks/latest/userguide/sec-group-reqs.html).
        """
        group_id = cluster.vpc_config.apply(lambda config: config.cluster_security_group_id or "")
        sources = [
            ("cidr", "private_access_cidrs", "cidr_ipv4", args.private_access_cidrs),
            (
                "sg",
                "private_access_security_group_ids",
                "referenced_security_group_id",
                args.private_access_security_group_ids,
            ),
        ]
        for kind, key, source_field, values in sources:
            for index, source in enumerate(values):
                vpc.SecurityGroupIngressRule(
                    f"{name}-api-from-{kind}-{index}",
                    security_group_id=group_id,
                    description=f"Kubernetes API from {source} (cluster.{key})",
                    ip_protocol="tcp",
                    from_port=443,
                    to_port=443,
                    tags=args.tags,
                    opts=pulumi.ResourceOptions(parent=self),
                    **{source_field: source},
                )

    def _ebs_csi_driver(
        self,
        name: str,
        args: ClusterArgs,
        cluster: eks.Cluster,
        oidc: iam.OpenIdConnectProvider,
        issuer: pulumi.Output[str],
        nodes: eks.NodeGroup,
    ) -> eks.Addon:
        """The EBS CSI driver (model caches and Prometheus volumes are gp3 PVCs), with its own IRSA role."""
        subject = issuer.apply(lambda url: url.removeprefix("https://"))
        role = iam.Role(
            f"{name}-ebs-csi-role",
            name=f"{name}-ebs-csi-role",
            assume_role_policy=pulumi.Output.all(oidc.arn, subject).apply(
                lambda parts: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Federated": parts[0]},
                                "Action": "sts:AssumeRoleWithWebIdentity",
                                "Condition": {
                                    "StringEquals": {
                                        f"{parts[1]}:sub": "system:serviceaccount:kube-system:ebs-csi-controller-sa",
                                        f"{parts[1]}:aud": "sts.amazonaws.com",
                                    }
                                },
                            }
                        ],
                    },
                    sort_keys=True,
                )
            ),
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        policy = iam.RolePolicyAttachment(
            f"{name}-ebs-csi-policy",
            role=role.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
            opts=pulumi.ResourceOptions(parent=role),
        )
        return eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=cluster.name,
            addon_name="aws-ebs-csi-driver",
            service_account_role_arn=role.arn,
            resolve_conflicts_on_update="OVERWRITE",
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, nodes]),
        )
