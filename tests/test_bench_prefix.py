"""bench/prefix.py's workload profiles and KV arithmetic (docs/benchmarks.md, run E), without starting vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import prefix


def test_kv_budget_of_hand_worked_prompts() -> None:
    # Prompts of 100, 200, 300, 400 tokens: mean 250; 16 conversations in progress hold 16 x 250 = 4,000 tokens,
    # 2,000 on each of 2 replicas when each conversation lives on one; a 3,000-token cache holds that, not 4,000.
    budget = prefix.kv_budget([100, 200, 300, 400], concurrency=16, replicas=2, kv_tokens=3000)
    assert budget == {
        "mean_prompt_tokens": 250,
        "max_prompt_tokens": 400,
        "working_set_tokens": 4000,
        "per_replica_if_affine": 2000,
        "kv_tokens_per_replica": 3000,
        "fits_once_across_replicas": True,
        "fits_on_every_replica": False,
        "single_replica_kv_tokens": 6000,
    }


def test_a_profile_sets_defaults_and_an_explicit_option_wins() -> None:
    # roomy-kv is run C of docs/benchmarks.md: 6 clients, 4,096 KV tokens a replica, 24 conversations of 8 turns.
    roomy = prefix.parse_args(["--profile", "roomy-kv"])
    assert (roomy.concurrency, roomy.kv_tokens, roomy.conversations, roomy.turns) == (6, 4096, 24, 8)
    # scarce-kv, the default, is run E: 16 clients, 3,584 KV tokens a replica, 48 conversations of 6 turns.
    scarce = prefix.parse_args([])
    assert (scarce.concurrency, scarce.kv_tokens, scarce.conversations, scarce.turns) == (16, 3584, 48, 6)
    assert prefix.parse_args(["--concurrency", "12", "--profile", "scarce-kv"]).concurrency == 12


@pytest.mark.vllm  # the tiny model's tokenizer needs torch and transformers, from the vLLM CPU build
def test_the_scarce_kv_profile_fits_once_across_two_replicas_but_not_on_each(tmp_path: Path) -> None:
    """The regime run E claims, counted with the tiny model's own tokenizer and chat template: the conversations in
    progress fit in the replicas' caches together, not in any one, and in the single replica's N x cache."""
    from tests.tiny_model import build_tiny_llama

    args = prefix.parse_args(["--profile", "scarce-kv"])
    model_dir = build_tiny_llama(tmp_path / "tiny-llama")
    lengths = prefix.prompt_tokens(prefix.workload(args), args, model_dir)
    assert len(lengths) == 48 * 6
    budget = prefix.kv_budget(lengths, args.concurrency, args.replicas, args.kv_tokens)
    assert budget["fits_once_across_replicas"] and not budget["fits_on_every_replica"], budget
    assert budget["working_set_tokens"] <= budget["single_replica_kv_tokens"], budget
    assert budget["max_prompt_tokens"] + 8 <= args.max_model_len <= args.kv_tokens, budget


def test_hit_ceiling_counts_the_previous_prompt_in_whole_blocks() -> None:
    # Two conversations of 3 turns, prompts of 40, 100, 170 tokens, blocks of 32: turn 2 can hit 32 tokens (one
    # whole block of 40), turn 3 96 (three of 100), turn 1 nothing: (32 + 96) x 2 / (310 x 2) = 128 / 310.
    assert prefix.hit_ceiling([40, 100, 170, 40, 100, 170], turns=3, block_size=32) == 128 / 310
