"""Checks across the config that need the catalogs or the capacity planner (the shape is already valid here).

Each problem names the key path, the bad value and what is accepted, like the schema's own errors.
"""

from __future__ import annotations

from infra.config import PLATFORM_KEY, PlatformConfig
from infra.instances import CPU_INSTANCE_TYPES, GPU_INSTANCE_TYPES, INSTANCE_TYPES


def semantic_problems(platform: PlatformConfig) -> list[str]:
    problems: list[str] = []
    problems += _instance_types(platform)
    problems += _placement(platform)
    problems += _gateway(platform)
    if not problems:
        # The planner needs valid instance types and placements; its figures only mean something after those.
        from infra.planning import capacity_problems

        problems += capacity_problems(platform)
    return problems


def _instance_types(platform: PlatformConfig) -> list[str]:
    problems: list[str] = []
    if platform.cluster is not None:
        for index, name in enumerate(platform.cluster.system_nodes.instance_types):
            if name not in CPU_INSTANCE_TYPES:
                problems.append(
                    f"{PLATFORM_KEY}.cluster.system_nodes.instance_types[{index}] = {name!r}: not a known CPU "
                    f"instance type; accepted: {', '.join(CPU_INSTANCE_TYPES)}"
                )
    for group_index, group in enumerate(platform.gpu_node_groups):
        where = f"{PLATFORM_KEY}.gpu_node_groups[{group_index}]"
        for index, name in enumerate(group.instance_types):
            if name not in GPU_INSTANCE_TYPES:
                problems.append(
                    f"{where}.instance_types[{index}] = {name!r}: not a known GPU instance type; accepted: "
                    f"{', '.join(GPU_INSTANCE_TYPES)}"
                )
        known = [INSTANCE_TYPES[name] for name in group.instance_types if name in GPU_INSTANCE_TYPES]
        shapes = {(row.gpu_model, row.gpu_count) for row in known}
        if len(shapes) > 1:
            problems.append(
                f"{where}.instance_types = {group.instance_types!r}: mixes GPU shapes "
                f"{sorted(f'{count} x {gpu}' for gpu, count in shapes)}; accepted: types with the same GPU model "
                "and count (vLLM's memory plan is per GPU)"
            )
    return problems


def _placement(platform: PlatformConfig) -> list[str]:
    problems: list[str] = []
    groups = {group.name for group in platform.gpu_node_groups}
    for index, model in enumerate(platform.models):
        where = f"{PLATFORM_KEY}.models[{index}]"
        if model.node_group is None and platform.aws is not None:
            problems.append(
                f"{where}.node_group = None: a model on AWS runs on a GPU node group; accepted: "
                f"{', '.join(sorted(groups)) or '(define gpu_node_groups first)'}"
            )
        elif model.node_group is not None and model.node_group not in groups:
            problems.append(
                f"{where}.node_group = {model.node_group!r}: no such GPU node group; accepted: "
                f"{', '.join(sorted(groups)) or '(none defined; the local stack runs models on the CPU)'}"
            )
        slicing = platform.device_plugin.time_slicing_replicas
        if slicing is not None and model.node_group is not None and model.gpus > 1:
            problems.append(
                f"{where}.gpus = {model.gpus}: with device_plugin.time_slicing_replicas = {slicing} the device plugin "
                "refuses requests for more than one shared GPU; accepted: gpus = 1, or no time-slicing"
            )
        from infra.models import checkpoint_problems

        problems += [
            f"{where}.{problem}"
            for problem in checkpoint_problems(model.hf_model, model.quantization, model.checkpoint_quant_method)
        ]
        if model.catalog is not None:
            from infra.models import MODEL_CATALOG

            if model.catalog not in MODEL_CATALOG:
                problems.append(
                    f"{where}.catalog = {model.catalog!r}: not in the model catalog; accepted: "
                    f"{', '.join(sorted(MODEL_CATALOG))}, or give `architecture` instead"
                )
    return problems


def _gateway(platform: PlatformConfig) -> list[str]:
    problems: list[str] = []
    gateway = platform.gateway
    where = f"{PLATFORM_KEY}.gateway"
    backends = [model.name for model in platform.models] + [api.name for api in gateway.managed_apis]
    if len(set(backends)) != len(backends):
        problems.append(f"{where}.managed_apis: a managed API has the name of a model; names must be unique")
    routes = [route.model for route in gateway.routes] or [model.name for model in platform.models]
    for route_index, route in enumerate(gateway.routes):
        for target_index, target in enumerate(route.targets):
            if target.backend not in backends:
                problems.append(
                    f"{where}.routes[{route_index}].targets[{target_index}].backend = {target.backend!r}: unknown "
                    f"backend; accepted: {', '.join(backends)}"
                )
        if sum(target.weight for target in route.targets) == 0:
            problems.append(f"{where}.routes[{route_index}].targets: all weights are 0; at least one must be > 0")
        for fallback_index, fallback in enumerate(route.fallbacks):
            if fallback not in backends:
                problems.append(
                    f"{where}.routes[{route_index}].fallbacks[{fallback_index}] = {fallback!r}: unknown backend; "
                    f"accepted: {', '.join(backends)}"
                )
    for alias_index, alias in enumerate(gateway.aliases):
        for field in ("simple_route", "complex_route"):
            value = getattr(alias, field)
            if value not in routes:
                problems.append(
                    f"{where}.aliases[{alias_index}].{field} = {value!r}: not a route; accepted: {', '.join(routes)}"
                )
        if alias.model in routes:
            problems.append(f"{where}.aliases[{alias_index}].model = {alias.model!r}: clashes with a route name")
    for model_name in gateway.pricing:
        known = {*routes, *(api.model for api in gateway.managed_apis)}
        if model_name not in known:
            problems.append(
                f"{where}.pricing.{model_name}: no route or managed API model has this name; accepted: "
                f"{', '.join(sorted(known))}"
            )
    if platform.environment == "prod" and gateway.replicas < 2:
        problems.append(f"{where}.replicas = {gateway.replicas}: prod needs >= 2 gateway replicas (one per AZ)")
    if gateway.max_replicas < gateway.replicas:
        problems.append(
            f"{where}.max_replicas = {gateway.max_replicas}: below replicas {gateway.replicas}; accepted: >= replicas"
        )
    return problems
