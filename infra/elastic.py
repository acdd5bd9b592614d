"""Elastic capacity: which models scale to zero, how long one takes to wake, and what a stack costs idle and at
full scale. Pure functions of the validated config; infra/plan.py calls them once, infra/semantics.py turns
`elastic_problems` into config errors.

A model at zero wakes in three steps, each an estimate from infra/sizing.py (the figures `pulumi up` waits for, see
`await_seconds`): a GPU node launched by Karpenter (GPU_NODE_LAUNCH_SECONDS), the vLLM image pulled onto it
(GPU_IMAGE_PULL_SECONDS), the weights read and loaded (the planner's `startup_seconds`). The gateway holds a
request up to the wake deadline; a deadline shorter than that sum would answer 503 to a wake that is going well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.vllm_deployment import CPU_STARTUP_BUDGET_SECONDS
from infra.capacity import startup_seconds
from infra.config import PLATFORM_KEY, GpuNodeGroupConfig, ModelConfig, PlatformConfig
from infra.instances import SPOT_DISCOUNT, lookup
from infra.planning import HOURS_PER_MONTH, plan_for
from infra.replicas import min_replicas, resting_nodes
from infra.replicas import nodes_for as _nodes_for
from infra.sizing import CPU_IMAGE_PULL_SECONDS, GPU_IMAGE_PULL_SECONDS, GPU_NODE_LAUNCH_SECONDS
from infra.stores_cost import stores_monthly_usd

# Where a model with autoscaling and no `min_replicas` scales to zero: environments where a first request after a
# quiet night may wait for a cold start.
# The gateway's WakeConfig.deadline_s accepts at most this (gateway_image/llm_gateway/config.py).
MAX_WAKE_DEADLINE_S = 3600


def cold_start_parts(platform: PlatformConfig, model: ModelConfig) -> tuple[int, int, int]:
    """(node launch, image pull, start-up) seconds from zero replicas to a healthy vLLM server."""
    capacity = plan_for(platform, model)
    if capacity is None:
        # The CPU backend runs on nodes that exist already; its start-up has no planner figure, only the probe's.
        return 0, CPU_IMAGE_PULL_SECONDS, CPU_STARTUP_BUDGET_SECONDS
    return GPU_NODE_LAUNCH_SECONDS, GPU_IMAGE_PULL_SECONDS, startup_seconds(capacity)


def cold_start_seconds(platform: PlatformConfig, model: ModelConfig) -> int:
    return sum(cold_start_parts(platform, model))


def wake_deadline_s(platform: PlatformConfig, model: ModelConfig) -> float | None:
    """How long the gateway holds a request for this model while it wakes; None when it never is at zero."""
    if min_replicas(platform, model) != 0:
        return None
    assert model.autoscaling is not None
    if model.autoscaling.wake_deadline_s is not None:
        return model.autoscaling.wake_deadline_s
    return float(min(cold_start_seconds(platform, model), MAX_WAKE_DEADLINE_S))


def wake_config(platform: PlatformConfig, model: ModelConfig) -> dict[str, Any]:
    """The `wake` block of the model's backend in the gateway config (its WakeConfig), or nothing."""
    try:
        deadline = wake_deadline_s(platform, model)
    except KeyError:
        # An instance type or catalog key the planner does not know: infra/semantics.py reports it by its key; the
        # gateway's own checks of the rendered config still run meanwhile, with the longest deadline.
        deadline = float(MAX_WAKE_DEADLINE_S)
    return {} if deadline is None else {"wake": {"deadline_s": deadline}}


def _group_problems(index: int, group: GpuNodeGroupConfig) -> list[str]:
    if group.provisioner != "karpenter" or group.scaling.min_size == group.scaling.desired_size == 0:
        return []
    return [
        f"{PLATFORM_KEY}.gpu_node_groups[{index}] ({group.name}).scaling = min_size {group.scaling.min_size}, "
        f"desired_size {group.scaling.desired_size}: a Karpenter pool has no fixed size (nodes follow the pods; "
        "max_size caps its GPUs); accepted: min_size 0 and desired_size 0, or provisioner: managed"
    ]


def _model_problems(platform: PlatformConfig, index: int, model: ModelConfig) -> list[str]:
    if model.autoscaling is None:
        return []
    where = f"{PLATFORM_KEY}.models[{index}] ({model.name}).autoscaling"
    lowest = min_replicas(platform, model)
    if lowest > model.replicas:
        return [f"{where}.min_replicas = {lowest}: above replicas {model.replicas}; accepted: <= {model.replicas}"]
    if lowest != 0:
        return []
    if not platform.monitoring.enabled:
        return [
            f"{where}.min_replicas = 0: KEDA (installed with monitoring) wakes a model; accepted: min_replicas "
            ">= 1, or monitoring.enabled: true"
        ]
    node, pull, load = cold_start_parts(platform, model)
    cold = node + pull + load
    configured = model.autoscaling.wake_deadline_s
    numbers = f"the planned cold start is {cold} s (node launch {node} + image pull {pull} + start-up {load})"
    if configured is not None and configured < cold:
        return [f"{where}.wake_deadline_s = {configured:g}: below the cold start; {numbers}; accepted: >= {cold}"]
    if configured is None and cold > MAX_WAKE_DEADLINE_S:
        return [
            f"{where}.min_replicas = 0: {numbers}, longer than the gateway's longest wake deadline "
            f"({MAX_WAKE_DEADLINE_S} s); accepted: min_replicas >= 1"
        ]
    return []


def elastic_problems(platform: PlatformConfig) -> list[str]:
    problems: list[str] = []
    for index, group in enumerate(platform.gpu_node_groups):
        problems += _group_problems(index, group)
    for index, model in enumerate(platform.models):
        problems += _model_problems(platform, index, model)
    return problems


def _node_price(group: GpuNodeGroupConfig) -> float:
    # The group's first type is the planner's (infra/planning.py); SPOT at the catalog's assumed discount.
    shape = lookup(group.instance_types[0])
    return shape.on_demand_usd_per_hour * (1 - SPOT_DISCOUNT if group.capacity_type == "SPOT" else 1)


def _base_hourly_usd(platform: PlatformConfig) -> float:
    """What runs whatever the load: the system nodes at their desired size, the EKS control plane and the managed
    stores (RDS, ElastiCache)."""
    from infra.eks_versions import control_plane_usd_per_hour, utc_today

    stores = stores_monthly_usd(platform.stores).get("monthly_usd", 0.0) / HOURS_PER_MONTH
    if platform.cluster is None:
        return stores
    system = platform.cluster.system_nodes
    nodes = system.scaling.desired_size * lookup(system.instance_types[0]).on_demand_usd_per_hour
    return nodes + control_plane_usd_per_hour(platform.cluster.kubernetes_version, utc_today()) + stores


def idle_gpu_nodes(platform: PlatformConfig) -> int:
    """GPU nodes that run whatever the load: managed groups' minimum, and the Karpenter nodes the models' minimum
    replicas need (the GpuNodesBelowMinimum alert's floor)."""
    return sum(resting_nodes(platform, group) for group in platform.gpu_node_groups)


def scale_cost(platform: PlatformConfig, bounds: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    """Idle (every model at its minimum; Karpenter pools hold only the nodes those replicas need, none at zero) and
    full scale (every model at its maximum) $/month, both with the system nodes, control plane and managed stores.
    `bounds`: (min, max) replicas per model name."""
    idle = full = _base_hourly_usd(platform)
    for group in platform.gpu_node_groups:
        placed = [model for model in platform.models if model.node_group == group.name]
        idle += _nodes_for(group, sum(bounds[m.name][0] * m.gpus for m in placed)) * _node_price(group)
        full += _nodes_for(group, sum(bounds[m.name][1] * m.gpus for m in placed)) * _node_price(group)
    return {
        "idle_monthly_usd": round(idle * HOURS_PER_MONTH, 0),
        "full_scale_monthly_usd": round(full * HOURS_PER_MONTH, 0),
    }


def scaling_outputs(platform: PlatformConfig, bounds: Mapping[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
    """Per model: replica range, cold start estimate and wake deadline (stack output `scaling`)."""
    result: dict[str, dict[str, Any]] = {}
    for model in platform.models:
        low, high = bounds[model.name]
        deadline = wake_deadline_s(platform, model)
        result[model.name] = {
            "min_replicas": low,
            "max_replicas": high,
            "cold_start_s": cold_start_seconds(platform, model),
            **({"wake_deadline_s": deadline} if deadline is not None else {}),
        }
    return result
