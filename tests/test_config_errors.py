"""Bad config fails before any resource is registered, with one line per problem naming the stack, the key path,
the bad value and what is accepted."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from infra import render
from infra.config import PLATFORM_KEY, ConfigError
from infra.validation import parse_platform


def _platform(stack: str) -> dict[str, Any]:
    return copy.deepcopy(render.read_stack_file(stack)[PLATFORM_KEY])


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(platform: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = platform
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


# (stack, mutation, expected key path in the message, fragments that must appear: the value and what is accepted)
MISTAKES = [
    ("dev", _set("gpu_node_groups.0.capacity_typ", "SPOT"), "gpu_node_groups[0].capacity_typ", ["unknown key"]),
    ("dev", _set("gpu_node_groups.0.scaling.min_size", -1), "gpu_node_groups[0].scaling.min_size", ["-1", ">= 0"]),
    (
        "dev",
        _set("gpu_node_groups.0.instance_types", ["g9.mega"]),
        "gpu_node_groups[0].instance_types[0]",
        ["'g9.mega'", "g5.xlarge"],
    ),
    (
        "dev",
        _set("gpu_node_groups.0.scaling", {"min_size": 3, "desired_size": 2, "max_size": 1}),
        "gpu_node_groups[0].scaling",
        ["min_size 3", "max_size 1"],
    ),
    ("dev", _set("aws.region", "mars-north-1"), "aws.region", ["mars-north-1", "us-east-1"]),
    ("dev", _set("cluster.kubernetes_version", "1.12"), "cluster.kubernetes_version", ["1.12", "1.33"]),
    ("dev", _set("models.0.quantization", "int3"), "models[0].quantization", ["int3", "'awq'"]),
    ("dev", _set("models.0.node_group", "gpu-h100"), "models[0].node_group", ["gpu-h100", "gpu-a10g"]),
    ("dev", _set("models.0.catalog", "llama-9-1t"), "models[0].catalog", ["llama-9-1t", "llama-3.1-8b-instruct"]),
    ("dev", _set("network.vpc_cidr", "10.0.0.0/33"), "network.vpc_cidr", ["10.0.0.0/33", "10.0.0.0/16"]),
    ("dev", _set("cluster.public_access_cidrs", ["0.0.0.0/0"]), "cluster.public_access_cidrs", ["0.0.0.0/0"]),
    ("dev", _set("models.0.gpu_memory_utilization", 1.5), "models[0].gpu_memory_utilization", ["1.5", "0.98"]),
    (
        "prod",
        _set("gateway.routes.0.targets.0.backend", "gpt-5"),
        "gateway.routes[0].targets[0].backend",
        ["gpt-5", "llama-3-1-8b"],
    ),
    ("prod", _set("gateway.replicas", 1), "gateway.replicas", ["1", ">= 2"]),
    # The gateway's balancing schema (llm_gateway/config.py BalancingConfig), said per model.
    (
        "dev",
        _set("models.0.balancing", {"policy": "round_robin"}),
        "models[0].balancing.policy",
        ["'round_robin'", "'prefix_aware'"],
    ),
    ("dev", _set("models.0.balancing", {"load_margin": -1}), "models[0].balancing.load_margin", ["-1", ">= 0"]),
    (
        "dev",
        lambda p: p["models"][0].update(balancing={"policy": "prefix_aware"}, enable_prefix_caching=False),
        "models[0]",
        ["'prefix_aware'", "enable_prefix_caching", "'session'"],
    ),
    ("staging", _set("models.0.name", "Llama_8B"), "models[0].name", ["Llama_8B", "lowercase"]),
    ("prod", _set("device_plugin", {"time_slicing_replicas": 4}), "models[0].gpus", ["4", "gpus = 1"]),
    # Quantization against the checkpoint's own method (infra/models.py CHECKPOINT_CATALOG).
    (
        "staging",
        _set("models.0.quantization", "none"),
        "models[0].quantization",
        ["'none'", "compressed-tensors", "'fp8'"],
    ),
    (
        "staging",
        _set("models.0.checkpoint_quant_method", "awq"),
        "models[0].checkpoint_quant_method",
        ["'awq'", "'compressed-tensors'"],
    ),
    (
        "dev",
        _set("models.0.hf_model", "someone/Llama-3.1-8B-Instruct-AWQ"),
        "models[0].checkpoint_quant_method",
        ["None", "config.json", "'awq'"],
    ),
    (
        "dev",
        _set("models.0.checkpoint_quant_method", "none"),
        "models[0].checkpoint_quant_method",
        ["'none'", "'awq'"],
    ),
    # Stores (infra/stores_config.py): a ledger with no store, sizes out of range, a managed store without AWS.
    ("local", _set("stores.ledger", {}), "stores.ledger", ["exactly one store", "rds", "in_cluster"]),
    (
        "local",
        _set("stores.ledger", {"rds": {}}),
        "stores.ledger.rds",
        ["needs `aws` and a `network`", "in_cluster"],
    ),
    (
        "local",
        _set("stores.limits", {"elasticache": {}}),
        "stores.limits.elasticache",
        ["needs `aws` and a `network`", "in_cluster"],
    ),
    ("prod", _set("stores.ledger.rds.storage_gib", 5), "stores.ledger.rds.storage_gib", ["5", ">= 20"]),
    (
        "prod",
        _set("stores.ledger.rds.backup_retention_days", 1),
        "stores.ledger.rds.backup_retention_days",
        ["1", ">= 7"],
    ),
    (
        "prod",
        _set("stores.ledger.rds.instance_class", "db.x9.huge"),
        "stores.ledger.rds.instance_class",
        ["'db.x9.huge'", "db.m7g.large"],
    ),
    ("prod", _set("stores.ledger.rds.engine_version", "9.6"), "stores.ledger.rds.engine_version", ["'9.6'", "16"]),
    ("prod", _set("stores.limits.elasticache.replicas", 9), "stores.limits.elasticache.replicas", ["9", "<= 5"]),
    ("prod", _set("stores.limits.on_failure", "maybe"), "stores.limits.on_failure", ["'maybe'", "'open'"]),
    ("prod", _set("stores.ledger.spool_max_bytes", 100), "stores.ledger.spool_max_bytes", ["100", ">= 1048576"]),
    # Capacity: a 70B model in FP8 on one 24 GB A10G cannot hold its weights.
    ("dev", _set("models.0.catalog", "llama-3.3-70b-instruct"), "models[0]", ["weights", "GiB"]),
    (
        "prod",
        _set("gpu_node_groups.0.scaling", {"min_size": 1, "desired_size": 1, "max_size": 1}),
        "gpu_node_groups[0] (gpu-l40s-x4).scaling.max_size",
        ["8 GPUs", ">= 2"],
    ),
    # Scale to zero: dev's 4-bit 8B wakes in 600 s (node launch, infra/sizing.py) + 600 s (image pull) + 112 s
    # (the planner's start-up: 90 s fixed + 5.33 GiB of weights at 250 MiB/s = 21.8 s) = 1312 s.
    (
        "dev",
        _set("models.0.autoscaling.wake_deadline_s", 300),
        "models[0] (llama-3-1-8b).autoscaling.wake_deadline_s",
        ["= 300", "1312 s", "node launch 600", "image pull 600", "start-up 112", ">= 1312"],
    ),
    (
        "dev",
        _set("models.0.autoscaling.min_replicas", 2),
        "models[0] (llama-3-1-8b).autoscaling.min_replicas",
        ["= 2", "replicas 1", "<= 1"],
    ),
    # A Karpenter pool has no fixed size.
    (
        "staging",
        _set("gpu_node_groups.0.scaling", {"min_size": 1, "desired_size": 1, "max_size": 2}),
        "gpu_node_groups[0] (gpu-l40s).scaling",
        ["min_size 1", "desired_size 1", "provisioner: managed"],
    ),
    (
        "dev",
        _set("gpu_node_groups.0.provisioner", "cluster-autoscaler"),
        "gpu_node_groups[0].provisioner",
        ["'cluster-autoscaler'", "'karpenter'", "'managed'"],
    ),
    (
        "dev",
        _set("gpu_node_groups.0.ami_alias", "ubuntu@latest"),
        "gpu_node_groups[0].ami_alias",
        ["'ubuntu@latest'", "al2023@"],
    ),
]


@pytest.mark.parametrize(("stack", "mutate", "key_path", "fragments"), MISTAKES, ids=[m[2] for m in MISTAKES])
def test_each_mistake_is_reported_with_stack_key_value_and_what_is_accepted(
    stack: str, mutate: Callable[[dict[str, Any]], None], key_path: str, fragments: list[str]
) -> None:
    platform = _platform(stack)
    mutate(platform)
    with pytest.raises(ConfigError) as caught:
        parse_platform(stack, platform)
    message = str(caught.value)
    assert message.startswith(f"stack {stack!r}: ")
    line = next((line for line in caught.value.problems if f"{PLATFORM_KEY}.{key_path}" in line), None)
    assert line is not None, f"no problem names {key_path}: {caught.value.problems}"
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} missing from {line!r}"


def test_all_problems_are_reported_at_once() -> None:
    platform = _platform("dev")
    platform["gpu_node_groups"][0]["scaling"]["min_size"] = -1
    platform["aws"]["region"] = "nowhere"
    platform["typo_key"] = 1
    with pytest.raises(ConfigError) as caught:
        parse_platform("dev", platform)
    assert len(caught.value.problems) == 3


def test_bad_config_fails_before_any_resource_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[str] = []
    original = render.RecordingMonitor.RegisterResource

    def counting(self: render.RecordingMonitor, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            registered.append(request.type)
        return original(self, request)

    monkeypatch.setattr(render.RecordingMonitor, "RegisterResource", counting)
    config = copy.deepcopy(render.read_stack_file("dev"))
    config[PLATFORM_KEY]["gpu_node_groups"][0]["instance_types"] = ["g9.mega"]
    with pytest.raises(pulumi.RunError, match=r"(?s)stack 'dev'.*instance_types\[0\] = 'g9.mega'"):
        render.run("dev", config=config)
    assert registered == []
    render.run("dev")
    assert registered, "the same path registers resources once the config is good"
