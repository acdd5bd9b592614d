"""Small pieces of the capacity planner with figures worked out by hand (Llama-3-8B's shapes from its config.json:
hidden 4096, intermediate 14336, vocab 128256, 32 heads, 8 KV heads; https://huggingface.co/meta-llama/Meta-Llama-3-8B)."""

from __future__ import annotations

from infra.capacity import _capability, _gib, _kv_heads_per_gpu, activation_peak_bytes, default_max_num_batched_tokens
from infra.instances import lookup
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
