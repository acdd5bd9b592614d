"""Wiring of the serving layer: the NVIDIA device plugin on GPU nodes and one vLLM Deployment per model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pulumi

from components.device_plugin import DevicePlugin, DevicePluginArgs
from components.gpu_node_group import node_labels
from components.naming import NODE_GROUP_LABEL, cluster_name, gpu_node_group_name
from components.vllm_deployment import (
    CPU_STARTUP_BUDGET_SECONDS,
    VllmDeployment,
    VllmDeploymentArgs,
    VllmServeOptions,
)
from infra.capacity import startup_seconds
from infra.config import PROJECT, GpuNodeGroupConfig, ModelConfig, PlatformConfig
from infra.instances import InstanceType, lookup
from infra.models import quantization_flag
from infra.planning import node_group_of, plan_for, weight_gib
from infra.secrets import Secrets
from infra.sizing import cpu_pod_resources, gpu_pod_resources


def node_group_label_value(platform: PlatformConfig, group: GpuNodeGroupConfig) -> str:
    """The NODE_GROUP_LABEL value that the group's nodes carry (program.py names each GpuNodeGroup this way)."""
    component_name = gpu_node_group_name(cluster_name(PROJECT, platform.environment), group.name)
    return node_labels(component_name, "", {})[NODE_GROUP_LABEL]


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


def serve_options(model: ModelConfig) -> VllmServeOptions:
    """The model's `vllm serve` flags, as the component takes them."""
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
    )


def _model_args(model: ModelConfig) -> dict[str, Any]:
    """The component's args that come straight from the model's config."""
    return {
        "serve": serve_options(model),
        "replicas": model.replicas,
        "autoscaling_max_replicas": model.autoscaling.max_replicas if model.autoscaling is not None else None,
        "cache_kind": model.cache.kind,
        "cache_storage_class": model.cache.storage_class,
        "cpu_kv_cache_gib": model.cpu_kv_cache_gib,
        "cache_size_gib": cache_size_gib(model),
    }


def deployment_args(platform: PlatformConfig, model: ModelConfig, secrets: Secrets) -> VllmDeploymentArgs:
    if secrets.vllm_api_key is None:
        raise pulumi.RunError(
            f"stack {pulumi.get_stack()!r}: secret llm-serving:vllmApiKey is not set; the vLLM servers refuse "
            "to run without an API key (pulumi config set --secret llm-serving:vllmApiKey <key>)"
        )
    group = node_group_of(platform, model)
    if group is None:
        cpu, memory = cpu_pod_resources(model, weight_gib(model))
        return VllmDeploymentArgs(
            **_model_args(model),
            namespace=platform.namespace,
            api_key=secrets.vllm_api_key,
            hf_token=secrets.hf_token,
            node_group_label=None,
            cpu=cpu,
            memory=memory,
            startup_budget_seconds=CPU_STARTUP_BUDGET_SECONDS,
            await_seconds=await_seconds(CPU_STARTUP_BUDGET_SECONDS, on_gpu=False),
        )
    plan = plan_for(platform, model)
    assert plan is not None
    cpu, memory = gpu_pod_resources(smallest_shape(group), model.gpus)
    return VllmDeploymentArgs(
        **_model_args(model),
        namespace=platform.namespace,
        api_key=secrets.vllm_api_key,
        hf_token=secrets.hf_token,
        node_group_label=node_group_label_value(platform, group),
        cpu=model.resources_cpu or cpu,
        memory=model.resources_memory or memory,
        # startup_seconds is the expected time; the probe allows twice that, as its docstring advises.
        startup_budget_seconds=2 * startup_seconds(plan),
        await_seconds=await_seconds(2 * startup_seconds(plan), on_gpu=True),
        spare_gpus=spare_gpus(platform, group),
    )


def wire_serving(
    platform: PlatformConfig,
    secrets: Secrets,
    opts: pulumi.ResourceOptions,
    depends_on: Sequence[pulumi.Resource] = (),
) -> dict[str, object]:
    """`depends_on`: what the vLLM workloads wait for besides the device plugin (GPU node groups, StorageClass)."""
    workload_dependencies = list(depends_on)
    if platform.gpu_node_groups:
        workload_dependencies.append(
            DevicePlugin(
                "nvidia-device-plugin",
                DevicePluginArgs(time_slicing_replicas=platform.device_plugin.time_slicing_replicas),
                opts=opts,
            )
        )
    model_opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=workload_dependencies))
    models: dict[str, object] = {}
    for model in platform.models:
        deployment = VllmDeployment(model.name, deployment_args(platform, model, secrets), opts=model_opts)
        models[model.name] = {"service": deployment.service_url, "headless": deployment.headless_host}
    return {"models": models}
