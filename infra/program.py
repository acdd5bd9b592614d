"""The Pulumi program: read and validate the stack's config, then wire the components.

`pulumi up` and `llm-serving render` both run `main()`; the render only swaps the engine for the SDK's mocks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s

from infra.config import PROJECT, ConfigError, PlatformConfig
from infra.controllers import wire_metrics_server
from infra.gateway_wiring import wire_gateway
from infra.observability import wire_monitoring
from infra.plan import Plan, plan_platform
from infra.secrets import Secrets, read_secrets
from infra.serving import wire_serving
from infra.stores_wiring import StoreEndpoints, ledger_access
from infra.validation import parse_platform

if TYPE_CHECKING:
    # Annotations only: the AWS components load the AWS SDK, which the local stack never imports.
    from components.cluster import Cluster, ClusterArgs
    from components.gpu_node_group import GpuNodeGroupArgs
    from components.network import Network, NetworkArgs
    from infra.config import GpuNodeGroupConfig
    from infra.plan import GroupPlan

log = logging.getLogger(__name__)


def load_platform(config: pulumi.Config) -> PlatformConfig:
    """Validate before registering anything: a bad stack file costs nothing and says exactly what is wrong."""
    try:
        return parse_platform(pulumi.get_stack(), config.get_object("platform"))
    except ConfigError as error:
        # RunError prints the message without a Python traceback.
        raise pulumi.RunError(str(error)) from None


def refuse_placeholders(platform: PlatformConfig) -> None:
    """A real preview/up stops on the stack files' example values (documentation CIDRs, the example account, an
    all-zero certificate ARN) and on a Kubernetes version EKS would not keep as configured today, before
    registering anything; the offline render keeps the example values and only warns about the version."""
    from infra.placeholders import cluster_version_problems, placeholder_problems

    problems = placeholder_problems(platform)
    if problems:
        raise pulumi.RunError(
            str(ConfigError(pulumi.get_stack(), problems))
            + "\n(these are the stack file's example values; set real ones with `pulumi config edit` or in "
            "stacks/Pulumi.<stack>.yaml, see README 'Deploying for real')"
        )
    problems = cluster_version_problems(platform)
    if problems:
        raise pulumi.RunError(str(ConfigError(pulumi.get_stack(), problems)))


def warn_offline(platform: PlatformConfig) -> None:
    from infra.placeholders import cluster_version_problems

    for problem in cluster_version_problems(platform):
        log.warning("stack %r: a real preview/up would refuse this: %s", pulumi.get_stack(), problem)


def main(allow_placeholders: bool = False) -> None:
    config = pulumi.Config(PROJECT)
    platform = load_platform(config)
    if allow_placeholders:
        warn_offline(platform)
    else:
        refuse_placeholders(platform)
    for key, value in build(platform, read_secrets(config)).items():
        pulumi.export(key, value)


def build(platform: PlatformConfig, secrets: Secrets) -> dict[str, object]:
    """Create every resource of the platform; returns the stack outputs."""
    plan = plan_platform(platform)
    outputs: dict[str, object] = {
        "environment": plan.environment,
        "capacity": dict(plan.capacity),
        "cost": dict(plan.cost),
        "scaling": {name: dict(figures) for name, figures in plan.scaling.items()},
    }
    tags = {"project": PROJECT, "environment": platform.environment}
    workload_dependencies: list[pulumi.Resource] = []
    # What the gateway's load balancer objects wait for (the controller that serves them).
    exposure_dependencies: list[pulumi.Resource] = []
    aws_provider: pulumi.ProviderResource | None = None
    # Hosts of RDS/ElastiCache when the stack has them (filled by _aws); the in-cluster stores need none.
    store_endpoints = StoreEndpoints()
    if platform.aws is not None:
        tags |= platform.aws.tags
        k8s_provider, aws_provider = _aws(
            platform, plan, tags, outputs, workload_dependencies, exposure_dependencies, secrets, store_endpoints
        )
    else:
        # The local stack talks to whatever cluster the current kubeconfig context points at (kind, k3d, minikube).
        k8s_provider = k8s.Provider("local-k8s", enable_server_side_apply=True)
    _kubernetes(
        platform,
        plan,
        secrets,
        k8s_provider,
        outputs,
        workload_dependencies,
        exposure_dependencies,
        aws_provider,
        store_endpoints,
    )
    return outputs


def _aws(
    platform: PlatformConfig,
    plan: Plan,
    tags: dict[str, str],
    outputs: dict[str, object],
    workload_dependencies: list[pulumi.Resource],
    exposure_dependencies: list[pulumi.Resource],
    secrets: Secrets,
    store_endpoints: StoreEndpoints,
) -> tuple[k8s.Provider, pulumi.ProviderResource]:
    """The AWS side (returns the cluster's Kubernetes provider and the AWS provider); appends to
    `workload_dependencies` what the vLLM workloads need to exist first, and to
    `exposure_dependencies` the controllers the gateway's load balancer objects need."""
    # Imported here: the AWS SDK is the heaviest import, and the local stack never needs it.
    import pulumi_aws as aws

    from components.cluster import Cluster
    from components.network import Network
    from infra.controllers import wire_aws_controllers
    from infra.karpenter_wiring import wire_karpenter_pools
    from infra.stores_wiring import wire_aws_stores

    assert platform.aws is not None
    cluster_name = plan.cluster_name
    provider = aws.Provider("aws", region=platform.aws.region, default_tags=aws.ProviderDefaultTagsArgs(tags=tags))
    opts = pulumi.ResourceOptions(providers=[provider])
    network = Network(cluster_name, _network_args(platform, cluster_name, tags), opts=opts)
    cluster = Cluster(cluster_name, _cluster_args(platform, network, tags), opts=opts)
    # A first `up` must not start vLLM pods before their nodes, gp3 volumes and (below, in wire_serving) the device
    # plugin exist: their await would run out while nothing can schedule.
    workload_dependencies.append(cluster.storage_class)
    workload_dependencies += _managed_gpu_groups(platform, plan, cluster, network, tags, opts)

    def karpenter(addons: pulumi.Resource) -> None:
        # Karpenter's controller gets its AWS credentials from the Pod Identity agent add-on.
        workload_dependencies.extend(wire_karpenter_pools(platform, plan, cluster, provider, tags, after=[addons]))

    exposure_dependencies += wire_aws_controllers(
        platform,
        cluster_name,
        cluster,
        cluster.cluster_name,
        network.vpc_id,
        provider,
        cluster.provider,
        tags,
        karpenter,
    )
    managed = wire_aws_stores(platform, secrets, network, cluster, provider, tags)
    store_endpoints.postgres_host, store_endpoints.valkey_host = managed.postgres_host, managed.valkey_host
    outputs["cluster_name"] = cluster.cluster_name
    outputs["cluster_endpoint"] = cluster.endpoint
    outputs["kubeconfig"] = cluster.kubeconfig
    outputs["vpc_id"] = network.vpc_id
    return cluster.provider, provider


def _managed_gpu_groups(
    platform: PlatformConfig,
    plan: Plan,
    cluster: Cluster,
    network: Network,
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> list[pulumi.Resource]:
    """The managed GPU node groups (Karpenter pools are wired with their controller); their node groups."""
    from components.gpu_node_group import GpuNodeGroup

    node_groups: list[pulumi.Resource] = []
    for group, group_plan in zip(platform.gpu_node_groups, plan.groups, strict=True):
        if group.provisioner != "managed":
            continue
        gpu_group = GpuNodeGroup(
            group_plan.component_name, _gpu_node_group_args(group, group_plan, cluster, network, tags), opts=opts
        )
        node_groups.append(gpu_group.node_group)
    return node_groups


def _network_args(platform: PlatformConfig, cluster_name: str, tags: dict[str, str]) -> NetworkArgs:
    from components.network import NetworkArgs

    network_config = platform.network
    assert network_config is not None
    return NetworkArgs(
        cluster_name=cluster_name,
        vpc_cidr=network_config.vpc_cidr,
        availability_zones=network_config.availability_zones,
        nat_gateways=network_config.nat_gateways,
        existing_vpc_id=network_config.existing_vpc_id,
        existing_private_subnet_ids=network_config.existing_private_subnet_ids,
        existing_public_subnet_ids=network_config.existing_public_subnet_ids,
        tags=tags,
    )


def _cluster_args(platform: PlatformConfig, network: Network, tags: dict[str, str]) -> ClusterArgs:
    from components.cluster import ClusterArgs
    from infra.storage import WEIGHT_VOLUME_IOPS, WEIGHT_VOLUME_THROUGHPUT_MIBPS

    assert platform.aws is not None and platform.cluster is not None
    cluster_config = platform.cluster
    system = cluster_config.system_nodes
    return ClusterArgs(
        region=platform.aws.region,
        kubernetes_version=cluster_config.kubernetes_version,
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        system_instance_types=system.instance_types,
        system_min_size=system.scaling.min_size,
        system_desired_size=system.scaling.desired_size,
        system_max_size=system.scaling.max_size,
        system_disk_size_gib=system.disk_size_gib,
        endpoint_public_access=cluster_config.endpoint_public_access,
        endpoint_private_access=cluster_config.endpoint_private_access,
        public_access_cidrs=cluster_config.public_access_cidrs,
        private_access_cidrs=cluster_config.private_access_cidrs,
        private_access_security_group_ids=cluster_config.private_access_security_group_ids,
        support_type=cluster_config.upgrade_policy.support_type,
        # The planner's start-up estimate reads weights at this rate (infra/capacity.py): provision it.
        volume_throughput_mibps=WEIGHT_VOLUME_THROUGHPUT_MIBPS,
        volume_iops=WEIGHT_VOLUME_IOPS,
        log_types=list(cluster_config.log_types),
        tags=tags,
    )


def _gpu_node_group_args(
    group: GpuNodeGroupConfig, group_plan: GroupPlan, cluster: Cluster, network: Network, tags: dict[str, str]
) -> GpuNodeGroupArgs:
    from components.gpu_node_group import GpuNodeGroupArgs
    from infra.storage import WEIGHT_VOLUME_IOPS, WEIGHT_VOLUME_THROUGHPUT_MIBPS

    return GpuNodeGroupArgs(
        cluster_name=cluster.cluster_name,
        subnet_ids=network.private_subnet_ids,
        instance_types=group.instance_types,
        gpu_model=str(group_plan.shape.gpu_model),
        capacity_type=group.capacity_type,
        min_size=group.scaling.min_size,
        desired_size=group.scaling.desired_size,
        max_size=group.scaling.max_size,
        disk_size_gib=group_plan.disk_gib,
        root_volume_throughput_mibps=WEIGHT_VOLUME_THROUGHPUT_MIBPS,
        root_volume_iops=WEIGHT_VOLUME_IOPS,
        labels={**group.labels, "llm-serving/node-group-name": group.name},
        tags=tags,
    )


def _kubernetes(
    platform: PlatformConfig,
    plan: Plan,
    secrets: Secrets,
    provider: k8s.Provider,
    outputs: dict[str, object],
    workload_dependencies: Sequence[pulumi.Resource] = (),
    exposure_dependencies: Sequence[pulumi.Resource] = (),
    aws_provider: pulumi.ProviderResource | None = None,
    store_endpoints: StoreEndpoints | None = None,
) -> None:
    opts = pulumi.ResourceOptions(providers=[provider])
    k8s.core.v1.Namespace(
        platform.namespace,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=platform.namespace,
            labels={
                # vLLM needs a writable cache and /dev/shm; "baseline" is the strictest level it runs under.
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        ),
        opts=pulumi.ResourceOptions(provider=provider),
    )
    # Each wiring module turns one part of the validated config into components and returns stack outputs.
    outputs |= wire_serving(platform, plan, secrets, opts, depends_on=workload_dependencies)
    outputs |= wire_gateway(
        platform,
        secrets,
        opts,
        exposure_depends_on=list(exposure_dependencies),
        aws_provider=aws_provider,
        store_endpoints=store_endpoints,
    )
    ledger = ledger_access(platform, secrets, store_endpoints or StoreEndpoints())
    outputs |= wire_monitoring(platform, plan, secrets, opts, ledger=ledger)
    outputs |= wire_metrics_server(platform, opts)
