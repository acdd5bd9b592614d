"""The plan: every fact derived from a validated stack config, computed once, pure and frozen.

stack file -> schema (infra/config.py) -> plan (here) -> wiring (serving, gateway_wiring, observability,
controllers, program) -> components -> resources. The wiring reads the plan and never derives a figure itself;
`render` prints the plan's capacity and cost, and tests can check the plan without Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components import naming
from components.alerts import AlertSettings
from components.gpu_node_group import node_labels
from components.monitoring import MonitoringArgs
from components.tracing import collector_traces_url
from components.vllm_deployment import CPU_STARTUP_BUDGET_SECONDS, VllmServeOptions
from infra.capacity import CapacityPlan, startup_seconds
from infra.config import PROJECT, GpuNodeGroupConfig, ModelConfig, PlatformConfig
from infra.elastic import idle_gpu_nodes, min_replicas, scale_cost, scaling_outputs
from infra.instances import InstanceType
from infra.models import quantization_flag
from infra.planning import capacity_outputs, cost_outputs, node_group_of, plan_for, weight_gib
from infra.sizing import (
    await_seconds,
    cache_size_gib,
    cpu_pod_resources,
    gpu_pod_resources,
    node_group_disk_gib,
    node_group_gpu,
    smallest_shape,
    spare_gpus,
)


@dataclass(frozen=True)
class GroupPlan:
    """One GPU node group."""

    name: str
    # The GpuNodeGroup component's name, which its nodes carry as the NODE_GROUP_LABEL value.
    component_name: str
    node_label: str
    shape: InstanceType
    disk_gib: int
    # GPUs left at max size once every model placed on the group runs its configured replicas.
    spare_gpus: int


@dataclass(frozen=True)
class ModelPlan:
    """One model's Deployment, as the VllmDeployment component takes it (less the secrets)."""

    name: str
    serve: VllmServeOptions
    # None for a model on the CPU backend (the local stack).
    capacity: CapacityPlan | None
    node_group_label: str | None
    weight_gib: float
    cache_size_gib: int
    cpu: str
    memory: str
    startup_budget_seconds: int
    await_seconds: int
    spare_gpus: int | None
    replicas: int
    # (min, max) replicas for KEDA; None when the model is not autoscaled.
    replica_bounds: tuple[int, int] | None


@dataclass(frozen=True)
class Plan:
    environment: str
    namespace: str
    cluster_name: str
    groups: tuple[GroupPlan, ...]
    models: tuple[ModelPlan, ...]
    alerts: AlertSettings
    # Stack outputs `capacity` (per GPU model) and `cost` (monthly estimate), as `render` prints them.
    capacity: Mapping[str, Mapping[str, Any]]
    cost: Mapping[str, Any]
    # Stack output `scaling`: per model, min/max replicas, cold start estimate and wake deadline (infra/elastic.py).
    scaling: Mapping[str, Mapping[str, Any]]

    def group(self, name: str) -> GroupPlan:
        return next(group for group in self.groups if group.name == name)


def replica_bounds(platform: PlatformConfig, model: ModelConfig) -> tuple[int, int]:
    """(min, max) replicas for an autoscaled model: from `replicas` up to what its node group's GPUs can hold.

    The ceiling is the group's GPUs at max_size (max_size x GPUs per node), less the GPUs the other models placed
    on the same group hold at their own minimum, divided by the GPUs one replica needs.
    """
    assert model.autoscaling is not None
    ceiling = model.autoscaling.max_replicas
    group = next((group for group in platform.gpu_node_groups if group.name == model.node_group), None)
    if group is not None:
        gpus = group.scaling.max_size * node_group_gpu(group).gpu_count
        taken = sum(
            other.replicas * other.gpus
            for other in platform.models
            if other.node_group == group.name and other.name != model.name
        )
        ceiling = min(ceiling, (gpus - taken) // model.gpus)
    # The validated config guarantees the node group holds every model's `replicas`; never ask for max < min.
    return min_replicas(platform, model), max(model.replicas, ceiling)


def alert_settings(platform: PlatformConfig) -> AlertSettings:
    thresholds = platform.monitoring.alerts
    return AlertSettings(
        serving_namespace=platform.namespace,
        model_deployments=[model.name for model in platform.models],
        requests_waiting=thresholds.requests_waiting,
        requests_waiting_for_minutes=thresholds.requests_waiting_for_minutes,
        kv_cache_usage_ratio=thresholds.kv_cache_usage_ratio,
        kv_cache_for_minutes=thresholds.kv_cache_for_minutes,
        gateway_error_ratio=thresholds.gateway_error_ratio,
        fallback_ratio=thresholds.fallback_ratio,
        team_budget_ratio=thresholds.team_budget_ratio,
        pod_not_ready_minutes=thresholds.pod_not_ready_minutes,
        # A Karpenter pool has no minimum of its own: its floor is what the models' minimum replicas need.
        min_gpu_nodes=idle_gpu_nodes(platform),
    )


def traces_url(platform: PlatformConfig) -> str | None:
    """The collector's OTLP/HTTP traces URL when the stack traces requests, else None."""
    if not platform.monitoring.tracing.enabled:
        return None
    # The Monitoring component's namespace: its args' default, which the wiring keeps.
    return collector_traces_url(MonitoringArgs.namespace)


def serve_options(model: ModelConfig, platform: PlatformConfig | None = None) -> VllmServeOptions:
    """The model's `vllm serve` flags, as the component takes them."""
    tracing = platform.monitoring.tracing if platform is not None else None
    return VllmServeOptions(
        served_model_name=model.name,
        hf_model=model.hf_model,
        revision=model.revision,
        quantization=quantization_flag(model.hf_model, model.quantization, model.checkpoint_quant_method),
        dtype=model.dtype,
        max_model_len=model.max_model_len,
        gpu_memory_utilization=model.gpu_memory_utilization if model.node_group is not None else None,
        tensor_parallel_size=model.gpus,
        max_num_seqs=model.max_num_seqs,
        enable_prefix_caching=model.enable_prefix_caching,
        kv_cache_dtype=model.kv_cache_dtype,
        enforce_eager=model.enforce_eager,
        extra_args=tuple(model.extra_args),
        otlp_traces_endpoint=traces_url(platform) if platform is not None else None,
        collect_detailed_traces=",".join(tracing.vllm_detailed_traces) if tracing and tracing.enabled else "",
    )


def _group_plan(platform: PlatformConfig, cluster: str, group: GpuNodeGroupConfig) -> GroupPlan:
    component_name = naming.gpu_node_group_name(cluster, group.name)
    return GroupPlan(
        name=group.name,
        component_name=component_name,
        node_label=node_labels(component_name, "", {})[naming.NODE_GROUP_LABEL],
        shape=node_group_gpu(group),
        disk_gib=node_group_disk_gib(platform, group),
        spare_gpus=spare_gpus(platform, group),
    )


def _model_plan(platform: PlatformConfig, groups: dict[str, GroupPlan], model: ModelConfig) -> ModelPlan:
    group = node_group_of(platform, model)
    capacity = plan_for(platform, model)
    weights = weight_gib(model)
    if group is None or capacity is None:
        cpu, memory = cpu_pod_resources(model, weights)
        budget, waited = CPU_STARTUP_BUDGET_SECONDS, await_seconds(CPU_STARTUP_BUDGET_SECONDS, on_gpu=False)
        label, spare = None, None
    else:
        cpu, memory = gpu_pod_resources(smallest_shape(group), model.gpus)
        cpu, memory = model.resources_cpu or cpu, model.resources_memory or memory
        # startup_seconds is the expected time; the probe allows twice that, as its docstring advises.
        budget = 2 * startup_seconds(capacity)
        waited = await_seconds(budget, on_gpu=True)
        label, spare = groups[group.name].node_label, groups[group.name].spare_gpus
    return ModelPlan(
        name=model.name,
        serve=serve_options(model, platform),
        capacity=capacity,
        node_group_label=label,
        weight_gib=weights,
        cache_size_gib=cache_size_gib(model),
        cpu=cpu,
        memory=memory,
        startup_budget_seconds=budget,
        await_seconds=waited,
        spare_gpus=spare,
        replicas=model.replicas,
        replica_bounds=replica_bounds(platform, model) if model.autoscaling is not None else None,
    )


def plan_platform(platform: PlatformConfig) -> Plan:
    """Every derived fact of a validated config, once."""
    cluster = naming.cluster_name(PROJECT, platform.environment)
    groups = {group.name: _group_plan(platform, cluster, group) for group in platform.gpu_node_groups}
    bounds = {
        model.name: replica_bounds(platform, model) if model.autoscaling else (model.replicas, model.replicas)
        for model in platform.models
    }
    return Plan(
        environment=platform.environment,
        namespace=platform.namespace,
        cluster_name=cluster,
        groups=tuple(groups.values()),
        models=tuple(_model_plan(platform, groups, model) for model in platform.models),
        alerts=alert_settings(platform),
        capacity=capacity_outputs(platform),
        cost={**cost_outputs(platform), **scale_cost(platform, bounds)},
        scaling=scaling_outputs(platform, bounds),
    )
