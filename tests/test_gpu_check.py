"""The GPU check kit (bench/gpu_check.py): its pure parts, the plan it renders for the H200, and its dry run on this
CPU machine end to end (vLLM's CPU build, tiny shapes), so the kit is known to work before a GPU minute is spent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_check
from infra.models import lookup_model

ROOT = Path(__file__).resolve().parent.parent


def test_llama_parameters_match_published_counts() -> None:
    # Llama-3.1-8B: 8,030,261,248 parameters (the safetensors total of meta-llama/Llama-3.1-8B-Instruct).
    arch = lookup_model("llama-3.1-8b-instruct").model_dump()
    assert gpu_check.llama_parameters(arch) == 8_030_261_248
    # The dry run's shape, by hand: embeddings 2 x 8192 x 512 = 8,388,608; per layer q/o 2 x 512 x 512, k/v
    # 2 x 512 x 128, MLP 3 x 512 x 1792, norms 2 x 512 = 3,408,896; four layers and a final norm of 512.
    assert gpu_check.llama_parameters(gpu_check.tiny_architecture()) == 8_388_608 + 4 * 3_408_896 + 512


def test_startup_figures_are_read_from_gpu_and_cpu_log_lines() -> None:
    # GPU lines as vLLM V1 printed them for Qwen2-7B on an A100 (tests/test_capacity.py, dennislee22 log).
    gpu_log = (
        "(EngineCore_0 pid=1) INFO [gpu_model_runner.py:2007] Model loading took 14.2488 GiB and 5.1 seconds\n"
        "(EngineCore_0 pid=1) INFO [gpu_worker.py:276] Available KV cache memory: 24.83 GiB\n"
        "(EngineCore_0 pid=1) INFO [kv_cache_utils.py:849] GPU KV cache size: 464,848 tokens\n"
        "(EngineCore_0 pid=1) INFO [kv_cache_utils.py:853] Maximum concurrency for 16,384 tokens per request: 28.37x\n"
    )
    assert gpu_check.startup_log_figures(gpu_log) == {
        "weights_gib": 14.2488,
        "kv_cache_gib": 24.83,
        "kv_cache_tokens": 464_848,
        "max_concurrency": 28.37,
    }
    # CPU lines seen on this machine with vLLM 0.32's CPU build: no "Model loading took", the checkpoint's size.
    cpu_log = (
        "(Worker pid=2) INFO [weight_utils.py:1108] Filesystem type for checkpoints: EXT4. Checkpoint size: 0.04 GiB.\n"
        "(Worker pid=2) INFO [cpu_worker.py:260] Explicitly set (1.0/23.54) GiB for KV cache on node 0.\n"
        "(EngineCore pid=3) INFO [kv_cache_utils.py:2327] CPU KV cache size: 524,288 tokens, Maximum concurrency "
        "for 2,048 tokens per request: 256.00x\n"
        "(EngineCore pid=3) INFO [core.py:402] init engine (profile, create kv cache, warmup model) took 1.03 s\n"
    )
    assert gpu_check.startup_log_figures(cpu_log) == {
        "weights_gib": 0.04,
        "kv_cache_gib": 1.0,
        "kv_cache_tokens": 524_288,
        "max_concurrency": 256.0,
        "engine_init_seconds": 1.03,
    }


def test_metrics_sum_counters_and_keep_the_cache_config_labels() -> None:
    text = (
        "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
        'vllm:cache_config_info{block_size="16",num_gpu_blocks="56148",gpu_memory_utilization="0.9"} 1.0\n'
        'vllm:generation_tokens_total{model_name="a",engine="0"} 100.0\n'
        'vllm:generation_tokens_total{model_name="a",engine="1"} 28.0\n'
        'vllm:e2e_request_latency_seconds_bucket{le="1.0"} 3.0\n'
    )
    figures = gpu_check.metric_figures(text)
    assert figures["cache_config_info"]["num_gpu_blocks"] == "56148"
    assert figures["totals"] == {"vllm:generation_tokens_total": 128.0}
    assert gpu_check.vllm_figures({"metrics_at_start": figures}, {})["kv_cache_tokens"] == 56148 * 16


def test_error_is_relative_to_vllm_and_the_doc_keeps_what_is_outside_the_markers(tmp_path: Path) -> None:
    assert gpu_check.error_percent(95.0, 100.0) == pytest.approx(-5.0)
    doc = tmp_path / "capacity.md"
    doc.write_text("before\n<!-- gpu-check:gpu:begin -->\nold\n<!-- gpu-check:gpu:end -->\nafter\n")
    gpu_check.write_doc(doc, "gpu", "| new |\n")
    assert doc.read_text() == "before\n<!-- gpu-check:gpu:begin -->\n| new |\n<!-- gpu-check:gpu:end -->\nafter\n"
    with pytest.raises(SystemExit, match="no <!-- gpu-check:dry-run:begin -->"):
        gpu_check.write_doc(doc, "dry-run", "| new |\n")


def test_the_h200_plan_renders_each_case_as_the_project_would(tmp_path: Path) -> None:
    plan = gpu_check.prepare("p5en.48xlarge", tmp_path / "plan.json")
    cases = {case["name"]: case for case in plan["cases"]}
    assert json.loads((tmp_path / "plan.json").read_text()) == plan
    bf16, fp8, awq = cases["llama-bf16"]["args"], cases["llama-fp8"]["args"], cases["llama-awq"]["args"]
    assert bf16[bf16.index("--gpu-memory-utilization") + 1] == "0.9"
    assert "--quantization" not in bf16 and "--quantization" not in awq  # vLLM reads AWQ from the checkpoint
    assert fp8[fp8.index("--quantization") + 1] == "fp8"  # bf16 weights quantized on the fly
    assert awq[awq.index("--dtype") + 1] == "float16"
    assert "VLLM_CPU_KVCACHE_SPACE" not in cases["llama-bf16"]["env"]
    # By hand for Llama 3.1 8B bf16 on one H200 at 0.90: 139.81 x 0.9 = 125.829 GiB; weights 8.03e9 x 2 B =
    # 14.957 GiB; non-torch 0.3 GiB; profile peak 8192 tokens x 2 B x (3 x 14336 + 4 x 4096) = 0.906 GiB; KV left
    # 109.666 GiB / (16 tokens x 131,072 B) = 56,148 blocks = 898,368 tokens.
    planner = cases["llama-bf16"]["planner"]
    assert planner["gpu_memory_gib"] == 139.81
    assert planner["kv_cache_tokens"] == 898_368
    assert planner["problems"] == []


@pytest.mark.vllm
def test_dry_run_end_to_end_on_the_cpu_build(tmp_path: Path) -> None:
    pytest.importorskip("vllm", reason="needs the vLLM CPU build: scripts/install-vllm.sh")
    doc = tmp_path / "capacity.md"
    doc.write_text("# Capacity\n<!-- gpu-check:dry-run:begin -->\n<!-- gpu-check:dry-run:end -->\nend\n")
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "dry-run", "--out", str(out)]
    command += ["--work", str(tmp_path / "work"), "--doc", str(doc), "--budget-seconds", "300"]
    env = os.environ | {"PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=420, env=env, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    served = results["cases"]["llama-bf16"]
    assert served["status"] == "ok", served
    # By hand: KV bytes per token = 2 (K and V) x 4 layers x 2 KV heads x 64 x 2 B = 2,048; the rendered
    # VLLM_CPU_KVCACHE_SPACE of 1 GiB holds 2**30 / 2,048 = 524,288 tokens, 256 sequences of max_model_len 2048.
    assert served["log"]["kv_cache_tokens"] == 524_288
    assert served["log"]["max_concurrency"] == 256.0
    # Weights: 22,024,704 parameters x 2 B = 0.0410 GiB; vLLM's CPU build prints the checkpoint size to 2 decimals.
    assert served["log"]["weights_gib"] == 0.04
    assert served["throughput"]["requests"] == 48 and served["throughput"]["output_tokens_per_second"] > 0
    assert results["cases"]["llama-fp8"]["status"] == "skipped"
    # The AWQ-shaped checkpoint is built. By hand: 13,631,488 linear weights x (0.5 B of 4-bit code + 1/64 B of
    # fp16 scale + 1/256 B of zero) + 8,388,608 fp16 embedding weights x 2 B = 0.0222 GiB. Whether it is also
    # served depends on the budget left on a busy machine.
    assert results["environment"]["checkpoint_awq_gib"] == pytest.approx(0.022, abs=0.002)
    assert "| llama-bf16 | KV cache tokens | 524,288 | 524,288 | +0.0 (within 10 %) |" in doc.read_text()
    assert doc.read_text().endswith("<!-- gpu-check:dry-run:end -->\nend\n")
