"""Sizes derived from config: a node group's GPU shape, root volume and spare GPUs; a vLLM pod's CPU, memory, cache
and how long `pulumi up` waits for it. Pure functions; infra/plan.py calls each once per group or model."""

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


def smallest_shape(group: GpuNodeGroupConfig) -> InstanceType:
    """Pods must fit whichever of the group's instance types the autoscaler picks."""
    return min((lookup(name) for name in group.instance_types), key=lambda shape: (shape.vcpus, shape.memory_gib))


def spare_gpus(platform: PlatformConfig, group: GpuNodeGroupConfig) -> int:
    """GPUs left in the group at max size once every model placed on it runs its configured replicas."""
    capacity = group.scaling.max_size * lookup(group.instance_types[0]).gpu_count
    used = sum(model.replicas * model.gpus for model in platform.models if model.node_group == group.name)
    return capacity - used


# How long a first `pulumi up` may wait for a vLLM Deployment to become Available (the provider's own default is
# 10 minutes: pulumi-kubernetes v4 provider/pkg/await/deployment.go, DefaultDeploymentTimeoutMins). The figures,
# all in one place:
# - A GPU node from nothing to schedulable: EC2 launch, the EKS AMI's boot and join, the NVIDIA device plugin
#   advertising nvidia.com/gpu. No AWS-published figure; 3-5 minutes is usual, 10 allowed (an assumption).
GPU_NODE_LAUNCH_SECONDS = 600
# The vLLM GPU image is ~20 GB unpacked (issue 9; vllm/vllm-openai on Docker Hub is ~10 GB compressed), pulled
# and unpacked onto a gp3 root volume at its 125 MiB/s baseline: ~3 minutes of writes after the download.
# 10 minutes allowed (an assumption); the CPU image is a few GB.
GPU_IMAGE_PULL_SECONDS = 600
CPU_IMAGE_PULL_SECONDS = 300
# Weights download and load are the planner's start-up estimate (infra.capacity.startup_seconds); the startup
# probe allows twice that, which is the margin here too: a start slower than the probe allows never gets ready.


def await_seconds(startup_budget_seconds: int, on_gpu: bool) -> int:
    """Seconds `pulumi up` waits for the Deployment: node launch + image pull + the startup probe's budget."""
    if on_gpu:
        return GPU_NODE_LAUNCH_SECONDS + GPU_IMAGE_PULL_SECONDS + startup_budget_seconds
    # The CPU backend runs on nodes that exist already (kind, k3d, minikube).
    return CPU_IMAGE_PULL_SECONDS + startup_budget_seconds


def cache_size_gib(model: ModelConfig) -> int:
    # Downloads land in the cache beside the finished files for a while: 1.5x the weights.
    return model.cache.size_gib or max(10, math.ceil(1.5 * weight_gib(model)))
