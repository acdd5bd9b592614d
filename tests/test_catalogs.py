"""The instance and model catalogs are internally consistent, and their lookups explain a miss."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from infra.instances import (
    CPU_INSTANCE_TYPES,
    GPU_INSTANCE_TYPES,
    GPU_SPECS,
    INSTANCE_TYPES,
    SPOT_DISCOUNT,
    lookup,
)
from infra.models import MODEL_CATALOG, ModelArchitecture, lookup_model

REQUIRED_GPU_TYPES = {
    "g5.xlarge",
    "g5.2xlarge",
    "g5.4xlarge",
    "g5.12xlarge",
    "g5.48xlarge",
    "g6.xlarge",
    "g6.2xlarge",
    "g6.12xlarge",
    "g6e.xlarge",
    "g6e.2xlarge",
    "g6e.12xlarge",
    "g6e.48xlarge",
    "p4d.24xlarge",
    "p5.48xlarge",
    "p5en.48xlarge",
}
REQUIRED_CPU_TYPES = {"m6i.large", "m6i.xlarge", "m7i.large", "m7i.xlarge", "c6i.xlarge"}
# Compute capability per GPU model, from NVIDIA's CUDA GPUs page.
CAPABILITY = {
    "T4": 7.5,
    "A10G": 8.6,
    "L4": 8.9,
    "L40S": 8.9,
    "A100-40GB": 8.0,
    "A100-80GB": 8.0,
    "H100-80GB": 9.0,
    "H200-141GB": 9.0,
}
# Marketing memory per GPU in GB (10^9 bytes); the usable figure is below it but within 10 %.
NOMINAL_GB = {
    "T4": 16,
    "A10G": 24,
    "L4": 24,
    "L40S": 48,
    "A100-40GB": 40,
    "A100-80GB": 80,
    "H100-80GB": 80,
    "H200-141GB": 141,
}


def test_catalog_holds_every_required_type_in_the_right_list() -> None:
    assert set(GPU_INSTANCE_TYPES) >= REQUIRED_GPU_TYPES
    assert set(CPU_INSTANCE_TYPES) >= REQUIRED_CPU_TYPES
    assert set(GPU_INSTANCE_TYPES).isdisjoint(CPU_INSTANCE_TYPES)
    assert set(GPU_INSTANCE_TYPES) | set(CPU_INSTANCE_TYPES) == set(INSTANCE_TYPES)


@pytest.mark.parametrize("name", sorted(INSTANCE_TYPES))
def test_instance_row_is_consistent(name: str) -> None:
    row = INSTANCE_TYPES[name]
    assert row.name == name
    assert row.vcpus >= 2 and row.memory_gib >= 4
    assert 0.05 < row.on_demand_usd_per_hour < 120
    # AWS sizes: an .xlarge has 4 vCPUs, a .large 2, an .Nxlarge N x 4.
    size = name.split(".")[1]
    expected_vcpus = 2 if size == "large" else 4 * int(size.removesuffix("xlarge") or 1)
    assert row.vcpus == expected_vcpus
    if name in GPU_INSTANCE_TYPES:
        assert row.gpu is not None and row.gpu_count in (1, 2, 4, 8)
        assert row.gpu_model in CAPABILITY
        assert row.compute_capability == CAPABILITY[row.gpu.model]
        assert row.local_nvme_gb > 0
    else:
        assert row.gpu is None and row.gpu_count == 0 and row.gpu_model is None
        assert row.gpu_memory_gib == 0.0 and row.compute_capability is None


@pytest.mark.parametrize("model", sorted(GPU_SPECS))
def test_usable_gpu_memory_is_just_below_the_nominal_size(model: str) -> None:
    usable_bytes = GPU_SPECS[model].usable_memory_gib * 2**30  # type: ignore[index]
    nominal_bytes = NOMINAL_GB[model] * 1e9
    # H100/A100-80GB carry 80 GiB of HBM, more than 80 GB: allow the usable figure up to 7.5 % above.
    assert 0.9 * nominal_bytes < usable_bytes < 1.075 * nominal_bytes


def test_bigger_sizes_of_a_family_cost_more_and_cost_about_the_same_per_gpu() -> None:
    families: dict[str, list[str]] = {}
    for name in GPU_INSTANCE_TYPES:
        families.setdefault(name.split(".")[0], []).append(name)
    for members in families.values():
        rows = sorted((INSTANCE_TYPES[name] for name in members), key=lambda row: row.vcpus)
        prices = [row.on_demand_usd_per_hour for row in rows]
        assert prices == sorted(prices) and len(set(prices)) == len(prices)
        per_gpu = [row.on_demand_usd_per_hour / row.gpu_count for row in rows]
        # Extra vCPUs and memory cost something, but a GPU-hour stays within 2.5x across one family.
        assert max(per_gpu) / min(per_gpu) < 2.5


def test_spot_discount_is_a_fraction() -> None:
    assert 0 < SPOT_DISCOUNT < 0.9


def test_lookup_returns_the_row_and_explains_a_miss() -> None:
    assert lookup("p5.48xlarge").gpu_count == 8
    with pytest.raises(KeyError) as error:
        lookup("p9.huge")
    message = str(error.value)
    assert "'p9.huge'" in message and "g5.xlarge" in message and "m7i.large" in message


def _parameters_from_shapes(arch: ModelArchitecture) -> int:
    """Parameters implied by the config's shapes (Llama/Mistral/Mixtral/Qwen2 layouts)."""
    head_dim = arch.resolved_head_dim
    q = arch.num_attention_heads * head_dim
    kv = arch.num_key_value_heads * head_dim
    attention = arch.hidden_size * (q + 2 * kv) + q * arch.hidden_size
    if arch.hf_repo_id is not None and arch.hf_repo_id.startswith("Qwen/"):
        attention += q + 2 * kv  # Qwen2 has biases on the q, k and v projections
    mlp = arch.num_experts * 3 * arch.hidden_size * arch.intermediate_size
    router = arch.hidden_size * arch.num_experts if arch.is_moe else 0
    norms = 2 * arch.hidden_size
    layers = arch.num_hidden_layers * (attention + mlp + router + norms)
    return arch.embedding_parameters + layers + arch.hidden_size


@pytest.mark.parametrize("key", sorted(MODEL_CATALOG))
def test_model_row_is_consistent(key: str) -> None:
    arch = MODEL_CATALOG[key]
    assert arch.hf_repo_id is not None and re.fullmatch(r"[\w.-]+/[\w.-]+", arch.hf_repo_id)
    # Every catalog model uses head_dim = hidden / heads, whether or not its config.json spells it out.
    assert arch.resolved_head_dim * arch.num_attention_heads == arch.hidden_size
    assert arch.num_attention_heads % arch.num_key_value_heads == 0
    assert arch.num_experts_per_tok <= arch.num_experts
    assert arch.is_moe == (arch.num_experts > 1)
    assert arch.max_position_embeddings >= 32768
    # The published parameter count agrees with the shapes to within 1 %.
    assert _parameters_from_shapes(arch) == pytest.approx(arch.parameter_count, rel=0.01)


def test_lookup_model_by_key_or_repo_id_and_explains_a_miss() -> None:
    assert lookup_model("llama-3.1-8b-instruct").hidden_size == 4096
    assert lookup_model("qwen/qwen2.5-72b-instruct") is MODEL_CATALOG["qwen2.5-72b-instruct"]
    with pytest.raises(KeyError) as error:
        lookup_model("gpt-5")
    assert "'gpt-5'" in str(error.value) and "mixtral-8x7b-instruct-v0.1" in str(error.value)


def test_model_architecture_rejects_unknown_fields_and_inconsistent_heads() -> None:
    fields = MODEL_CATALOG["llama-3.1-8b-instruct"].model_dump()
    with pytest.raises(ValidationError, match="extra"):
        ModelArchitecture.model_validate({**fields, "num_layers": 32})
    with pytest.raises(ValidationError, match=r"num_attention_heads \(32\) must be a multiple of"):
        ModelArchitecture.model_validate({**fields, "num_key_value_heads": 6})
    with pytest.raises(ValidationError, match="num_experts_per_tok"):
        ModelArchitecture.model_validate({**fields, "num_experts_per_tok": 2})
    without_head_dim = {**fields, "head_dim": None, "hidden_size": 4100}
    with pytest.raises(ValidationError, match="give head_dim explicitly"):
        ModelArchitecture.model_validate(without_head_dim)
