"""The plan (infra/plan.py) checked without Pulumi: every figure below is worked by hand from the stack file and
the AWS instance pages (g6e.xlarge: 4 vCPUs, 32 GiB, 1 x L40S; g6e.12xlarge: 48 vCPUs, 384 GiB, 4 x L40S;
https://aws.amazon.com/ec2/instance-types/g6e/)."""

from __future__ import annotations

import dataclasses

import pytest

from infra import render
from infra.config import PLATFORM_KEY
from infra.plan import Plan, plan_platform
from infra.validation import parse_platform


def plan_of(stack: str) -> Plan:
    return plan_platform(parse_platform(stack, render.read_stack_file(stack)[PLATFORM_KEY]))


def test_prod_groups() -> None:
    plan = plan_of("prod")
    assert plan.cluster_name == "llm-serving-prod"
    x4, single = plan.group("gpu-l40s-x4"), plan.group("gpu-l40s")
    # The GpuNodeGroup's name is what its nodes carry as the node-group label the pods select.
    assert (x4.component_name, x4.node_label) == ("llm-serving-prod-gpu-l40s-x4", "llm-serving-prod-gpu-l40s-x4")
    # max_size 3 x 4 GPUs = 12, less llama-3-3-70b's 2 replicas x 4 GPUs = 4 spare.
    assert x4.spare_gpus == 4
    # max_size 4 x 1 GPU = 4, less llama-3-1-8b's 2 replicas x 1 GPU = 2 spare.
    assert single.spare_gpus == 2


def test_prod_models() -> None:
    big, small = plan_of("prod").models
    assert (big.name, small.name) == ("llama-3-3-70b", "llama-3-1-8b")
    # 4 of g6e.12xlarge's 4 GPUs: all 48 vCPUs less 1, floor(384 GiB x 0.85) = 326 GiB.
    assert (big.cpu, big.memory) == ("47", "326Gi")
    # The group's smallest type, g6e.xlarge, for 1 GPU: 4 - 1 vCPUs, floor(32 x 0.85) = 27 GiB.
    assert (small.cpu, small.memory) == ("3", "27Gi")
    assert big.cache_size_gib == 120  # set in the stack file
    # Autoscaling bounds: from replicas up to min(max_replicas, free GPUs // GPUs per replica).
    assert big.replica_bounds == (2, 3)  # min(3, 12 // 4)
    assert small.replica_bounds == (2, 4)  # min(4, 4 // 1)
    assert big.node_group_label == "llm-serving-prod-gpu-l40s-x4"
    assert big.serve.tensor_parallel_size == 4 and big.serve.gpu_memory_utilization == 0.92
    assert big.capacity is not None and big.startup_budget_seconds > 0
    # A GPU model waits for a node (600 s) and the image (600 s) beyond its probe budget.
    assert big.await_seconds == 1200 + big.startup_budget_seconds


def test_local_model_runs_on_the_cpu_backend() -> None:
    (model,) = plan_of("local").models
    assert model.capacity is None and model.node_group_label is None and model.spare_gpus is None
    # No GPU memory flag on the CPU backend; the probe's budget is the CPU constant, 900 s, plus a 300 s pull.
    assert model.serve.gpu_memory_utilization is None
    assert (model.startup_budget_seconds, model.await_seconds) == (900, 1200)


def test_plan_is_frozen() -> None:
    plan = plan_of("dev")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.models[0].replicas = 5  # type: ignore[misc]
