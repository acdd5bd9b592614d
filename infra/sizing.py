"""Sizes derived from config: a node group's GPU shape and its root volume, a vLLM pod's CPU and memory."""

from __future__ import annotations

import math

from infra.config import GpuNodeGroupConfig, ModelConfig, PlatformConfig
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


def gpu_pod_resources(shape: InstanceType, gpus: int) -> tuple[str, str]:
    """CPU and memory for a replica taking `gpus` of a node's GPUs: its share of the node, less what the
    kubelet, the OS and the DaemonSets (CNI, kube-proxy, device plugin, exporters) keep."""
    share = gpus / shape.gpu_count
    cpu = max(1, math.floor(shape.vcpus * share) - 1)
    # EKS reserves ~1 GiB plus eviction headroom per node and DaemonSets take ~1 GiB; 15% covers both on the
    # smallest GPU types (g5.xlarge: 16 GiB -> 13 GiB).
    memory_gib = max(4, math.floor(shape.memory_gib * share * 0.85))
    return str(cpu), f"{memory_gib}Gi"


def cpu_pod_resources(model: ModelConfig, weight_gib: float) -> tuple[str, str]:
    """The CPU backend holds weights and KV cache in RAM; the rest is Python, tokenizer and buffers."""
    cpu = model.resources_cpu or "2"
    memory = model.resources_memory or f"{math.ceil(2 * weight_gib + model.cpu_kv_cache_gib + 2)}Gi"
    return cpu, memory
