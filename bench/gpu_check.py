"""GPU check kit: the capacity planner and the quantized serving paths against what a real vLLM reports.

A GPU machine is lent only at times and for minutes, with package registries but no model hub. The kit makes those
minutes count, in three steps, so that the GPU machine needs nothing but a Python and this file:

    # 1. here (needs the project): render the vLLM args for a stack on the lent GPU, and the planner's figures
    .venv/bin/python bench/gpu_check.py prepare --instance-type p5en.48xlarge
    # 2. on the GPU machine, one command (stdlib only; installs vLLM's CUDA build into build/gpu_check/venv):
    python3 bench/gpu_check.py measure --out "$OUT" --budget-seconds 420
    # 3. here: planner vs vLLM, error %, into docs/capacity.md
    .venv/bin/python bench/gpu_check.py report --results <OUT>/results.json

    # all three on this CPU machine (vLLM's CPU build, tiny shapes): what the test suite runs
    .venv/bin/python bench/gpu_check.py dry-run --out build/gpu_check/dry-run [--doc docs/capacity.md]

`measure` installs `vllm==VLLM_VERSION` from PyPI (timed; pip's cache and the venv stay under build/gpu_check, so a
rerun on a still-warm machine skips it), builds random-weight checkpoints with the catalog's real shapes (bf16
safetensors, and an AWQ-shaped one: random 4-bit codes need no calibration), starts `vllm serve` with the rendered
args (only --model, --host and --port swapped, as tests/vllm_server.py does), one case per GPU in parallel, and
records what vLLM reports: its start-up log lines, /metrics, and a short throughput run with the soak's request
shape (bench/soak.py: short chat prompts, half of them streamed). It writes results.json after every step and
prints its progress, so a run cut by its timeout still returns what it measured.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "gpu_check"
DEFAULT_PLAN = WORK / "plan.json"
DOC = ROOT / "docs" / "capacity.md"
GIB = 1024**3
HOST = "127.0.0.1"
# Paths vLLM writes to (the pod's volumes); each moves under the run's own folder, as in tests/vllm_server.py.
WRITTEN_PATH_VARS = ("HF_HOME", "HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "VLLM_CACHE_ROOT", "TMPDIR")
# The project's own request shape: bench/soak.py sends a short chat prompt with max_tokens 32, half streamed.
SOAK_PROMPT = "soak request {n}: tell me about foxes"
# The planner's target (issue 17): within 10 % of vLLM on KV cache tokens and weight memory.
TARGET_ERROR_PERCENT = 10.0
# vLLM 0.32 V1 start-up lines (vllm/v1/worker/gpu_model_runner.py load_model, gpu_worker.py
# determine_available_memory, v1/core/kv_cache_utils.py, v1/engine/core.py _initialize_kv_caches; on the CPU
# build, cpu_worker.py and weight_utils.py). Per figure, the first pattern that matches wins; the CPU build prints
# no "Model loading took" line, only the checkpoint's size (2 decimals) and the KV space it was given. Lines seen
# on this machine: "CPU KV cache size: 524,288 tokens, Maximum concurrency for 2,048 tokens per request: 256.00x",
# "Explicitly set (1.0/23.54) GiB for KV cache on node 0", "Checkpoint size: 0.04 GiB".
LOG_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("weights_gib", re.compile(r"Model loading took ([\d.]+) ?GiB")),
    ("weights_gib", re.compile(r"Checkpoint size: ([\d.]+) ?GiB")),
    ("kv_cache_gib", re.compile(r"Available KV cache memory: ([\d.]+) ?GiB")),
    ("kv_cache_gib", re.compile(r"Explicitly set \(([\d.]+)/[\d.]+\) GiB for KV cache")),
    ("kv_cache_tokens", re.compile(r"KV cache size: ([\d,]+) tokens")),
    ("max_concurrency", re.compile(r"Maximum concurrency for [\d,]+ tokens per request: ([\d.,]+)x")),
    ("engine_init_seconds", re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s")),
)


def log(message: str) -> None:
    """Progress for whoever watches the one command (stdout of the device run)."""
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- step 1: prepare (needs the project) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One vLLM start: a model block of the variant stack and the checkpoint it needs."""

    name: str
    checkpoint: str  # "bf16" (16-bit safetensors) or "awq" (AWQ GEMM, 4 bit, group 128)
    quantization: str  # the stack's `quantization`: what the planner budgets
    dtype: str
    gpu_only: bool = False  # the CPU build cannot serve it (FP8 dies loading weights: /work/shared/NOTES.md)


GPU_CASES = (
    Case("llama-bf16", "bf16", "none", "bfloat16"),
    # vLLM quantizes the bf16 checkpoint on the fly: the render passes --quantization fp8 (infra/models.py).
    Case("llama-fp8", "bf16", "fp8", "bfloat16", gpu_only=True),
    # AWQ runs in float16 (vllm awq.py get_supported_act_dtypes; infra/capacity.py _FLOAT16_ONLY).
    Case("llama-awq", "awq", "awq", "float16"),
)


def llama_parameters(arch: dict[str, Any]) -> int:
    """Parameters of a Llama of these shapes: embeddings (and an untied lm_head), attention, MLP, two norms per
    layer and the final norm."""
    hidden, heads, kv_heads = arch["hidden_size"], arch["num_attention_heads"], arch["num_key_value_heads"]
    head_dim = arch.get("head_dim") or hidden // heads
    attention = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden
    layer = attention + 3 * hidden * arch["intermediate_size"] + 2 * hidden
    embeddings = (1 if arch.get("tie_word_embeddings") else 2) * arch["vocab_size"] * hidden
    return int(embeddings + arch["num_hidden_layers"] * layer + hidden)


def tiny_architecture() -> dict[str, Any]:
    """The dry run's shape: Llama 3.1 8B's proportions (GQA 4:1, MLP 3.5 x hidden) at 1/8 of the width."""
    arch: dict[str, Any] = {
        "hidden_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "vocab_size": 8192,
        "intermediate_size": 1792,
        "max_position_embeddings": 4096,
    }
    return {**arch, "parameters_billion": llama_parameters(arch) / 1e9}


def _model_block(case: Case, arch: dict[str, Any], catalog: str | None, node_group: str | None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "name": case.name,
        # A placeholder repo: --model is swapped for the local checkpoint folder at start-up.
        "hf_model": f"gpu-check/{case.checkpoint}",
        "quantization": case.quantization,
        "checkpoint_quant_method": "awq" if case.checkpoint == "awq" else "none",
        "dtype": case.dtype,
    }
    block |= {"catalog": catalog} if catalog else {"architecture": arch}
    if node_group is not None:
        block |= {"node_group": node_group, "max_model_len": 8192, "gpu_memory_utilization": 0.90}
        block |= {"max_num_seqs": 32}
    else:
        block |= {"max_model_len": 2048, "max_num_seqs": 16, "enforce_eager": True, "cpu_kv_cache_gib": 1}
        block |= {"resources_cpu": "2", "resources_memory": "6Gi"}
    return block


def variant_config(stack: str, cases: tuple[Case, ...], instance_type: str | None, catalog: str | None) -> dict:
    """The stack file's config with its models replaced by the cases (on one node group of `instance_type`)."""
    import copy

    from infra.config import PLATFORM_KEY
    from infra.render import read_stack_file

    config = copy.deepcopy(read_stack_file(stack))
    platform = config[PLATFORM_KEY]
    arch = tiny_architecture()
    node_group = None
    if instance_type is not None:
        node_group = "gpu-check"
        # A Karpenter pool (the default provisioner): no fixed size, one node at most.
        scaling = {"min_size": 0, "desired_size": 0, "max_size": 1}
        group = {"name": node_group, "instance_types": [instance_type], "capacity_type": "ON_DEMAND"}
        platform["gpu_node_groups"] = [group | {"scaling": scaling}]
    platform["models"] = [_model_block(case, arch, catalog, node_group) for case in cases]
    # Routes and prices name the stack's own models; the variant serves only the cases.
    gateway = platform.get("gateway", {})
    for key in ("routes", "pricing", "semantic_alias"):
        gateway.pop(key, None)
    return config


def rendered_containers(stack: str, config: dict) -> dict[str, dict[str, Any]]:
    """The vLLM container of each model's Deployment, as the project renders the variant stack."""
    from infra import render

    containers = {}
    for obj in render.run(stack, config=config).kubernetes_objects():
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] == "Deployment" and labels.get("app.kubernetes.io/name") == "vllm":
            spec = obj["spec"]["template"]["spec"]
            container = next(item for item in spec["containers"] if item["name"] == "vllm")
            containers[labels["app.kubernetes.io/instance"]] = container
    return containers


def planner_figures(block: dict[str, Any], instance_type: str | None, kv_space_gib: int | None) -> dict[str, Any]:
    """What infra/capacity.py promises for one model block. On the CPU (no instance) only the figures that do not
    depend on GPU memory: weights, KV bytes per token, and the tokens the CPU KV space holds."""
    from infra.capacity import BLOCK_SIZE, plan_capacity, startup_seconds
    from infra.models import ModelArchitecture

    model = block.get("catalog") or ModelArchitecture(**block["architecture"])
    plan = plan_capacity(
        model,
        instance_type or "m6i.large",  # a CPU row: the planner lists "no GPU" and still sizes weights and KV
        max_model_len=block["max_model_len"],
        quantization=block["quantization"],
        dtype=block["dtype"],
        max_num_seqs=block["max_num_seqs"],
        gpu_memory_utilization=block.get("gpu_memory_utilization", 0.90),
    )
    figures: dict[str, Any] = {
        "weights_gib": plan.weight_bytes_per_gpu / GIB,
        "kv_bytes_per_token": plan.kv_cache_bytes_per_token_per_gpu,
    }
    if instance_type is None:
        assert kv_space_gib is not None
        per_block = BLOCK_SIZE * plan.kv_cache_bytes_per_token_per_gpu
        tokens = kv_space_gib * GIB // per_block * BLOCK_SIZE
        concurrency = tokens / block["max_model_len"]
        return figures | {
            "kv_cache_gib": float(kv_space_gib),
            "kv_cache_tokens": tokens,
            "max_concurrency": concurrency,
        }
    return figures | {
        "gpu_memory_gib": plan.gpu_memory_gib,
        "kv_cache_gib": plan.kv_cache_memory_bytes_per_gpu / GIB,
        "kv_cache_tokens": plan.kv_cache_tokens,
        "max_concurrency": plan.max_concurrency,
        "startup_seconds": startup_seconds(plan),
        "problems": plan.problems,
    }


def prepare(instance_type: str | None, plan_path: Path, catalog: str = "llama-3.1-8b-instruct") -> dict[str, Any]:
    """Render the variant stack and write the plan `measure` needs: per case its args, plain env, checkpoint shape
    and the planner's figures. `instance_type` None: the dry run (the `local` stack, CPU backend, tiny shapes)."""
    from components.vllm_deployment import VLLM_VERSION
    from infra.models import lookup_model

    dry = instance_type is None
    stack = "local" if dry else "dev"
    cases = GPU_CASES
    config = variant_config(stack, cases, instance_type, None if dry else catalog)
    containers = rendered_containers(stack, config)
    blocks = {block["name"]: block for block in config["llm-serving:platform"]["models"]}
    arch = tiny_architecture() if dry else lookup_model(catalog).model_dump(exclude={"hf_repo_id"})
    plan_cases = []
    for case in cases:
        container = containers[case.name]
        env = {item["name"]: str(item["value"]) for item in container.get("env", []) if "value" in item}
        kv_space = int(env["VLLM_CPU_KVCACHE_SPACE"]) if dry else None
        plan_cases.append(
            {
                "name": case.name,
                "checkpoint": case.checkpoint,
                "dtype": case.dtype,
                "gpu_only": case.gpu_only,
                "args": list(container["args"]),
                "env": env,
                "planner": planner_figures(blocks[case.name], instance_type, kv_space),
            }
        )
    plan = {
        "mode": "dry-run" if dry else "gpu",
        "stack": stack,
        "instance_type": instance_type,
        "model": "tiny Llama (8B proportions)" if dry else catalog,
        "architecture": arch,
        "vllm_version": VLLM_VERSION,
        # Soak-shaped requests; on the GPU as many clients as the rendered --max-num-seqs, longer answers.
        "workload": {"requests": 48 if dry else 512, "max_tokens": 32 if dry else 128},
        "cases": plan_cases,
    }
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_text(json.dumps(plan, indent=2) + "\n")
    log(f"plan for {plan['mode']} ({instance_type or 'CPU'}): {len(plan_cases)} cases -> {plan_path}")
    return plan


# ---- step 2: measure (stdlib only until the venv exists) --------------------------------------------------------


def build_checkpoint(directory: Path, arch: dict[str, Any], kind: str, dtype: str) -> None:
    """Random weights with `arch`'s real shapes, written as vLLM reads them: config.json, safetensors shards (with
    their index) and a word-level tokenizer covering the whole vocabulary (so every sampled id decodes). Runs in the
    venv that has vLLM (torch, transformers, safetensors, tokenizers); on the GPU the tensors are drawn there."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    sys.path.insert(0, str(ROOT))
    from tests.tiny_model import CHAT_TEMPLATE, SPECIAL_TOKENS

    directory.mkdir(parents=True, exist_ok=True)
    words = [*SPECIAL_TOKENS, "<unk>", *sorted(set(re.findall(r"\w+|[^\w\s]+", SOAK_PROMPT.format(n=0))))]
    vocab = {token: index for index, token in enumerate(words)}
    vocab |= {f"<t{index}>": index for index in range(len(vocab), arch["vocab_size"])}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level, bos_token="<|begin|>", eos_token="<|end|>", pad_token="<|pad|>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    config = LlamaConfig(
        **{key: arch[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")},
        num_key_value_heads=arch["num_key_value_heads"],
        head_dim=arch.get("head_dim") or arch["hidden_size"] // arch["num_attention_heads"],
        intermediate_size=arch["intermediate_size"],
        max_position_embeddings=arch["max_position_embeddings"],
        tie_word_embeddings=False,
        bos_token_id=vocab["<|begin|>"],
        eos_token_id=vocab["<|end|>"],
        pad_token_id=vocab["<|pad|>"],
    )
    config_dict = config.to_dict() | {"torch_dtype": dtype, "architectures": ["LlamaForCausalLM"]}
    if kind == "awq":
        # AutoAWQ GEMM layout (vllm/model_executor/layers/quantization/awq.py AWQLinearMethod.create_weights).
        config_dict["quantization_config"] = {
            "quant_method": "awq",
            "bits": 4,
            "group_size": 128,
            "zero_point": True,
            "version": "gemm",
        }
    (directory / "config.json").write_text(json.dumps(config_dict, indent=2))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=device).manual_seed(0)

    def normal(*shape: int) -> Any:
        return (torch.randn(*shape, generator=generator, device=device, dtype=torch.float32) * 0.02).to(torch_dtype)

    def linear(name: str, out_features: int, in_features: int) -> dict[str, Any]:
        if kind != "awq":
            return {f"{name}.weight": normal(out_features, in_features).cpu()}
        groups, packed = in_features // 128, out_features // 8
        codes = torch.randint(-(2**31), 2**31 - 1, (in_features, packed), generator=generator, device=device)
        # Zero point 8 in every nibble; scales so that (code - 8) x scale has about the bf16 init's 0.02 spread.
        zeros = torch.full((groups, packed), -2004318072, dtype=torch.int32)  # 0x88888888
        scales = torch.full((groups, out_features), 0.0043, dtype=torch.float16)
        return {f"{name}.qweight": codes.to(torch.int32).cpu(), f"{name}.qzeros": zeros, f"{name}.scales": scales}

    hidden, layers = arch["hidden_size"], arch["num_hidden_layers"]
    head_dim = config_dict["head_dim"]
    q_width, kv_width = arch["num_attention_heads"] * head_dim, arch["num_key_value_heads"] * head_dim
    shard_count = layers + 2
    weight_map: dict[str, str] = {}

    def save(tensors: dict[str, Any]) -> None:
        # One shard at a time: an 8B checkpoint never sits in host memory whole.
        file_name = f"model-{len(set(weight_map.values())) + 1:05d}-of-{shard_count:05d}.safetensors"
        save_file({name: tensor.contiguous() for name, tensor in tensors.items()}, directory / file_name)
        weight_map.update(dict.fromkeys(tensors, file_name))

    save(
        {
            "model.embed_tokens.weight": normal(arch["vocab_size"], hidden).cpu(),
            "model.norm.weight": torch.ones(hidden, dtype=torch_dtype),
        }
    )
    save({"lm_head.weight": normal(arch["vocab_size"], hidden).cpu()})
    for layer in range(layers):
        prefix = f"model.layers.{layer}"
        # Separate tensors: safetensors refuses two names over one storage.
        tensors = {
            f"{prefix}.{norm}.weight": torch.ones(hidden, dtype=torch_dtype)
            for norm in ("input_layernorm", "post_attention_layernorm")
        }
        for proj, out_features, in_features in (
            ("self_attn.q_proj", q_width, hidden),
            ("self_attn.k_proj", kv_width, hidden),
            ("self_attn.v_proj", kv_width, hidden),
            ("self_attn.o_proj", hidden, q_width),
            ("mlp.gate_proj", arch["intermediate_size"], hidden),
            ("mlp.up_proj", arch["intermediate_size"], hidden),
            ("mlp.down_proj", hidden, arch["intermediate_size"]),
        ):
            tensors |= linear(f"{prefix}.{proj}", out_features, in_features)
        save(tensors)
    index_file = {"metadata": {}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index_file, indent=2))
    (directory / "complete").write_text("ok\n")


@dataclass
class Runner:
    """Where `measure` keeps its state: the Python with vLLM, the results so far, the deadline."""

    out: Path
    python: Path
    deadline: float
    # Checkpoints, run folders, compile caches: kept between runs (build/gpu_check, ignored by git).
    work: Path = WORK
    results: dict[str, Any] = field(default_factory=lambda: {"environment": {}, "cases": {}})

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2) + "\n")

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _run_quiet(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {result.returncode}:\n{tail}")


def install_vllm(version: str, venv: Path) -> tuple[Path, float]:
    """vLLM's CUDA build from PyPI into `venv` (kept: a rerun on a warm machine reuses it); (python, seconds)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import importlib.metadata as m, vllm; print(m.version('vllm'))"]
    if python.exists() and subprocess.run(probe, capture_output=True, text=True).stdout.strip() == version:
        log(f"vllm {version} already in {venv}")
        return python, 0.0
    start = time.monotonic()
    log(f"installing vllm=={version} (CUDA build, PyPI) into {venv}; pip log: {venv.parent / 'pip.log'}")
    pip_log = venv.parent / "pip.log"
    _run_quiet([sys.executable, "-m", "venv", str(venv)], pip_log)
    env = os.environ | {"PIP_CACHE_DIR": str(venv.parent / "pip-cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run_quiet([str(python), "-m", "pip", "install", "--progress-bar", "off", f"vllm=={version}"], pip_log, env)
    seconds = time.monotonic() - start
    log(f"installed vllm {version} in {seconds:.0f} s")
    return python, seconds


def gpu_environment(python: Path) -> dict[str, Any]:
    """The GPUs as PyTorch sees them (the figure vLLM multiplies by gpu_memory_utilization)."""
    script = (
        "import json, torch\n"
        "n = torch.cuda.device_count()\n"
        "info = [torch.cuda.mem_get_info(i) for i in range(n)]\n"
        "print(json.dumps({'gpus': n, 'name': torch.cuda.get_device_name(0) if n else None,"
        " 'total_gib': [t / 2**30 for _, t in info], 'free_gib': [f / 2**30 for f, _ in info],"
        " 'torch': torch.__version__, 'cuda': torch.version.cuda}))\n"
    )
    result = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return {"error": result.stderr.strip()[-2000:]}
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def checkpoints(runner: Runner, plan: dict[str, Any], root: Path) -> dict[str, Path]:
    """Build each checkpoint kind the cases need once (kept across reruns: a `complete` file marks a whole one)."""
    built = {}
    for kind in sorted({case["checkpoint"] for case in plan["cases"]}):
        dtype = next(case["dtype"] for case in plan["cases"] if case["checkpoint"] == kind)
        directory = root / f"{kind}-{plan['architecture']['hidden_size']}"
        if not (directory / "complete").exists():
            shutil.rmtree(directory, ignore_errors=True)
            start = time.monotonic()
            if runner.python == Path(sys.executable):
                build_checkpoint(directory, plan["architecture"], kind, dtype)  # torch is here already
            else:
                command = [str(runner.python), __file__, "build-checkpoint", "--dir", str(directory), "--kind", kind]
                command += ["--dtype", dtype, "--arch", json.dumps(plan["architecture"])]
                _run_quiet(command, root / "build.log")
            runner.results["environment"][f"checkpoint_{kind}_seconds"] = round(time.monotonic() - start, 1)
            log(f"built the {kind} checkpoint in {time.monotonic() - start:.0f} s: {directory}")
        size = sum(path.stat().st_size for path in directory.glob("*.safetensors"))
        runner.results["environment"][f"checkpoint_{kind}_gib"] = round(size / GIB, 4)
        built[kind] = directory
    return built


def _swap(args: list[str], flag: str, value: str) -> list[str]:
    index = args.index(flag)
    return [*args[: index + 1], value, *args[index + 2 :]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    case: dict[str, Any]
    process: subprocess.Popen[bytes]
    root_url: str
    model: str
    api_key: str
    log_path: Path
    started: float
    tmp_dir: str
    healthy_after: float | None = None


def start_server(runner: Runner, case: dict[str, Any], model_dir: Path, run_dir: Path, gpu: int | None) -> Server:
    """`vllm serve` with the rendered args and env; only --model, --host and --port differ from the pod."""
    port = _free_port()
    args = _swap(_swap(_swap(list(case["args"]), "--model", str(model_dir)), "--host", HOST), "--port", str(port))
    env = dict(os.environ) | dict(case["env"])
    for name in WRITTEN_PATH_VARS:
        env[name] = str(run_dir / name.lower())
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    # vLLM puts ZeroMQ IPC sockets in TMPDIR, and a socket path may not exceed 107 bytes (sockaddr_un.sun_path):
    # a deep run folder (pytest's tmp_path) fails with "ipc path ... is longer than 107 characters".
    env["TMPDIR"] = tempfile.mkdtemp(prefix="gpu-check-")
    # The compile cache outlives the run folder: a rerun on a warm machine starts faster, as a restarted pod does.
    env["VLLM_CACHE_ROOT"] = str(runner.work / "vllm-cache" / case["name"])
    api_key = f"gpu-check-{port}"
    env |= {"VLLM_API_KEY": api_key, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    env.pop("HF_TOKEN", None)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    vllm = runner.python.parent / "vllm"
    log_path = runner.out / f"{case['name']}.log"
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            [str(vllm), "serve", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # vLLM forks an engine core: stop() signals the whole group
        )
    served = args[args.index("--served-model-name") + 1]
    log(f"{case['name']}: vllm serve started (pid {process.pid}, port {port}{'' if gpu is None else f', GPU {gpu}'})")
    return Server(case, process, f"http://{HOST}:{port}", served, api_key, log_path, time.monotonic(), env["TMPDIR"])


def wait_healthy(server: Server, deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"exited with {server.process.returncode} before /health:\n{_tail(server.log_path)}")
        with (
            suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{server.root_url}/health", timeout=2) as response,
        ):
            if response.status == 200:
                server.healthy_after = time.monotonic() - server.started
                return
        time.sleep(0.5)
    raise RuntimeError(f"not healthy before the run's deadline:\n{_tail(server.log_path)}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=20)
    shutil.rmtree(server.tmp_dir, ignore_errors=True)
    with suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=20)


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def startup_log_figures(text: str) -> dict[str, float]:
    """The figures vLLM prints at start-up (LOG_PATTERNS); the last match wins (one engine per server here)."""
    figures: dict[str, float] = {}
    for key, pattern in LOG_PATTERNS:
        matches = pattern.findall(text)
        if matches and key not in figures:
            figures[key] = float(matches[-1].replace(",", ""))
    return figures


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")


def metric_figures(text: str) -> dict[str, Any]:
    """Counters summed over label sets, plus the labels of vllm:cache_config_info (num_gpu_blocks, block_size)."""
    totals: dict[str, float] = {}
    cache_info: dict[str, str] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels = match["name"], match["labels"] or ""
        if name == "vllm:cache_config_info":
            cache_info = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        elif name.endswith(("_total", "_sum", "_count")) and "_bucket" not in name:
            with suppress(ValueError):
                totals[name] = totals.get(name, 0.0) + float(match["value"])
    return {"cache_config_info": cache_info, "totals": totals}


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def one_request(server: Server, index: int, max_tokens: int) -> dict[str, float]:
    """One soak-shaped chat completion; every other one streamed (time to first token from the client's side)."""
    stream = index % 2 == 1
    body: dict[str, Any] = {
        "model": server.model,
        "messages": [{"role": "user", "content": SOAK_PROMPT.format(n=index)}],
        "max_tokens": max_tokens,
        # Random weights may sample the end token at once: a fixed answer length keeps runs comparable.
        "ignore_eos": True,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    request = urllib.request.Request(
        f"{server.root_url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"},
    )
    start = time.monotonic()
    first = None
    usage: dict[str, Any] = {}
    with urllib.request.urlopen(request, timeout=120) as response:
        if not stream:
            usage = json.loads(response.read())["usage"]
        for raw in response if stream else ():
            line = raw.decode().strip()
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if first is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                first = time.monotonic() - start
            usage = chunk.get("usage") or usage
    result = {"seconds": time.monotonic() - start, "completion_tokens": float(usage.get("completion_tokens", 0))}
    return result | ({"ttft_seconds": first} if first is not None else {})


def throughput(server: Server, requests: int, max_tokens: int) -> dict[str, Any]:
    """`requests` soak-shaped requests from as many clients as --max-num-seqs (the batch vLLM may run at once)."""
    args = server.case["args"]
    clients = int(args[args.index("--max-num-seqs") + 1])
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        done = list(pool.map(lambda index: one_request(server, index, max_tokens), range(requests)))
    wall = time.monotonic() - start
    tokens = sum(item["completion_tokens"] for item in done)
    latencies = sorted(item["seconds"] for item in done)
    ttfts = sorted(item["ttft_seconds"] for item in done if "ttft_seconds" in item)
    return {
        "clients": clients,
        "requests": requests,
        "max_tokens": max_tokens,
        "wall_seconds": round(wall, 2),
        "requests_per_second": round(requests / wall, 2),
        "output_tokens_per_second": round(tokens / wall, 1),
        "latency_p50_seconds": round(latencies[len(latencies) // 2], 3),
        "ttft_p50_seconds": round(ttfts[len(ttfts) // 2], 3) if ttfts else None,
    }


def measure_case(runner: Runner, server: Server, workload: dict[str, int]) -> None:
    name = server.case["name"]
    record: dict[str, Any] = {"status": "ok", "startup_seconds": round(server.healthy_after or 0.0, 1)}
    record["log"] = startup_log_figures(server.log_path.read_text(errors="replace"))
    record["metrics_at_start"] = metric_figures(_get(f"{server.root_url}/metrics"))
    log(f"{name}: healthy after {record['startup_seconds']} s; vLLM reports {record['log']}")
    runner.results["cases"][name] = record
    runner.save()
    record["throughput"] = throughput(server, workload["requests"], workload["max_tokens"])
    after = metric_figures(_get(f"{server.root_url}/metrics"))["totals"]
    keep = ("generation_tokens_total", "prompt_tokens_total", "num_preemptions_total", "request_success_total")
    record["metrics_after_run"] = {key: value for key, value in after.items() if key.endswith(keep)}
    log(f"{name}: throughput {record['throughput']}")
    runner.save()


def _run_batch(runner: Runner, batch: list[dict[str, Any]], built: dict[str, Path], plan: dict[str, Any]) -> None:
    servers = []
    try:
        for slot, case in enumerate(batch):
            gpu = slot if plan["mode"] == "gpu" else None
            run_dir = runner.work / "runs" / case["name"]
            servers.append(start_server(runner, case, built[case["checkpoint"]], run_dir, gpu))
        for server in servers:
            try:
                wait_healthy(server, runner.deadline)
                measure_case(runner, server, plan["workload"])
            except (RuntimeError, OSError, KeyError, ValueError) as error:
                runner.results["cases"][server.case["name"]] = {"status": "failed", "reason": str(error)[-3000:]}
                log(f"{server.case['name']}: FAILED: {str(error)[-600:]}")
                runner.save()
    finally:
        for server in servers:
            stop_server(server)


def measure(
    plan_path: Path, out: Path, budget_seconds: float, python: Path | None = None, work: Path = WORK
) -> dict[str, Any]:
    """Install (GPU), build checkpoints, serve each case, record; results.json is rewritten after every step."""
    plan = json.loads(plan_path.read_text())
    runner = Runner(out, python or Path(sys.executable), time.monotonic() + budget_seconds, work)
    out.mkdir(parents=True, exist_ok=True)
    if plan_path.resolve() != (out / "plan.json").resolve():
        shutil.copy(plan_path, out / "plan.json")
    environment = runner.results["environment"]
    environment |= {"mode": plan["mode"], "vllm_version": plan["vllm_version"], "budget_seconds": budget_seconds}
    if python is None:
        runner.python, environment["install_seconds"] = install_vllm(plan["vllm_version"], work / "venv")
    if plan["mode"] == "gpu":
        environment["gpu"] = gpu_environment(runner.python)
        log(f"GPUs: {environment['gpu']}")
    runner.save()
    built = checkpoints(runner, plan, work / "checkpoints")
    runner.save()
    cases = []
    for case in plan["cases"]:
        if case["gpu_only"] and plan["mode"] != "gpu":
            runner.results["cases"][case["name"]] = {"status": "skipped", "reason": "GPU only (CPU build cannot)"}
        else:
            cases.append(case)
    # One GPU per case, all at once: the start-ups overlap (each figure is per GPU, so they do not interfere, bar
    # the CPU time of torch.compile). The CPU dry run serves one at a time on its two cores.
    width = max(1, min(len(cases), int(environment.get("gpu", {}).get("gpus") or 1)))
    for first in range(0, len(cases), width):
        batch = cases[first : first + width]
        if runner.left() < 60:
            for case in batch:
                runner.results["cases"][case["name"]] = {"status": "skipped", "reason": "the run's budget ran out"}
            continue
        _run_batch(runner, batch, built, plan)
    environment["total_seconds"] = round(budget_seconds - runner.left(), 1)
    runner.save()
    log(f"done in {environment['total_seconds']} s: {out / 'results.json'}")
    return runner.results


# ---- step 3: report (planner vs vLLM) ---------------------------------------------------------------------------

# (key, label, is it one of the 10 % targets)
FIGURES = (
    ("gpu_memory_gib", "GPU memory PyTorch sees (GiB)", False),
    ("weights_gib", "weights (GiB)", True),
    ("kv_cache_gib", "KV cache memory (GiB)", False),
    ("kv_cache_tokens", "KV cache tokens", True),
    ("max_concurrency", "max concurrency at max_model_len (x)", False),
    ("startup_seconds", "start-up to /health (s)", False),
)


def vllm_figures(record: dict[str, Any], environment: dict[str, Any]) -> dict[str, float]:
    figures = dict(record.get("log", {}))
    info = record.get("metrics_at_start", {}).get("cache_config_info", {})
    if "kv_cache_tokens" not in figures and info.get("num_gpu_blocks") and info.get("block_size"):
        figures["kv_cache_tokens"] = float(info["num_gpu_blocks"]) * float(info["block_size"])
    if record.get("startup_seconds"):
        figures["startup_seconds"] = record["startup_seconds"]
    totals = environment.get("gpu", {}).get("total_gib")
    if totals:
        figures["gpu_memory_gib"] = totals[0]
    return figures


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def error_percent(planner: float, measured: float) -> float:
    """(planner - vLLM) / vLLM: negative when the planner promises less than vLLM gives (the safe side)."""
    return (planner - measured) / measured * 100


def comparison_rows(plan: dict[str, Any], results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for case in plan["cases"]:
        record = results["cases"].get(case["name"], {"status": "not run"})
        if record.get("status") != "ok":
            rows.append({"case": case["name"], "status": record.get("status"), "reason": record.get("reason", "")})
            continue
        measured = vllm_figures(record, results["environment"])
        for key, label, target in FIGURES:
            if key in case["planner"] and key in measured:
                planner, value = float(case["planner"][key]), float(measured[key])
                error = error_percent(planner, value) if value else math.nan
                rows.append(
                    {
                        "case": case["name"],
                        "figure": label,
                        "planner": planner,
                        "vllm": value,
                        "error_percent": error,
                        "target": target,
                    }
                )
    return rows


def markdown(plan: dict[str, Any], results: dict[str, Any], date: str) -> str:
    environment = results["environment"]
    where = plan["instance_type"] or "this CPU machine (vLLM's CPU build)"
    gpu = environment.get("gpu", {})
    lines = [
        f"Run of {date}: {plan['model']} on {where}, vLLM {plan['vllm_version']}"
        + (f", {gpu.get('gpus')} x {gpu.get('name')} (torch {gpu.get('torch')}, CUDA {gpu.get('cuda')})" if gpu else "")
        + (f"; install {environment['install_seconds']:.0f} s" if "install_seconds" in environment else "")
        + f"; whole run {environment.get('total_seconds')} s.",
        "",
        "| case | figure | planner | vLLM | error % |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in comparison_rows(plan, results):
        if "figure" not in row:
            lines.append(f"| {row['case']} | {row['status']}: {row['reason'][:120]} | | | |")
            continue
        mark = ""
        if row["target"]:
            mark = " (within 10 %)" if abs(row["error_percent"]) <= TARGET_ERROR_PERCENT else " (OUTSIDE 10 %)"
        error = "n/a" if math.isnan(row["error_percent"]) else f"{row['error_percent']:+.1f}{mark}"
        lines.append(
            f"| {row['case']} | {row['figure']} | {_number(row['planner'])} | {_number(row['vllm'])} | {error} |"
        )
    lines += ["", "| case | clients | requests/s | output tokens/s | p50 latency (s) | p50 TTFT, streamed (s) |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for case in plan["cases"]:
        run = results["cases"].get(case["name"], {}).get("throughput")
        if run:
            lines.append(
                f"| {case['name']} | {run['clients']} | {run['requests_per_second']} | "
                f"{run['output_tokens_per_second']} | {run['latency_p50_seconds']} | {run['ttft_p50_seconds']} |"
            )
    return "\n".join(lines) + "\n"


def write_doc(doc: Path, mode: str, table: str) -> None:
    """Replace the text between `<!-- gpu-check:MODE:begin -->` and `...:end -->` in `doc`."""
    begin, end = f"<!-- gpu-check:{mode}:begin -->", f"<!-- gpu-check:{mode}:end -->"
    text = doc.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{doc}: no {begin} ... {end} markers; add them where the {mode} table belongs")
    head, rest = text.split(begin, 1)
    doc.write_text(f"{head}{begin}\n{table}{end}{rest.split(end, 1)[1]}")


def report(results_path: Path, doc: Path | None) -> str:
    results = json.loads(results_path.read_text())
    plan = json.loads((results_path.parent / "plan.json").read_text())
    table = markdown(plan, results, time.strftime("%Y-%m-%d"))
    if doc is not None:
        write_doc(doc, plan["mode"], table)
        log(f"wrote the {plan['mode']} table into {doc}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_cmd = commands.add_parser("prepare", help="render the GPU stack variant and the planner's figures")
    prepare_cmd.add_argument("--instance-type", default="p5en.48xlarge")
    prepare_cmd.add_argument("--plan", type=Path, default=DEFAULT_PLAN)
    measure_cmd = commands.add_parser("measure", help="on the GPU machine: install vLLM, serve each case, record")
    measure_cmd.add_argument("--plan", type=Path, default=DEFAULT_PLAN)
    measure_cmd.add_argument("--out", type=Path, required=True)
    measure_cmd.add_argument("--budget-seconds", type=float, default=420)
    measure_cmd.add_argument("--python", type=Path, default=None, help="a Python with vLLM already (skips install)")
    report_cmd = commands.add_parser("report", help="planner vs vLLM into docs/capacity.md")
    report_cmd.add_argument("--results", type=Path, required=True)
    report_cmd.add_argument("--doc", type=Path, default=DOC)
    dry = commands.add_parser("dry-run", help="all three steps on this CPU machine with tiny shapes")
    dry.add_argument("--out", type=Path, default=WORK / "dry-run")
    dry.add_argument("--doc", type=Path, default=None, help="write the table here (docs/capacity.md)")
    dry.add_argument("--budget-seconds", type=float, default=240)
    dry.add_argument("--work", type=Path, default=WORK, help="checkpoints, run folders and caches")
    build = commands.add_parser("build-checkpoint", help="(internal) run inside the vLLM venv")
    build.add_argument("--dir", type=Path, required=True)
    build.add_argument("--kind", choices=["bf16", "awq"], required=True)
    build.add_argument("--dtype", choices=["bfloat16", "float16"], required=True)
    build.add_argument("--arch", required=True, help="the architecture as JSON")
    args = parser.parse_args(argv)
    if args.command in ("prepare", "dry-run", "report"):
        sys.path.insert(0, str(ROOT))
    if args.command == "prepare":
        prepare(args.instance_type, args.plan)
    elif args.command == "measure":
        measure(args.plan, args.out, args.budget_seconds, python=args.python)
    elif args.command == "report":
        print(report(args.results, args.doc))
    elif args.command == "dry-run":
        plan_path = args.out / "plan.json"
        prepare(None, plan_path)
        measure(plan_path, args.out, args.budget_seconds, python=Path(sys.executable), work=args.work)
        print(report(args.out / "results.json", args.doc))
    else:
        build_checkpoint(args.dir, json.loads(args.arch), args.kind, args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
