"""Wiring of the serving layer: the NVIDIA device plugin on GPU nodes and one vLLM Deployment per model, built
from the plan (infra/plan.py); nothing is derived here."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components.device_plugin import DevicePlugin, DevicePluginArgs
from components.vllm_deployment import VllmDeployment, VllmDeploymentArgs
from infra.config import ModelConfig, PlatformConfig
from infra.plan import ModelPlan, Plan
from infra.secrets import Secrets


def deployment_args(namespace: str, model: ModelConfig, plan: ModelPlan, secrets: Secrets) -> VllmDeploymentArgs:
    if secrets.vllm_api_key is None:
        raise pulumi.RunError(
            f"stack {pulumi.get_stack()!r}: secret llm-serving:vllmApiKey is not set; the vLLM servers refuse "
            "to run without an API key (pulumi config set --secret llm-serving:vllmApiKey <key>)"
        )
    return VllmDeploymentArgs(
        serve=plan.serve,
        namespace=namespace,
        api_key=secrets.vllm_api_key,
        hf_token=secrets.hf_token,
        node_group_label=plan.node_group_label,
        cpu=plan.cpu,
        memory=plan.memory,
        startup_budget_seconds=plan.startup_budget_seconds,
        await_seconds=plan.await_seconds,
        cache_size_gib=plan.cache_size_gib,
        spare_gpus=plan.spare_gpus,
        replicas=plan.replicas,
        autoscaling_max_replicas=model.autoscaling.max_replicas if model.autoscaling is not None else None,
        cache_kind=model.cache.kind,
        cache_storage_class=model.cache.storage_class,
        cpu_kv_cache_gib=model.cpu_kv_cache_gib,
    )


def wire_serving(
    platform: PlatformConfig,
    plan: Plan,
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
    for model, model_plan in zip(platform.models, plan.models, strict=True):
        args = deployment_args(platform.namespace, model, model_plan, secrets)
        deployment = VllmDeployment(model.name, args, opts=model_opts)
        models[model.name] = {"service": deployment.service_url, "headless": deployment.headless_host}
    return {"models": models}
