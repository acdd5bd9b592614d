"""The Pulumi program: read and validate the stack's config, then wire the components.

`pulumi up` and `llm-serving render` both run `main()`; the render only swaps the engine for the SDK's mocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.config import PROJECT, ConfigError, PlatformConfig, parse_platform
from infra.controllers import wire_metrics_server
from infra.gateway_wiring import wire_gateway
from infra.observability import wire_monitoring
from infra.planning import capacity_outputs, cost_outputs
from infra.serving import wire_serving


@dataclass(frozen=True)
class Secrets:
    """Every secret the platform uses, as Pulumi secret outputs (None when the stack does not set it)."""

    hf_token: pulumi.Output[str] | None
    vllm_api_key: pulumi.Output[str] | None
    openai_api_key: pulumi.Output[str] | None
    grafana_admin_password: pulumi.Output[str] | None
    team_keys: pulumi.Output[dict[str, list[str]]] | None


def read_secrets(config: pulumi.Config) -> Secrets:
    """The keys of SECRET_KEYS, each a Pulumi secret."""
    return Secrets(
        hf_token=config.get_secret("hfToken"),
        vllm_api_key=config.get_secret("vllmApiKey"),
        openai_api_key=config.get_secret("openaiApiKey"),
        grafana_admin_password=config.get_secret("grafanaAdminPassword"),
        team_keys=config.get_secret_object("teamKeys"),
    )


def load_platform(config: pulumi.Config) -> PlatformConfig:
    """Validate before registering anything: a bad stack file costs nothing and says exactly what is wrong."""
    try:
        return parse_platform(pulumi.get_stack(), config.get_object("platform"))
    except ConfigError as error:
        # RunError prints the message without a Python traceback.
        raise pulumi.RunError(str(error)) from None


def main() -> None:
    config = pulumi.Config(PROJECT)
    platform = load_platform(config)
    for key, value in build(platform, read_secrets(config)).items():
        pulumi.export(key, value)


def build(platform: PlatformConfig, secrets: Secrets) -> dict[str, object]:
    """Create every resource of the platform; returns the stack outputs."""
    outputs: dict[str, object] = {
        "environment": platform.environment,
        "capacity": capacity_outputs(platform),
        "cost": cost_outputs(platform),
    }
    tags = {"project": PROJECT, "environment": platform.environment}
    # What the gateway's load balancer objects wait for (the controller that serves them).
    exposure_dependencies: list[pulumi.Resource] = []
    if platform.aws is not None:
        tags |= platform.aws.tags
        k8s_provider = _aws(platform, tags, outputs, exposure_dependencies)
    else:
        # The local stack talks to whatever cluster the current kubeconfig context points at (kind, k3d, minikube).
        k8s_provider = k8s.Provider("local-k8s", enable_server_side_apply=True)
    _kubernetes(platform, secrets, k8s_provider, outputs, exposure_dependencies)
    return outputs


def _aws(
    platform: PlatformConfig,
    tags: dict[str, str],
    outputs: dict[str, object],
    exposure_dependencies: list[pulumi.Resource],
) -> k8s.Provider:
    # Imported here: the AWS SDK is the heaviest import, and the local stack never needs it.
    import pulumi_aws as aws

    from components.cluster import Cluster, ClusterArgs
    from components.gpu_node_group import GpuNodeGroup, GpuNodeGroupArgs
    from components.network import Network, NetworkArgs
    from infra.controllers import wire_aws_controllers
    from infra.sizing import node_group_disk_gib, node_group_gpu

    assert platform.aws is not None and platform.network is not None and platform.cluster is not None
    cluster_name = f"{PROJECT}-{platform.environment}"
    provider = aws.Provider("aws", region=platform.aws.region, default_tags=aws.ProviderDefaultTagsArgs(tags=tags))
    opts = pulumi.ResourceOptions(providers=[provider])
    network_config = platform.network
    network = Network(
        cluster_name,
        NetworkArgs(
            cluster_name=cluster_name,
            vpc_cidr=network_config.vpc_cidr,
            availability_zones=network_config.availability_zones,
            nat_gateways=network_config.nat_gateways,
            existing_vpc_id=network_config.existing_vpc_id,
            existing_private_subnet_ids=network_config.existing_private_subnet_ids,
            existing_public_subnet_ids=network_config.existing_public_subnet_ids,
            tags=tags,
        ),
        opts=opts,
    )
    cluster_config = platform.cluster
    system = cluster_config.system_nodes
    cluster = Cluster(
        cluster_name,
        ClusterArgs(
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
            log_types=list(cluster_config.log_types),
            tags=tags,
        ),
        opts=opts,
    )
    for group in platform.gpu_node_groups:
        GpuNodeGroup(
            f"{cluster_name}-{group.name}",
            GpuNodeGroupArgs(
                cluster_name=cluster.cluster_name,
                subnet_ids=network.private_subnet_ids,
                instance_types=group.instance_types,
                gpu_model=str(node_group_gpu(group).gpu_model),
                capacity_type=group.capacity_type,
                min_size=group.scaling.min_size,
                desired_size=group.scaling.desired_size,
                max_size=group.scaling.max_size,
                disk_size_gib=node_group_disk_gib(platform, group),
                labels={**group.labels, "llm-serving/node-group-name": group.name},
                tags=tags,
            ),
            opts=opts,
        )
    exposure_dependencies += wire_aws_controllers(
        platform, cluster_name, cluster, cluster.cluster_name, network.vpc_id, provider, cluster.provider, tags
    )
    outputs["cluster_name"] = cluster.cluster_name
    outputs["cluster_endpoint"] = cluster.endpoint
    outputs["kubeconfig"] = cluster.kubeconfig
    outputs["vpc_id"] = network.vpc_id
    return cluster.provider


def _kubernetes(
    platform: PlatformConfig,
    secrets: Secrets,
    provider: k8s.Provider,
    outputs: dict[str, object],
    exposure_dependencies: list[pulumi.Resource],
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
    outputs |= wire_serving(platform, secrets, opts)
    outputs |= wire_gateway(platform, secrets, opts, exposure_depends_on=exposure_dependencies)
    outputs |= wire_monitoring(platform, secrets, opts)
    outputs |= wire_metrics_server(platform, opts)
