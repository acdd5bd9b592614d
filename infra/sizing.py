"""Sizes derived from config: a node group's GPU shape and its root volume."""

from __future__ import annotations

import math

from infra.config import GpuNodeGroupConfig, PlatformConfig
from infra.instances import InstanceType, lookup
from infra.planning import weight_gib

# The vllm/vllm-openai image unpacks to roughly 20 GiB; the AMI and kubelet want ~20 GiB more of headroom.
IMAGE_AND_SYSTEM_GIB = 40


def node_group_gpu(group: GpuNodeGroupConfig) -> InstanceType:
    """The node group's instance shape (validation guarantees all its types share GPU model and count)."""
    return lookup(group.instance_types[0])


def node_group_disk_gib(platform: PlatformConfig, group: GpuNodeGroupConfig) -> int:
    """Room for the image and, when cached on the node (emptyDir), the weights of every model placed on it."""
    if group.disk_size_gib is not None:
        return group.disk_size_gib
    weights = sum(
        weight_gib(model)
        for model in platform.models
        if model.node_group == group.name and model.cache.kind == "emptyDir"
    )
    # Downloads land in the HF cache next to the final files: allow 1.5x, rounded up to 10 GiB.
    return max(100, int(math.ceil((IMAGE_AND_SYSTEM_GIB + 1.5 * weights) / 10) * 10))
