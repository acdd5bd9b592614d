"""The capacity planner against what vLLM itself logged for published deployments, and its rejection rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from infra.capacity import (
    BLOCK_SIZE,
    GIB,
    STARTUP_FIXED_SECONDS,
    STARTUP_READ_BYTES_PER_SECOND,
    CapacityPlan,
    Dtype,
    Engine,
    Quantization,
    default_max_num_batched_tokens,
    plan_capacity,
    startup_seconds,
)
from infra.instances import GPU_SPECS, GpuSpec, InstanceType, lookup
from infra.models import MODEL_CATALOG, ModelArchitecture


def machine(name: str, gpu: str, usable_gib: float, capability: float, gpus: int = 1) -> InstanceType:
    """A machine outside the AWS catalog, as a published log describes it (no price: cost is not checked)."""
    return InstanceType(name, 8, 64, GpuSpec(gpu, usable_gib, capability), gpus, 0, 0.0)  # type: ignore[arg-type]


# Qwen2-7B-Instruct has the shapes of Qwen2.5-7B-Instruct (config.json of Qwen/Qwen2-7B-Instruct).
QWEN2_7B = MODEL_CATALOG["qwen2.5-7b-instruct"].model_copy(
    update={"hf_repo_id": "Qwen/Qwen2-7B-Instruct", "parameters_billion": 7.62}
)


@dataclass(frozen=True)
class Published:
    """One deployment whose start-up log vLLM printed in public, and what the log says."""

    name: str
    model: ModelArchitecture
    instance: InstanceType
    max_model_len: int
    utilization: float = 0.90
    quantization: Quantization = "none"
    tp: int = 1
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    engine: Engine = "v1"
    logged_blocks: int | None = None  # "# GPU blocks: N" (16-token blocks)
    logged_tokens: int | None = None  # "GPU KV cache size: N tokens"
    logged_kv_gib: float | None = None  # "Available KV cache memory: X GiB"
    logged_weights_gib: float | None = None  # "Model loading took X GiB"

    def plan(self) -> CapacityPlan:
        return plan_capacity(
            self.model,
            self.instance,
            max_model_len=self.max_model_len,
            gpu_memory_utilization=self.utilization,
            quantization=self.quantization,
            gpus_per_replica=self.tp,
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            engine=self.engine,
        )


RTX3090 = machine("rtx3090", "A10G", 23.58, 8.6)
H100_X2 = machine("h100x2", "H100-80GB", 79.18, 9.0, gpus=2)

PUBLISHED = [
    # https://github.com/vllm-project/vllm/issues/10517 (comment by kaspersiminski): RTX 3090,
    # meta-llama/Llama-3.1-8B-Instruct, gpu_memory_utilization=0.90, --max-model-len 20000, vLLM V0 with chunked
    # prefill off (profiles max_model_len tokens). Log: "Memory profiling results: total_gpu_memory=23.58GiB ...
    # kv_cache_size=3.81GiB gpu_memory_utilization=0.90" / "GPU blocks: 1952, # CPU blocks: 2048".
    Published(
        "llama-3.1-8b 3090 20k",
        MODEL_CATALOG["llama-3.1-8b-instruct"],
        RTX3090,
        20000,
        max_num_batched_tokens=20000,
        engine="v0",
        logged_blocks=1952,
        logged_weights_gib=14.9888,
    ),
    # Same thread, --max-model-len 29000: "# GPU blocks: 1478, # CPU blocks: 2048" and "The model's max seq len
    # (29000) is larger than the maximum number of tokens that can be stored in KV cache (23648)".
    Published(
        "llama-3.1-8b 3090 29k",
        MODEL_CATALOG["llama-3.1-8b-instruct"],
        RTX3090,
        29000,
        max_num_batched_tokens=29000,
        engine="v0",
        logged_blocks=1478,
    ),
    # https://github.com/oracle-samples/oci-data-science-ai-samples/blob/main/ai-quick-actions/troubleshooting-tips.md
    # 24 GB A10 (the A10G's sibling, 23028 MiB), Llama-3.1-8B, max_model_len 131072, chunked prefill at 2048
    # tokens. Log: "total_gpu_memory (22.07GiB) x gpu_memory_utilization (0.90) = 19.86GiB" / "# CUDA blocks:
    # 2356, # CPU blocks: 2048" / "... maximum number of tokens that can be stored in KV cache (37696)".
    Published(
        "llama-3.1-8b A10 128k",
        MODEL_CATALOG["llama-3.1-8b-instruct"],
        machine("oci-a10", "A10G", 22.07, 8.6),
        131072,
        max_num_batched_tokens=2048,
        engine="v0",
        logged_blocks=2356,
    ),
    # https://github.com/llm-d/llm-d-benchmark/blob/main/config_explorer/empirical-vllm-memory-results.md
    # vllm/vllm-openai (V1) on H100 (79.18 GiB), `vllm serve meta-llama/Llama-3.1-8B-Instruct
    # --max-model-len=16000 --gpu-memory-utilization=0.90` (defaults on H100: 1024 seqs, 8192 batched tokens).
    # Log: "Model loading took 14.99 GiB" / "Available KV cache memory: 51.38 GiB".
    Published(
        "llama-3.1-8b H100",
        MODEL_CATALOG["llama-3.1-8b-instruct"],
        H100_X2,
        16000,
        max_num_seqs=1024,
        logged_kv_gib=51.38,
        logged_weights_gib=14.99,
    ),
    # Same page: RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic, --tensor-parallel-size=2, max-model-len 16000,
    # utilization 0.9. Log: "Model loading took 33.88 GiB" / "Available KV cache memory: 32.0 GiB".
    Published(
        "llama-3.3-70b FP8 TP2 H100",
        MODEL_CATALOG["llama-3.3-70b-instruct"],
        H100_X2,
        16000,
        quantization="fp8",
        tp=2,
        max_num_seqs=1024,
        logged_kv_gib=32.0,
        logged_weights_gib=33.88,
    ),
    # https://github.com/dennislee22/vLLM-benchmarking/blob/main/log/vllm-7B-1gpuA10080GB-0.5GRAM.log
    # vLLM 0.10.1.1 (V1) on one A100 80GB: "non-default args: {'model': 'Qwen2-7B-Instruct', 'max_model_len':
    # 16384, 'gpu_memory_utilization': 0.5}" / "max_num_batched_tokens=2048" / "Model loading took 14.2488 GiB"
    # / "Available KV cache memory: 24.83 GiB" / "GPU KV cache size: 464,848 tokens".
    Published(
        "qwen2-7b A100 util 0.5",
        QWEN2_7B,
        machine("a100-80gb", "A100-80GB", GPU_SPECS["A100-80GB"].usable_memory_gib, 8.0),
        16384,
        utilization=0.5,
        logged_tokens=464848,
        logged_kv_gib=24.83,
        logged_weights_gib=14.2488,
    ),
]


@pytest.mark.parametrize("case", PUBLISHED, ids=lambda case: case.name)
def test_planner_never_promises_more_kv_cache_than_vllm_logged(case: Published) -> None:
    """docs/capacity.md: the planner errs on the safe side, so a plan that fits here fits in vLLM. One-sided: at
    most what vLLM logged, and no more than 10 % below it (a planner that always says 0 would be useless)."""
    plan = case.plan()
    checked = 0
    if case.logged_blocks is not None:
        assert 0.90 * case.logged_blocks <= plan.gpu_blocks <= case.logged_blocks
        checked += 1
    if case.logged_tokens is not None:
        assert 0.90 * case.logged_tokens <= plan.kv_cache_tokens <= case.logged_tokens
        checked += 1
    if case.logged_kv_gib is not None:
        assert 0.90 * case.logged_kv_gib <= plan.kv_cache_memory_bytes_per_gpu / GIB <= case.logged_kv_gib
        # The token count vLLM derives from that memory, in whole 16-token blocks.
        logged_tokens = int(case.logged_kv_gib * GIB // plan.kv_cache_bytes_per_token_per_gpu)
        logged_tokens -= logged_tokens % BLOCK_SIZE
        assert 0.90 * logged_tokens <= plan.kv_cache_tokens <= logged_tokens
        checked += 1
    if case.logged_weights_gib is not None:
        assert plan.weight_bytes_per_gpu / GIB == pytest.approx(case.logged_weights_gib, rel=0.02)
        checked += 1
    assert checked >= 1


def test_planner_flags_the_deployments_vllm_refused_to_start() -> None:
    refused = {"llama-3.1-8b 3090 29k": 29000, "llama-3.1-8b A10 128k": 131072}
    for case in PUBLISHED:
        plan = case.plan()
        if case.name in refused:
            assert len(plan.problems) == 1
            assert f"max_model_len {refused[case.name]}" in plan.problems[0]
            assert f"holds {plan.kv_cache_tokens} tokens" in plan.problems[0]
        else:
            assert plan.ok, plan.problems


def test_kv_cache_bytes_per_token_and_block_rounding() -> None:
    plan = plan_capacity("llama-3.1-8b-instruct", "g6e.xlarge", max_model_len=8192)
    # 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 bytes.
    assert plan.kv_cache_bytes_per_token_per_gpu == 131072
    assert plan.kv_cache_bytes_per_token_total == 131072
    assert plan.kv_cache_tokens == plan.gpu_blocks * BLOCK_SIZE
    assert plan.kv_cache_tokens * plan.kv_cache_bytes_per_token_per_gpu <= plan.kv_cache_memory_bytes_per_gpu
    spare = plan.kv_cache_memory_bytes_per_gpu - plan.kv_cache_tokens * plan.kv_cache_bytes_per_token_per_gpu
    assert spare < BLOCK_SIZE * plan.kv_cache_bytes_per_token_per_gpu
    assert plan.max_concurrency == round(plan.kv_cache_tokens / 8192, 2)
    assert plan.full_length_sequences == plan.kv_cache_tokens // 8192


def test_fp8_kv_cache_halves_bytes_per_token_and_doubles_capacity() -> None:
    auto = plan_capacity("qwen2.5-7b-instruct", "g6.xlarge", max_model_len=8192)
    fp8 = plan_capacity("qwen2.5-7b-instruct", "g6.xlarge", max_model_len=8192, kv_cache_dtype="fp8")
    assert fp8.kv_cache_bytes_per_token_per_gpu * 2 == auto.kv_cache_bytes_per_token_per_gpu
    assert fp8.kv_cache_tokens == pytest.approx(2 * auto.kv_cache_tokens, abs=2 * BLOCK_SIZE)


def test_tensor_parallelism_splits_weights_and_kv_heads() -> None:
    one = plan_capacity("llama-3.1-70b-instruct", "p5.48xlarge", max_model_len=8192, quantization="fp8")
    four = plan_capacity(
        "llama-3.1-70b-instruct", "p5.48xlarge", max_model_len=8192, quantization="fp8", gpus_per_replica=4
    )
    assert four.weight_bytes_per_gpu == pytest.approx(one.weight_bytes_per_gpu / 4, rel=1e-6)
    assert four.kv_cache_bytes_per_token_per_gpu * 4 == one.kv_cache_bytes_per_token_per_gpu
    assert four.kv_cache_bytes_per_token_total == one.kv_cache_bytes_per_token_total


def test_kv_heads_are_replicated_when_tensor_parallelism_exceeds_them() -> None:
    two_kv_heads = MODEL_CATALOG["llama-3.1-8b-instruct"].model_copy(update={"num_key_value_heads": 2})
    plan = plan_capacity(two_kv_heads, "g5.12xlarge", max_model_len=8192, gpus_per_replica=4)
    assert plan.ok, plan.problems
    # One replicated KV head per GPU: 2 x 32 layers x 1 x 128 x 2 bytes, counted on all four GPUs.
    assert plan.kv_cache_bytes_per_token_per_gpu == 16384
    assert plan.kv_cache_bytes_per_token_total == 4 * 16384


def test_default_batched_tokens_follow_vllm_serve() -> None:
    assert default_max_num_batched_tokens(lookup("p5.48xlarge")) == 8192
    assert default_max_num_batched_tokens(lookup("p4d.24xlarge")) == 2048
    assert default_max_num_batched_tokens(lookup("g6e.xlarge")) == 2048
    a100_80 = machine("a100-80gb", "A100-80GB", 79.15, 8.0)
    assert default_max_num_batched_tokens(a100_80) == 2048


# --- rejection rules: each problem names the numbers that broke it ---


def test_rejects_weights_that_do_not_fit() -> None:
    plan = plan_capacity("llama-3.1-70b-instruct", "g5.xlarge", max_model_len=8192)
    assert not plan.ok
    assert plan.problems == [
        f"weights need {plan.weight_bytes_per_gpu / GIB:.2f} GiB per GPU but A10G has 22.07 GiB x 0.90 = "
        "19.86 GiB; use more GPUs per replica, quantization, or a larger GPU"
    ]
    assert plan.weight_bytes_per_gpu / GIB == pytest.approx(131.5, abs=0.5)
    assert plan.gpu_blocks == 0 and plan.kv_cache_tokens == 0


def test_rejects_a_kv_cache_smaller_than_one_sequence() -> None:
    plan = plan_capacity("llama-3.1-8b-instruct", "g6.xlarge", max_model_len=131072)
    assert len(plan.problems) == 1
    problem = plan.problems[0]
    assert f"KV cache holds {plan.kv_cache_tokens} tokens" in problem
    assert "max_model_len 131072 needs 16.00 GiB" in problem
    assert "22.07 GiB x 0.90 = 19.86 GiB" in problem
    assert f"lower max_model_len to at most {plan.kv_cache_tokens}" in problem
    fitting = plan_capacity("llama-3.1-8b-instruct", "g6.xlarge", max_model_len=plan.kv_cache_tokens)
    assert fitting.ok


def test_rejects_tensor_parallelism_that_does_not_divide_attention_heads() -> None:
    plan = plan_capacity("qwen2.5-7b-instruct", "g5.48xlarge", max_model_len=8192, gpus_per_replica=8)
    assert any("tensor parallel size 8 does not divide the model's 28 attention heads" in p for p in plan.problems)


def test_rejects_tensor_parallelism_that_does_not_divide_kv_heads() -> None:
    twelve_kv = MODEL_CATALOG["llama-3.1-8b-instruct"].model_copy(
        update={"num_attention_heads": 48, "num_key_value_heads": 12, "head_dim": 128}
    )
    plan = plan_capacity(twelve_kv, "g5.48xlarge", max_model_len=8192, gpus_per_replica=8)
    assert plan.problems == [
        "tensor parallel size 8 does not divide the model's 12 KV heads; vLLM needs "
        "num_key_value_heads % tensor_parallel_size == 0 when there are at least as many KV heads as GPUs"
    ]
    five_kv = twelve_kv.model_copy(update={"num_attention_heads": 40, "num_key_value_heads": 5})
    plan = plan_capacity(five_kv, "g5.48xlarge", max_model_len=8192, gpus_per_replica=8)
    assert plan.problems == [
        "tensor parallel size 8 is not a multiple of the model's 5 KV heads; vLLM replicates KV heads only "
        "when tensor_parallel_size % num_key_value_heads == 0"
    ]


def test_rejects_tensor_parallelism_beyond_one_node() -> None:
    plan = plan_capacity("llama-3.1-8b-instruct", "g5.xlarge", max_model_len=4096, gpus_per_replica=2)
    assert plan.problems[0] == (
        "gpus_per_replica (tensor parallel size) 2 exceeds the 1 GPU(s) of one g5.xlarge; a replica must fit in "
        "one node: pick an instance type with >= 2 GPUs"
    )


def test_rejects_a_cpu_instance_type() -> None:
    plan = plan_capacity("llama-3.1-8b-instruct", "m7i.xlarge", max_model_len=4096)
    assert plan.problems[0].startswith("m7i.xlarge has no GPU")


def test_rejects_more_replicas_than_the_node_group_holds() -> None:
    plan = plan_capacity(
        "llama-3.1-8b-instruct",
        "g5.12xlarge",
        max_model_len=8192,
        gpus_per_replica=2,
        replicas=5,
        node_group_max_size=2,
    )
    assert plan.problems == [
        "5 replicas x 2 GPU(s) need 10 GPUs in whole-replica slots, but the node group's max size 2 x 4 GPU(s) "
        "per g5.12xlarge holds 4 replica(s) of 2 GPU(s); raise the node group's max size to 3 or run fewer "
        "replicas"
    ]
    assert plan.nodes == 3


def test_rejects_fp8_below_ampere_and_runs_it_weight_only_on_ampere() -> None:
    t4 = plan_capacity("llama-3.1-8b-instruct", "g4dn.xlarge", max_model_len=4096, quantization="fp8")
    assert (
        "quantization fp8 needs compute capability >= 8.0 but T4 has 7.5 "
        "(vllm/model_executor/layers/quantization/fp8.py get_min_capability)"
    ) in t4.problems
    a10g = plan_capacity("llama-3.1-8b-instruct", "g5.xlarge", max_model_len=4096, quantization="fp8")
    assert a10g.ok, a10g.problems
    assert a10g.notes and "weight-only (W8A16)" in a10g.notes[0] and "8.6" in a10g.notes[0]
    l4 = plan_capacity("llama-3.1-8b-instruct", "g6.xlarge", max_model_len=4096, quantization="fp8")
    assert l4.ok and not l4.notes
    # FP8 halves the weights of the linear layers; embeddings stay 16-bit.
    assert l4.weight_bytes_per_gpu / GIB == pytest.approx(8.46, abs=0.05)


@pytest.mark.parametrize("quantization", ["awq", "gptq"])
def test_int4_methods_need_float16(quantization: Quantization) -> None:
    dtypes: tuple[Dtype, ...] = ("bfloat16", "auto")
    for dtype in dtypes:
        plan = plan_capacity(
            "llama-3.1-70b-instruct",
            "g6e.12xlarge",
            max_model_len=8192,
            quantization=quantization,
            dtype=dtype,
            gpus_per_replica=2,
        )
        assert len(plan.problems) == 1
        assert f"quantization {quantization} runs in float16 only" in plan.problems[0]
        assert f"but dtype is {dtype}; set dtype: float16" in plan.problems[0]
    good = plan_capacity(
        "llama-3.1-70b-instruct",
        "g6e.12xlarge",
        max_model_len=8192,
        quantization=quantization,
        dtype="float16",
        gpus_per_replica=2,
    )
    assert good.ok, good.problems
    # 4-bit with group-128 scales: about a quarter of the 16-bit weights, plus the 16-bit embeddings.
    assert good.weight_bytes_per_gpu / GIB == pytest.approx(19.0, abs=0.5)


def test_awq_runs_on_turing() -> None:
    plan = plan_capacity(
        "mistral-7b-instruct-v0.3", "g4dn.xlarge", max_model_len=4096, quantization="awq", dtype="float16"
    )
    assert plan.ok, plan.problems


def test_rejects_a_context_beyond_the_model() -> None:
    plan = plan_capacity("mistral-7b-instruct-v0.3", "g6e.xlarge", max_model_len=65536)
    assert any("max_model_len 65536 exceeds the model's max_position_embeddings 32768" in p for p in plan.problems)


def test_unknown_names_raise_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"g6e\.xlarge"):
        plan_capacity("llama-3.1-8b-instruct", "g7.mega", max_model_len=4096)
    with pytest.raises(KeyError, match=r"qwen2\.5-7b-instruct"):
        plan_capacity("llama-9", "g6e.xlarge", max_model_len=4096)
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        plan_capacity("llama-3.1-8b-instruct", "g6e.xlarge", max_model_len=4096, gpu_memory_utilization=1.5)


# --- cost and start-up ---


def test_cost_packs_replicas_into_nodes_and_discounts_spot() -> None:
    plan = plan_capacity(
        "llama-3.3-70b-instruct",
        "p5.48xlarge",
        max_model_len=16384,
        quantization="fp8",
        gpus_per_replica=2,
        replicas=3,
        node_group_max_size=1,
    )
    assert plan.ok, plan.problems
    node = lookup("p5.48xlarge").on_demand_usd_per_hour
    assert (plan.replicas_per_node, plan.nodes) == (4, 1)
    assert plan.hourly_cost_per_replica_usd == pytest.approx(node / 4)
    assert plan.hourly_cost_total_usd == pytest.approx(node)
    spot = plan_capacity(
        "llama-3.3-70b-instruct",
        "p5.48xlarge",
        max_model_len=16384,
        quantization="fp8",
        gpus_per_replica=2,
        replicas=5,
        node_group_max_size=2,
        capacity_type="SPOT",
    )
    assert spot.nodes == 2
    assert spot.hourly_cost_total_usd == pytest.approx(2 * node * 0.5)


def test_startup_grows_with_the_checkpoint() -> None:
    small = plan_capacity("llama-3.1-8b-instruct", "g6e.xlarge", max_model_len=8192)
    large = plan_capacity("llama-3.1-70b-instruct", "p5.48xlarge", max_model_len=8192, gpus_per_replica=4)
    checkpoint = small.weight_bytes_per_gpu
    assert startup_seconds(small) == pytest.approx(
        STARTUP_FIXED_SECONDS + checkpoint / STARTUP_READ_BYTES_PER_SECOND, abs=1
    )
    # 70B in bf16 is ~131 GiB: about nine minutes at 250 MiB/s, plus the fixed part.
    assert 600 < startup_seconds(large) < 700
    assert startup_seconds(large, read_bytes_per_second=2 * 2**30) < 200


def test_startup_seconds_hand_worked() -> None:
    """90 s fixed + the whole checkpoint at 250 MiB/s (262,144,000 B/s), worked by hand from the model cards'
    parameter counts: Llama-3.1-8B has 2 x 128,256 x 4,096 = 1,050,673,152 embedding + lm_head parameters (16-bit)
    and 8.03e9 - 1,050,673,152 = 6,979,326,848 linear ones."""
    rate = 250 * 2**20
    # FP8: 6,979,326,848 x 1 + 1,050,673,152 x 2 = 9,080,673,152 B -> 34.64 s -> ceil(124.64) = 125.
    fp8 = plan_capacity("llama-3.1-8b-instruct", "g6e.xlarge", max_model_len=8192, quantization="fp8")
    assert startup_seconds(fp8, read_bytes_per_second=rate, fixed_seconds=90) == 125
    # AWQ: 6,979,326,848 x (0.5 + 2.5/128) + 2,101,346,304 = 5,727,324,705.5 B -> 21.85 s -> 112.
    awq = plan_capacity("llama-3.1-8b-instruct", "g5.xlarge", max_model_len=8192, quantization="awq", dtype="float16")
    assert startup_seconds(awq, read_bytes_per_second=rate, fixed_seconds=90) == 112
    # 70.6e9 parameters in FP8 over 4 GPUs: 68,498,653,696 + 2 x 2,101,346,304 = 72,701,346,304 B -> 277.3 s -> 368.
    big = plan_capacity(
        "llama-3.3-70b-instruct", "g6e.12xlarge", max_model_len=8192, quantization="fp8", gpus_per_replica=4
    )
    assert startup_seconds(big, read_bytes_per_second=rate, fixed_seconds=90) == 368


def test_node_disk_grows_with_the_weights_cached_on_it() -> None:
    """Above the 100 GiB floor: prod's 70B FP8 model moved from its claim to the node's disk (emptyDir).
    70.6e9 x 1 byte = 65.75 GiB of weights; 40 GiB image and system + 1.5 x 65.75 = 138.6 -> 140 GiB (whole tens);
    the 8B FP8 model beside it goes to the other node group."""
    from infra import render
    from infra.config import PLATFORM_KEY
    from infra.sizing import node_group_disk_gib
    from infra.validation import parse_platform

    raw = render.read_stack_file("prod")[PLATFORM_KEY]
    raw["models"][0]["cache"] = {"kind": "emptyDir"}
    platform = parse_platform("prod", raw)
    groups = {group.name: group for group in platform.gpu_node_groups}
    assert node_group_disk_gib(platform, groups["gpu-l40s-x4"]) == 140
    # 8.03e9 FP8 = 7.48 GiB: 40 + 11.2 = 51.2 -> the 100 GiB floor.
    assert node_group_disk_gib(platform, groups["gpu-l40s"]) == 100
    # A second model cached on the same group adds its own weights.
    raw["models"][1]["node_group"] = "gpu-l40s-x4"
    both = parse_platform("prod", raw)
    # 65.75 + 7.48 = 73.23 GiB -> 40 + 109.8 = 149.8 -> 150 GiB.
    assert node_group_disk_gib(both, {g.name: g for g in both.gpu_node_groups}["gpu-l40s-x4"]) == 150
