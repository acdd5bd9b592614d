"""The capacity planner applied to a stack: one plan per GPU model, the problems that make a stack bad config,
and the cost summary that `pulumi up` exports and the render prints."""

from __future__ import annotations

from collections import Counter
from typing import Any

from infra.capacity import CapacityPlan, plan_capacity
from infra.config import PLATFORM_KEY, GpuNodeGroupConfig, ModelConfig, PlatformConfig
from infra.instances import SPOT_DISCOUNT, lookup
from infra.models import ModelArchitecture, lookup_model
from infra.replicas import resting_nodes
from infra.stores_cost import stores_monthly_usd

HOURS_PER_MONTH = 730


def architecture(model: ModelConfig) -> ModelArchitecture:
    if model.architecture is not None:
        return model.architecture
    assert model.catalog is not None
    return lookup_model(model.catalog)


def node_group_of(platform: PlatformConfig, model: ModelConfig) -> GpuNodeGroupConfig | None:
    return next((group for group in platform.gpu_node_groups if group.name == model.node_group), None)


def plan_for(platform: PlatformConfig, model: ModelConfig) -> CapacityPlan | None:
    """The plan of a GPU model; None for a model on the CPU backend (the local stack)."""
    group = node_group_of(platform, model)
    if group is None:
        return None
    return plan_capacity(
        architecture(model),
        group.instance_types[0],
        max_model_len=model.max_model_len,
        quantization=model.quantization,
        dtype=model.dtype if model.dtype != "float32" else "auto",
        kv_cache_dtype=model.kv_cache_dtype,
        gpus_per_replica=model.gpus,
        gpu_memory_utilization=model.gpu_memory_utilization,
        max_num_seqs=model.max_num_seqs,
        replicas=model.replicas,
        node_group_max_size=group.scaling.max_size,
        capacity_type=group.capacity_type,
    )


def weight_gib(model: ModelConfig) -> float:
    """Bytes of weights on disk, all shards together (what a pod downloads)."""
    arch = architecture(model)
    bytes_per_parameter = {"none": 2.0, "fp8": 1.0, "awq": 0.5625, "gptq": 0.5625}[model.quantization]
    if model.dtype == "float32" and model.quantization == "none":
        bytes_per_parameter = 4.0
    return arch.parameters_billion * 1e9 * bytes_per_parameter / 2**30


def capacity_problems(platform: PlatformConfig) -> list[str]:
    problems: list[str] = []
    for index, model in enumerate(platform.models):
        plan = plan_for(platform, model)
        if plan is not None:
            problems += [f"{PLATFORM_KEY}.models[{index}] ({model.name}): {problem}" for problem in plan.problems]
    for group_index, group in enumerate(platform.gpu_node_groups):
        shape = lookup(group.instance_types[0])
        wanted = sum(model.replicas * model.gpus for model in platform.models if model.node_group == group.name)
        available = group.scaling.max_size * shape.gpu_count
        if wanted > available:
            problems.append(
                f"{PLATFORM_KEY}.gpu_node_groups[{group_index}] ({group.name}).scaling.max_size = "
                f"{group.scaling.max_size}: its models need {wanted} GPUs (replicas x gpus, summed) but "
                f"{group.scaling.max_size} x {shape.name} hold {available}; accepted: max_size >= "
                f"{-(-wanted // shape.gpu_count)}"
            )
    return problems


def capacity_outputs(platform: PlatformConfig) -> dict[str, dict[str, Any]]:
    """Per model, the figures a reviewer checks before money is spent (stack output `capacity`)."""
    result: dict[str, dict[str, Any]] = {}
    for model in platform.models:
        plan = plan_for(platform, model)
        if plan is None:
            continue
        result[model.name] = {
            "gpu": f"{plan.gpus_per_replica} x {plan.gpu_model} ({plan.instance_type})",
            "weights_gib_per_gpu": round(plan.weight_bytes_per_gpu / 2**30, 2),
            "kv_cache_gib_per_gpu": round(plan.kv_cache_memory_bytes_per_gpu / 2**30, 2),
            "kv_cache_bytes_per_token": plan.kv_cache_bytes_per_token_total,
            "kv_cache_tokens": plan.kv_cache_tokens,
            "full_length_sequences": round(plan.max_concurrency, 2),
            "usd_per_hour": round(plan.hourly_cost_total_usd, 2),
        }
    return result


def cost_outputs(platform: PlatformConfig) -> dict[str, Any]:
    """Monthly estimate of what runs at rest (managed groups at their desired size, Karpenter pools at what the
    models' minimum replicas need, the managed stores), on-demand list prices, spot at the catalog's discount."""
    from infra.eks_versions import control_plane_usd_per_hour, support_phase, utc_today

    gpus: Counter[str] = Counter()
    hourly = 0.0
    control_plane: dict[str, Any] = {}
    for group in platform.gpu_node_groups:
        shape = lookup(group.instance_types[0])
        # A Karpenter pool has no desired size: the nodes the models' minimum replicas need (infra/elastic.py).
        nodes = (
            resting_nodes(platform, group)
            if group.provisioner == "karpenter"
            else max(group.scaling.desired_size, group.scaling.min_size)
        )
        gpus[str(shape.gpu_model)] += nodes * shape.gpu_count
        price = shape.on_demand_usd_per_hour * (1 - SPOT_DISCOUNT if group.capacity_type == "SPOT" else 1)
        hourly += nodes * price
    if platform.cluster is not None:
        system = platform.cluster.system_nodes
        hourly += system.scaling.desired_size * lookup(system.instance_types[0]).on_demand_usd_per_hour
        # The control-plane fee depends on the version's support phase today (6x in extended support).
        today = utc_today()
        version = platform.cluster.kubernetes_version
        fee = control_plane_usd_per_hour(version, today)
        hourly += fee
        control_plane = {
            "kubernetes_version": version,
            "support_phase": support_phase(version, today),
            "usd_per_hour": fee,
        }
    stores = stores_monthly_usd(platform.stores)
    hourly += stores.get("monthly_usd", 0) / HOURS_PER_MONTH
    return {
        "gpus_by_type": dict(sorted(gpus.items())),
        **({"eks_control_plane": control_plane} if control_plane else {}),
        **({"stores": stores} if stores else {}),
        "estimated_hourly_usd": round(hourly, 2),
        "estimated_monthly_usd": round(hourly * HOURS_PER_MONTH, 0),
        "basis": "resting node counts (managed: desired; Karpenter: what the minimum replicas need) x us-east-1 "
        "on-demand list price (spot at catalog discount) + EKS fee"
        + (" + RDS/ElastiCache" if stores else "")
        + "; excludes NAT, EBS, traffic",
    }
