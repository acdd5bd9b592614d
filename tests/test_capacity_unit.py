"""Small pieces of the capacity planner with figures worked out by hand (Llama-3-8B's shapes from its config.json:
hidden 4096, intermediate 14336, vocab 128256, 32 heads, 8 KV heads; https://huggingface.co/meta-llama/Meta-Llama-3-8B)."""

from __future__ import annotations

import pytest

from infra.capacity import (
    GIB,
    _capability,
    _gib,
    _kv_heads_per_gpu,
    activation_peak_bytes,
    default_max_num_batched_tokens,
    plan_capacity,
)
from infra.instances import SPOT_DISCOUNT, GpuSpec, InstanceType, lookup
from infra.models import ModelArchitecture

LLAMA_3_8B = ModelArchitecture(
    parameters_billion=8.03,
    hidden_size=4096,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    intermediate_size=14336,
    max_position_embeddings=8192,
)


def test_forward_pass_peak_when_it_beats_the_sampler() -> None:
    # per token: 2 B x (3 x 14336 + (3 + 1) x 4096) = 118,784 B; x 2048 tokens = 243,269,632 B.
    # v0 sampler with one sequence: 1 x 128256 x 8 = 1,026,048 B, smaller.
    assert activation_peak_bytes(LLAMA_3_8B, 1, 2048, 1, 2, engine="v0") == 243_269_632
    # TP 2 halves the MLP width only: 2 x (3 x 7168 + 4 x 4096) = 75,776 B per token; x 2048 = 155,189,248 B.
    assert activation_peak_bytes(LLAMA_3_8B, 2, 2048, 1, 2, engine="v0") == 155_189_248


def test_sampler_peak_when_it_beats_the_forward_pass() -> None:
    # v0: 256 rows x 128256 logits x 8 B = 262,668,288 B > 243,269,632 B of the forward pass.
    assert activation_peak_bytes(LLAMA_3_8B, 1, 2048, 256, 2, engine="v0") == 262_668_288


def test_moe_keeps_top_k_experts_per_token() -> None:
    moe = LLAMA_3_8B.model_copy(update={"num_experts": 8, "num_experts_per_tok": 2})
    # 2 B x (3 x 14336 x 2 + (3 + 2) x 4096) = 2 x (86,016 + 20,480) = 212,992 B per token; x 1024 = 218,103,808.
    assert activation_peak_bytes(moe, 1, 1024, 1, 2, engine="v0") == 218_103_808


def test_kv_heads_per_gpu_split_then_replicated() -> None:
    assert [_kv_heads_per_gpu(LLAMA_3_8B, tp) for tp in (1, 2, 4, 8, 16)] == [8, 4, 2, 1, 1]


def test_vllm_default_batched_tokens_by_gpu_memory() -> None:
    # vLLM EngineArgs.get_batch_defaults: 8192 on GPUs with >= 70 GiB that are not A100s, else 2048.
    assert default_max_num_batched_tokens(lookup("p5.48xlarge")) == 8192  # H100 80 GB
    assert default_max_num_batched_tokens(lookup("p4d.24xlarge")) == 2048  # A100 40 GB
    assert default_max_num_batched_tokens(lookup("g6e.xlarge")) == 2048  # L40S 48 GB


def test_formatting_helpers() -> None:
    assert _gib(1.5 * 2**30) == "1.50 GiB"
    assert _capability(89) == "8.9" and _capability(100) == "10.0"


# ---- a whole plan worked out by hand (public names only: plan_capacity and the catalog's InstanceType)


def instance(gib: float, gpus: int, price: float, gpu: str = "L40S", capability: float = 8.9) -> InstanceType:
    """A test instance: its figures are the inputs of the hand-worked plans below, not the catalog's."""
    spec = GpuSpec(gpu, gib, capability) if gpus else None  # type: ignore[arg-type]
    return InstanceType(
        name=f"test.{gpus}x",
        vcpus=4,
        memory_gib=32,
        gpu=spec,
        gpu_count=gpus,
        local_nvme_gb=0,
        on_demand_usd_per_hour=price,
    )


L40S_X1 = instance(44.39, 1, 1.861)  # the usable GiB vLLM logs on an L40S (infra/instances.py GPU_SPECS)
L40S_X4 = instance(44.39, 4, 10.00006)  # a price with a 5th decimal, to see the 4-decimal rounding


def test_a_plan_on_defaults_worked_out_by_hand() -> None:
    plan = plan_capacity(LLAMA_3_8B, L40S_X1, max_model_len=6000)
    # Defaults: 16-bit weights (dtype auto), TP 1, utilization 0.90, 256 sequences, vLLM V1, on demand,
    # and vLLM's 2048 batched tokens for a GPU under 70 GiB.
    assert (plan.model, plan.instance_type, plan.gpu_model, plan.gpus_per_replica) == ("custom", "test.1x", "L40S", 1)
    assert (plan.gpu_memory_gib, plan.gpu_memory_utilization, plan.capacity_type) == (44.39, 0.90, "ON_DEMAND")
    assert (plan.max_model_len, plan.max_num_seqs, plan.max_num_batched_tokens) == (6000, 256, 2048)
    # Weights: 8.03e9 parameters x 2 B = 16,060,000,000 B (embedding and lm_head stay 16-bit as well).
    assert plan.weight_bytes_per_gpu == 16_060_000_000
    # KV per token: 2 (K and V) x 32 layers x 8 KV heads x 128 head dim x 2 B = 131,072 B.
    assert plan.kv_cache_bytes_per_token_per_gpu == plan.kv_cache_bytes_per_token_total == 131_072
    # Activation: the V1 sampler, 256 x 128,256 logits x 39 B = 1,280,507,904 B, beats the forward pass
    # (2048 x 118,784 B = 243,269,632 B); plus 0.3 GiB non-torch = 322,122,547 B.
    assert plan.activation_peak_bytes_per_gpu == 1_280_507_904
    assert plan.overhead_bytes_per_gpu == 1_602_630_451
    # Budget 44.39 GiB x 0.90 = 42,897,059,610.6 B; less weights and overhead: 25,234,429,159 B for the KV cache,
    # 12,032 whole blocks of 16 tokens x 131,072 B (2,097,152 B a block): 192,512 tokens.
    assert plan.kv_cache_memory_bytes_per_gpu == 25_234_429_159
    assert (plan.gpu_blocks, plan.kv_cache_tokens) == (12_032, 192_512)
    assert all(type(v) is int for v in (plan.gpu_blocks, plan.kv_cache_tokens, plan.kv_cache_bytes_per_token_per_gpu))
    # vLLM logs "Maximum concurrency for 6000 tokens per request: 32.09x" (two decimals): 192,512 / 6000 = 32.0853.
    assert plan.max_concurrency == 32.09
    assert (plan.replicas, plan.replicas_per_node, plan.nodes) == (1, 1, 1)
    assert (plan.hourly_cost_per_replica_usd, plan.hourly_cost_total_usd) == (1.861, 1.861)
    assert plan.problems == [] and plan.notes == [] and plan.ok


def test_float32_doubles_weights_and_kv_cache() -> None:
    plan = plan_capacity(LLAMA_3_8B, L40S_X1, max_model_len=6000, dtype="float32")
    assert plan.weight_bytes_per_gpu == 32_120_000_000  # 8.03e9 x 4 B
    assert plan.kv_cache_bytes_per_token_per_gpu == 262_144  # 2 x 32 x 8 x 128 x 4 B


def test_the_repo_id_names_the_plan() -> None:
    named = LLAMA_3_8B.model_copy(update={"hf_repo_id": "meta-llama/Meta-Llama-3-8B"})
    assert plan_capacity(named, L40S_X1, max_model_len=6000).model == "meta-llama/Meta-Llama-3-8B"


def test_spot_slots_and_rounding() -> None:
    plan = plan_capacity(LLAMA_3_8B, L40S_X4, max_model_len=6000, replicas=3, capacity_type="SPOT")
    assert SPOT_DISCOUNT == 0.5  # the figures below assume it
    # 4 one-GPU slots a node: 3 replicas on 1 node at 10.00006 x 0.5 = 5.00003 $/h, 1.2500075 $/h a replica;
    # both rounded to 4 decimals.
    assert (plan.replicas_per_node, plan.nodes) == (4, 1)
    assert (plan.hourly_cost_per_replica_usd, plan.hourly_cost_total_usd) == (1.25, 5.0)
    assert plan.problems == []


@pytest.mark.parametrize(("gpus", "tp", "nodes_per_replica"), [(4, 8, 2), (1, 2, 2)])
def test_a_replica_wider_than_a_node_is_flagged_and_priced_on_whole_nodes(
    gpus: int, tp: int, nodes_per_replica: int
) -> None:
    machine = instance(44.39, gpus, 10.00006)
    plan = plan_capacity(LLAMA_3_8B, machine, max_model_len=6000, gpus_per_replica=tp, replicas=3)
    assert plan.problems[0] == (
        f"gpus_per_replica (tensor parallel size) {tp} exceeds the {gpus} GPU(s) of one test.{gpus}x; a replica "
        f"must fit in one node: pick an instance type with >= {tp} GPUs"
    )
    # TP 8 over 4-GPU nodes: 2 nodes a replica; TP 2 over 1-GPU nodes: 2 as well. 3 replicas: 6 nodes.
    assert (plan.replicas_per_node, plan.nodes) == (0, 3 * nodes_per_replica)
    assert plan.hourly_cost_per_replica_usd == round(nodes_per_replica * 10.00006, 4) == 20.0001
    assert plan.hourly_cost_total_usd == 60.0004  # 6 x 10.00006 = 60.00036


def test_a_cpu_instance_has_no_gpu_slots_and_no_quantization_check() -> None:
    cpu = instance(0.0, 0, 0.192)
    plan = plan_capacity(LLAMA_3_8B, cpu, max_model_len=6000, replicas=2, quantization="awq", dtype="float16")
    assert plan.problems == ["test.0x has no GPU; pick one of the GPU instance types for a vLLM model"]
    assert (plan.replicas_per_node, plan.nodes, plan.hourly_cost_per_replica_usd, plan.hourly_cost_total_usd) == (
        0,
        2,
        0.192,
        0.384,
    )


def test_two_replicas_need_a_node_group_of_two_by_default() -> None:
    plan = plan_capacity(LLAMA_3_8B, L40S_X1, max_model_len=6000, replicas=2)
    assert plan.problems == [
        "2 replicas x 1 GPU(s) need 2 GPUs in whole-replica slots, but the node group's max size 1 x 1 GPU(s) per "
        "test.1x holds 1 replica(s) of 1 GPU(s); raise the node group's max size to 2 or run fewer replicas"
    ]


def test_weights_that_exactly_fill_the_budget_leave_no_kv_cache() -> None:
    # 16,060,000,000 B = 14.957... GiB exactly (2^8 x an odd number): at utilization 1.0 the budget equals the
    # weights. They load, and the KV cache is what is missing (vLLM: "No available memory for the cache blocks").
    exact = instance(16_060_000_000 / GIB, 1, 1.0)
    plan = plan_capacity(LLAMA_3_8B, exact, max_model_len=6000, gpu_memory_utilization=1.0)
    assert plan.problems == [
        "KV cache holds 0 tokens per replica (0.00 GiB per GPU left of 14.96 GiB x 1.00 = 14.96 GiB after 14.96 GiB "
        "of weights and 1.49 GiB of activations and workspace) but one sequence at max_model_len 6000 needs "
        "0.73 GiB; lower max_model_len to at most 0, raise gpu_memory_utilization, use kv_cache_dtype fp8, or add GPUs"
    ]


def test_awq_with_the_default_dtype_is_refused() -> None:
    plan = plan_capacity(LLAMA_3_8B, L40S_X1, max_model_len=6000, quantization="awq")
    assert plan.problems == [
        "quantization awq runs in float16 only (vllm/model_executor/layers/quantization/awq.py "
        "AWQConfig.get_supported_act_dtypes) but dtype is auto; set dtype: float16 (auto follows the checkpoint's "
        "torch_dtype, bfloat16 in some AWQ checkpoints, which vLLM then rejects)"
    ]


def test_fp8_below_ada_is_weight_only() -> None:
    # vllm/model_executor/layers/quantization/fp8.py: below capability 8.9 Fp8LinearMethod uses the Marlin kernel.
    a100 = instance(79.15, 1, 4.0, gpu="A100-80GB", capability=8.0)
    plan = plan_capacity(LLAMA_3_8B, a100, max_model_len=6000, quantization="fp8")
    assert plan.notes == [
        "fp8 on A100-80GB (compute capability 8.0 < 8.9) runs weight-only (W8A16) through vLLM's Marlin kernel: FP8 "
        "memory savings, about FP16 speed"
    ]


def test_vllm_default_batched_tokens_at_exactly_70_gib() -> None:
    # vllm 0.32 vllm/engine/arg_utils.py get_batch_defaults: `device_memory >= 70 * GiB_bytes and "a100" not in
    # device_name` -> 8192.
    assert default_max_num_batched_tokens(instance(70.0, 1, 1.0, gpu="H100-80GB")) == 8192
    assert default_max_num_batched_tokens(instance(69.99, 1, 1.0, gpu="H100-80GB")) == 2048


def test_activation_peak_defaults_to_the_v1_sampler() -> None:
    # 256 rows x 128,256 logits x 39 B (V1) = 1,280,507,904 B.
    assert activation_peak_bytes(LLAMA_3_8B, 1, 2048, 256, 2) == 1_280_507_904


@pytest.mark.parametrize(
    "bad",
    [
        {"gpus_per_replica": 0},
        {"replicas": 0},
        {"node_group_max_size": -1},
        {"max_model_len": 0},
    ],
)
def test_each_impossible_size_is_refused_alone(bad: dict[str, int]) -> None:
    args = {"gpus_per_replica": 1, "replicas": 1, "node_group_max_size": 1, "max_model_len": 6000, **bad}
    expected = (
        f"gpus_per_replica ({args['gpus_per_replica']}), replicas ({args['replicas']}) and max_model_len "
        f"({args['max_model_len']}) must be >= 1 and node_group_max_size ({args['node_group_max_size']}) >= 0"
    )
    with pytest.raises(ValueError) as raised:
        plan_capacity(LLAMA_3_8B, L40S_X1, **args)  # type: ignore[arg-type]
    assert str(raised.value) == expected


def test_the_smallest_sizes_are_accepted() -> None:
    # A node group of max size 0 (scaled to nothing) and a 1-token context are odd but valid.
    plan = plan_capacity(LLAMA_3_8B, L40S_X1, max_model_len=1, node_group_max_size=0)
    assert plan.max_model_len == 1


@pytest.mark.parametrize(("utilization", "accepted"), [(0.0, False), (1.0, True), (1.01, False)])
def test_gpu_memory_utilization_is_in_zero_one(utilization: float, accepted: bool) -> None:
    if accepted:
        assert plan_capacity(LLAMA_3_8B, L40S_X1, max_model_len=6000, gpu_memory_utilization=utilization).ok
        return
    with pytest.raises(ValueError, match=rf"^gpu_memory_utilization must be in \(0, 1\], got {utilization}$"):
        plan_capacity(LLAMA_3_8B, L40S_X1, max_model_len=6000, gpu_memory_utilization=utilization)
