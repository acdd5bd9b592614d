"""Checks across the config that need the catalogs or the capacity planner (the shape is already valid here).

Each problem names the key path, the bad value and what is accepted, like the schema's own errors.
"""

from __future__ import annotations

import hashlib

from llm_gateway.config import GatewayConfig as GatewaySchema
from llm_gateway.config import ReferenceProblems
from pydantic import ValidationError

from infra.config import PLATFORM_KEY, GatewayConfig, PlatformConfig, describe_error, key_path
from infra.gateway_wiring import gateway_config
from infra.instances import CPU_INSTANCE_TYPES, GPU_INSTANCE_TYPES, INSTANCE_TYPES
from infra.stores_config import stores_problems


def semantic_problems(platform: PlatformConfig) -> list[str]:
    problems: list[str] = []
    problems += _instance_types(platform)
    problems += _placement(platform)
    problems += _gateway(platform)
    problems += stores_problems(PLATFORM_KEY, platform.stores, platform.aws is not None, platform.network is not None)
    if not problems:
        # The planner needs valid instance types and placements; its figures only mean something after those.
        from infra.planning import capacity_problems

        problems += capacity_problems(platform)
        # Scale-to-zero and Karpenter pools: the wake deadline is checked against the planner's start-up figure.
        from infra.elastic import elastic_problems

        problems += elastic_problems(platform)
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
    problems = _rendered_gateway_problems(platform)
    gateway = platform.gateway
    where = f"{PLATFORM_KEY}.gateway"
    if platform.environment == "prod" and gateway.replicas < 2:
        problems.append(f"{where}.replicas = {gateway.replicas}: prod needs >= 2 gateway replicas (one per AZ)")
    if gateway.max_replicas < gateway.replicas:
        problems.append(
            f"{where}.max_replicas = {gateway.max_replicas}: below replicas {gateway.replicas}; accepted: >= replicas"
        )
    if gateway.image is None and platform.aws is None:
        # Without AWS there is no ECR repository to build into (components/gateway_image.py).
        problems.append(
            f"{where}.image = None: a stack without `aws` must name the gateway image; accepted: an image the "
            "cluster can pull, e.g. llm-gateway:0.1.0 loaded with `kind load docker-image` (README)"
        )
    return problems


def _rendered_gateway_problems(platform: PlatformConfig) -> list[str]:
    """The gateway's own validation of the config rendered from this stack, each problem named by its stack key.

    Routes, aliases, teams and prices are the gateway's models, so their shape is already checked; what is left are
    the checks across sections (a target or fallback naming no backend, an alias naming no route, a price for no
    model, a name used twice), which live once, in the gateway (llm_gateway/config.py `reference_problems`).
    """
    # Key hashes come from the teamKeys secret at deploy time (checked by hash_team_keys); a distinct placeholder per
    # team keeps the gateway's unique-key check quiet here.
    hashes = {
        team.name: [hashlib.sha256(f"placeholder-{index}".encode()).hexdigest()]
        for index, team in enumerate(platform.gateway.teams)
    }
    try:
        GatewaySchema.model_validate(gateway_config(platform, hashes))
    except ValidationError as error:
        problems: list[str] = []
        for item in error.errors():
            cause = item.get("ctx", {}).get("error")
            if isinstance(cause, ReferenceProblems):
                problems += [
                    f"{key_path(_stack_location(platform, problem.loc))} = {problem.value!r}: {problem.message}"
                    for problem in cause.problems
                    if problem.loc[2:3] != ("key_sha256",)
                ]
            else:
                problems.append(describe_error({**item, "loc": _stack_location(platform, tuple(item["loc"]))}))
        return problems
    return []


def _stack_location(platform: PlatformConfig, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Where in the stack's `platform` the value at `loc` of the rendered gateway config comes from
    (infra/gateway_wiring.py `gateway_config` is the other direction)."""
    section = loc[0] if loc else None
    index = loc[1] if len(loc) > 1 else None
    models = len(platform.models)
    if section == "backends" and isinstance(index, int):
        # vLLM backends first, one per model and all derived from its name; then the managed APIs.
        if index < models:
            return ("models", index, "name")
        field = loc[2] if len(loc) > 2 else "name"
        return ("gateway", "managed_apis", index - models, "base_url" if field == "url" else field)
    if section == "routes" and not platform.gateway.routes and isinstance(index, int):
        return ("models", index, "name")  # the default routes: one per model
    if section in ("routes", "aliases", "teams", "pricing"):
        return ("gateway", *loc)
    if section == "server" and isinstance(index, str) and index in GatewayConfig.model_fields:
        return ("gateway", index)
    if loc[:2] == ("audit", "include_prompts"):
        return ("gateway", "audit_include_prompts")
    return ("gateway", *loc[:1])
