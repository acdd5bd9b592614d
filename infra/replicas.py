"""How many replicas and GPU nodes a stack keeps at rest: the models' minimum replicas and the nodes they need.

Shared by the cost estimate (infra/planning.py) and the elastic-capacity figures (infra/elastic.py).
"""

from __future__ import annotations

import math

from infra.config import GpuNodeGroupConfig, ModelConfig, PlatformConfig
from infra.instances import lookup

# Stacks whose models scale to zero unless they say otherwise (models[].autoscaling.min_replicas).
SCALE_TO_ZERO_ENVIRONMENTS = ("dev", "staging")


def min_replicas(platform: PlatformConfig, model: ModelConfig) -> int:
    """The fewest replicas KEDA keeps; a model without autoscaling keeps its `replicas`."""
    if model.autoscaling is None:
        return model.replicas
    if model.autoscaling.min_replicas is not None:
        return model.autoscaling.min_replicas
    return 0 if platform.environment in SCALE_TO_ZERO_ENVIRONMENTS else model.replicas


def nodes_for(group: GpuNodeGroupConfig, gpus: int) -> int:
    needed = math.ceil(gpus / lookup(group.instance_types[0]).gpu_count)
    if group.provisioner == "managed":
        # A managed group never goes below its minimum, whatever runs on it.
        return min(group.scaling.max_size, max(group.scaling.min_size, needed))
    return min(group.scaling.max_size, needed)


def resting_nodes(platform: PlatformConfig, group: GpuNodeGroupConfig) -> int:
    """Nodes of one GPU group with every model on it at its minimum replicas (a managed group: at least its minimum)."""
    placed = [model for model in platform.models if model.node_group == group.name]
    return nodes_for(group, sum(min_replicas(platform, model) * model.gpus for model in placed))
