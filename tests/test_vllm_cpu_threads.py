"""The CPU vLLM sizes its OpenMP pool from the pod's CPU limit, not from the host's cores.

vLLM 0.32 (vllm/utils/ompmultiprocessing.py): with VLLM_CPU_OMP_THREADS_BIND=auto it binds one thread per physical
core that `os.sched_getaffinity` allows, which under a CFS quota is every core of the node; one core stays
reserved for its own API/engine processes. "nobind" leaves the pool to OMP_NUM_THREADS.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infra import render
from infra.config import PLATFORM_KEY
from tests.conftest import rendered


def _vllm_containers(result: render.RenderResult) -> list[dict[str, Any]]:
    return [
        container
        for obj in result.kubernetes_objects()
        if obj["kind"] == "Deployment"
        for container in obj["spec"]["template"]["spec"]["containers"]
        if container["name"] == "vllm"
    ]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


# Hand-worked: whole cores of the limit, minus vLLM's one reserved core, at least one thread.
@pytest.mark.parametrize(("limit", "threads"), [("2", 1), ("4", 3), ("6500m", 5), ("1500m", 1), ("16", 15)])
def test_local_cpu_vllm_threads_follow_the_cpu_limit(limit: str, threads: int) -> None:
    config = copy.deepcopy(render.read_stack_file("local"))
    config[PLATFORM_KEY]["models"][0]["resources_cpu"] = limit
    (container,) = _vllm_containers(render.run("local", config=config))
    assert container["resources"]["limits"]["cpu"] == limit
    env = _env(container)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert env["OMP_NUM_THREADS"] == str(threads)


def test_gpu_vllm_leaves_threads_to_vllm() -> None:
    containers = _vllm_containers(rendered("prod"))
    assert containers
    for container in containers:
        assert not {"VLLM_CPU_OMP_THREADS_BIND", "OMP_NUM_THREADS"} & set(_env(container))
