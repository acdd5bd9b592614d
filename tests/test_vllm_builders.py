"""The pure builders behind VllmDeployment, called directly: expected values are written out by hand."""

from __future__ import annotations

import dataclasses

import pytest

from components.vllm_deployment import (
    VllmDeploymentArgs,
    VllmServeOptions,
    cache_volume,
    container_env,
    pod_labels,
    pod_security_context,
    progress_deadline_seconds,
    replica_spreading,
    resource_requests,
    rollout_strategy,
    scratch_volumes,
    startup_probe,
    uses_shared_claim,
)
from tests.plain import plain

SERVE = VllmServeOptions(
    served_model_name="m",
    hf_model="org/m",
    revision=None,
    quantization=None,
    dtype="auto",
    max_model_len=4096,
    gpu_memory_utilization=0.9,
    tensor_parallel_size=1,
    max_num_seqs=64,
    enable_prefix_caching=True,
    kv_cache_dtype="auto",
    enforce_eager=False,
)


def args(**changes: object) -> VllmDeploymentArgs:
    base = VllmDeploymentArgs(
        serve=SERVE,
        namespace="serving",
        api_key="key",
        hf_token=None,
        node_group_label="c-g",
        cpu="4",
        memory="30Gi",
        startup_budget_seconds=900,
        cache_size_gib=40,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_labels_select_by_app_and_instance_and_carry_the_version() -> None:
    assert pod_labels("m") == {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": "m",
        "llm-serving/model": "m",
        "app.kubernetes.io/version": "0.32.0",
        "app.kubernetes.io/component": "inference",
    }


def test_startup_probe_covers_the_budget_in_ten_second_periods() -> None:
    # 900 s / 10 s = 90 failures; 905 s needs a 91st period.
    assert plain(startup_probe(900)) == {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": 10,
        "failureThreshold": 90,
        "timeoutSeconds": 5,
    }
    assert plain(startup_probe(905))["failureThreshold"] == 91


def test_scratch_volumes_add_shared_memory_only_under_tensor_parallelism() -> None:
    volumes, mounts = scratch_volumes(1)
    assert plain(volumes) == [
        {"name": "home", "emptyDir": {"sizeLimit": "4Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
    ]
    assert plain(mounts) == [
        {"name": "model-cache", "mountPath": "/models/huggingface"},
        {"name": "home", "mountPath": "/home/vllm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes, mounts = scratch_volumes(2)
    assert plain(volumes[-1]) == {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}
    assert plain(mounts[-1]) == {"name": "shm", "mountPath": "/dev/shm"}


@pytest.mark.parametrize(
    ("replicas", "max_replicas", "kind", "shared"),
    [(1, None, "pvc", True), (2, None, "pvc", False), (1, 3, "pvc", False), (1, None, "emptyDir", False)],
)
def test_only_a_single_replica_pvc_cache_shares_one_claim(
    replicas: int, max_replicas: int | None, kind: str, shared: bool
) -> None:
    assert uses_shared_claim(args(replicas=replicas, autoscaling_max_replicas=max_replicas, cache_kind=kind)) is shared


def test_cache_volume_of_each_kind() -> None:
    assert plain(cache_volume(args(), None)) == {"name": "model-cache", "emptyDir": {"sizeLimit": "40Gi"}}
    assert plain(cache_volume(args(cache_kind="pvc"), "m-cache")) == {
        "name": "model-cache",
        "persistentVolumeClaim": {"claimName": "m-cache"},
    }
    ephemeral = plain(cache_volume(args(cache_kind="pvc", replicas=2, cache_storage_class="fast"), None))
    assert ephemeral["ephemeral"]["volumeClaimTemplate"]["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "40Gi"}},
    }


def test_surge_only_when_a_whole_replica_fits_and_no_claim_is_shared() -> None:
    def surge(a: VllmDeploymentArgs) -> tuple[int, int]:
        rolling = plain(rollout_strategy(a))["rollingUpdate"]
        return rolling["maxSurge"], rolling["maxUnavailable"]

    assert surge(args(spare_gpus=None)) == (1, 0)
    assert surge(args(spare_gpus=1)) == (1, 0)
    assert surge(args(spare_gpus=0)) == (0, 1)
    assert surge(args(spare_gpus=1, serve=dataclasses.replace(SERVE, tensor_parallel_size=2))) == (0, 1)
    assert surge(args(spare_gpus=8, cache_kind="pvc")) == (0, 1)


def test_progress_deadline_is_the_largest_of_ten_minutes_two_budgets_and_the_await() -> None:
    assert progress_deadline_seconds(args(startup_budget_seconds=120, await_seconds=300)) == 600
    assert progress_deadline_seconds(args(startup_budget_seconds=900, await_seconds=600)) == 1800
    assert progress_deadline_seconds(args(startup_budget_seconds=100, await_seconds=2400)) == 2400


def test_spreading_only_for_several_replicas() -> None:
    assert replica_spreading({"a": "b"}, 1) == (None, None)
    affinity, spread = replica_spreading({"a": "b"}, 2)
    match = {"matchLabels": {"a": "b"}}
    assert plain(affinity) == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": match}}
            ]
        }
    }
    assert plain(spread) == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": match,
        }
    ]


def test_gpu_requests_name_the_tensor_parallel_gpus_and_cpu_requests_none() -> None:
    two = dataclasses.replace(SERVE, tensor_parallel_size=2)
    assert resource_requests(args(serve=two)) == {"cpu": "4", "memory": "30Gi", "nvidia.com/gpu": "2"}
    assert resource_requests(args(node_group_label=None)) == {"cpu": "4", "memory": "30Gi"}


def test_cpu_backend_env_sizes_the_kv_cache_and_threads_from_the_limit() -> None:
    env = plain(container_env(args(node_group_label=None, cpu="4", cpu_kv_cache_gib=2), "s"))
    assert env[-3:] == [
        {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "2"},
        {"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"},
        # 4 cores less vLLM's one reserved core.
        {"name": "OMP_NUM_THREADS", "value": "3"},
    ]
    gpu_env = plain(container_env(args(hf_token="t"), "s"))
    assert gpu_env[0] == {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "vllmApiKey"}}}
    assert gpu_env[-1] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "hfToken"}}}
    assert "OMP_NUM_THREADS" not in [item["name"] for item in gpu_env]


def test_pod_runs_as_the_unprivileged_user_and_chowns_only_on_mismatch() -> None:
    assert plain(pod_security_context()) == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
