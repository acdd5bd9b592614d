"""Every argument list the stacks render is parsed by vLLM's own `vllm serve` parser (the release we pin), so a flag
or choice that this vLLM does not know fails here, not in a crash-looping pod."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from components.vllm_deployment import VLLM_VERSION
from infra import render
from tests.conftest import rendered
from tests.tiny_model import build_tiny_llama

pytestmark = pytest.mark.vllm


def _vllm_containers(stack: str) -> list[dict[str, Any]]:
    return [
        container
        for obj in rendered(stack).kubernetes_objects()
        if obj["kind"] == "Deployment" and obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "vllm"
        for container in obj["spec"]["template"]["spec"]["containers"]
        if container["name"] == "vllm"
    ]


def _served_name(args: list[str]) -> str:
    return args[args.index("--served-model-name") + 1]


RENDERED = [
    pytest.param(container["args"], id=f"{stack}-{_served_name(container['args'])}")
    for stack in render.stack_names()
    for container in _vllm_containers(stack)
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Model folders are local; nothing here may reach the hub or send usage stats.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLLM_NO_USAGE_STATS", "1")


@pytest.fixture(scope="module")
def serve_parser() -> argparse.ArgumentParser:
    pytest.importorskip("vllm", reason="needs the vLLM CPU build: scripts/install-vllm.sh")
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser())


def test_the_installed_vllm_is_the_pinned_release() -> None:
    vllm = pytest.importorskip("vllm")
    assert vllm.__version__.split("+")[0] == VLLM_VERSION


def test_every_stack_renders_vllm_containers() -> None:
    assert {stack for stack in render.stack_names() if _vllm_containers(stack)} == set(render.stack_names())


@pytest.mark.parametrize("args", RENDERED)
def test_vllm_parses_the_rendered_arguments(serve_parser: argparse.ArgumentParser, args: list[str]) -> None:
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args

    parsed = serve_parser.parse_args(args)
    validate_parsed_serve_args(parsed)
    assert parsed.model == args[args.index("--model") + 1]
    assert parsed.served_model_name == [args[args.index("--served-model-name") + 1]]
    assert parsed.port == 8000
    assert parsed.max_model_len == int(args[args.index("--max-model-len") + 1])
    assert parsed.tensor_parallel_size == int(args[args.index("--tensor-parallel-size") + 1])
    assert parsed.enable_prefix_caching is ("--enable-prefix-caching" in args)
    assert parsed.api_key is None, "the API key must come from VLLM_API_KEY, never the command line"


def test_the_parser_rejects_an_unknown_flag(serve_parser: argparse.ArgumentParser) -> None:
    # The check above is only worth something if the parser does refuse what it does not know.
    with pytest.raises(SystemExit) as exit_info:
        serve_parser.parse_args(["--model", "m", "--no-such-flag", "1"])
    assert exit_info.value.code == 2


def test_engine_config_accepts_the_local_stack_with_a_real_model(
    serve_parser: argparse.ArgumentParser, tmp_path: Path
) -> None:
    """One level deeper than parsing: vLLM builds its engine config (dtype, lengths, cache, scheduler) from the
    local stack's arguments, given a model folder with a config.json."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    model_dir = build_tiny_llama(tmp_path / "tiny-llama")
    args = list(_vllm_containers("local")[0]["args"])
    args[args.index("--model") + 1] = str(model_dir)
    engine_config = AsyncEngineArgs.from_cli_args(serve_parser.parse_args(args)).create_engine_config()
    assert engine_config.model_config.max_model_len == int(args[args.index("--max-model-len") + 1])
    assert str(engine_config.model_config.dtype) == "torch.bfloat16"
    assert engine_config.scheduler_config.max_num_seqs == int(args[args.index("--max-num-seqs") + 1])
    assert engine_config.cache_config.enable_prefix_caching is True


def test_engine_config_catches_a_length_beyond_the_model(serve_parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    from vllm.engine.arg_utils import AsyncEngineArgs

    model_dir = build_tiny_llama(tmp_path / "tiny-llama", max_position_embeddings=1024)
    args = list(_vllm_containers("local")[0]["args"])
    args[args.index("--model") + 1] = str(model_dir)
    with pytest.raises(Exception, match=r"max_model_len|max_position_embeddings"):
        AsyncEngineArgs.from_cli_args(serve_parser.parse_args(args)).create_engine_config()


# --- quantization: the rendered flags against each checkpoint's own method ------------------------------------------

# What vLLM 0.32 resolves `quantization` to for each catalog checkpoint, worked out by hand from
# vllm/config/model.py `_verify_quantization`: no override claims a compressed-tensors config, so the checkpoint's
# own `quant_method` is kept; AutoAWQConfig.override_quantization_method returns None on the CPU platform
# (vllm/model_executor/layers/quantization/auto_awq.py: "let cpu_awq handle it"), so here an AWQ checkpoint stays
# "awq" (on a GPU it becomes "auto_awq": see the test below).
RESOLVED_ON_CPU = {
    "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic": "compressed-tensors",
    "neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8": "compressed-tensors",
    "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4": "awq",
}


def _quantized_containers() -> list[Any]:
    return [
        pytest.param(stack, container["args"], id=f"{stack}-{_served_name(container['args'])}")
        for stack in render.stack_names()
        for container in _vllm_containers(stack)
        if container["args"][container["args"].index("--model") + 1] in RESOLVED_ON_CPU
    ]


@pytest.fixture(scope="module")
def long_tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Long enough for every stack's max_model_len (the shapes do not matter to the quantization check).
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "base", max_position_embeddings=131072)


def _checkpoint_like(base: Path, target: Path, quantization_config: dict[str, Any]) -> Path:
    """The tiny model with a checkpoint's `quantization_config` in its config.json, as the hub repo has it."""
    import json
    import shutil

    shutil.copytree(base, target)
    config = json.loads((target / "config.json").read_text())
    config["quantization_config"] = quantization_config
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_every_quantized_model_of_the_stacks_is_a_recorded_checkpoint() -> None:
    from infra.models import CHECKPOINT_CATALOG

    quantized = {
        container["args"][container["args"].index("--model") + 1]
        for stack in render.stack_names()
        for container in _vllm_containers(stack)
    } - {"Qwen/Qwen2.5-0.5B-Instruct"}  # local: 16-bit weights, no quantization
    assert quantized == set(RESOLVED_ON_CPU)
    assert {checkpoint.hf_repo_id for checkpoint in CHECKPOINT_CATALOG.values()} == set(RESOLVED_ON_CPU)


@pytest.mark.parametrize(("stack", "args"), _quantized_containers())
def test_vllm_accepts_the_rendered_quantization_for_the_checkpoint(
    serve_parser: argparse.ArgumentParser, long_tiny_llama: Path, tmp_path: Path, stack: str, args: list[str]
) -> None:
    """vLLM's own engine-config verification (ModelConfig._verify_quantization among the rest) over a folder whose
    config.json carries the checkpoint's recorded quantization_config, with the stack's rendered flags."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from infra.models import lookup_checkpoint

    repo = args[args.index("--model") + 1]
    checkpoint = lookup_checkpoint(repo)
    assert checkpoint is not None
    local = list(args)
    local[local.index("--model") + 1] = str(
        _checkpoint_like(long_tiny_llama, tmp_path / "checkpoint", checkpoint.quantization_config)
    )
    engine_config = AsyncEngineArgs.from_cli_args(serve_parser.parse_args(local)).create_engine_config()
    assert engine_config.model_config.quantization == RESOLVED_ON_CPU[repo]
    assert engine_config.model_config.max_model_len == int(args[args.index("--max-model-len") + 1])

    # The control: the flag the program rendered before this fix is refused for this very folder, so the
    # check above does exercise vLLM's verification (an AWQ checkpoint accepts its own name, hence no control).
    if checkpoint.quant_method == "compressed-tensors":
        with pytest.raises(Exception, match=r"does not match the quantization method specified in the `quantization`"):
            AsyncEngineArgs.from_cli_args(
                serve_parser.parse_args([*local, "--quantization", checkpoint.quantization])
            ).create_engine_config()


def test_an_awq_flag_picks_the_same_gpu_kernel_as_no_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU, vLLM 0.32 maps an AWQ checkpoint to AutoAWQ (Marlin where the GPU allows) with `--quantization
    awq` or without it: dropping the flag loses nothing. The CPU platform skips this override, so the override
    is called directly with the platform reporting a GPU (what is proven: the override's answer, not a GPU run)."""
    pytest.importorskip("vllm")
    from vllm.model_executor.layers.quantization import auto_awq

    from infra.models import lookup_checkpoint

    checkpoint = lookup_checkpoint("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4")
    assert checkpoint is not None
    monkeypatch.setattr(auto_awq.current_platform, "is_cpu", lambda: False)
    override = auto_awq.AutoAWQConfig.override_quantization_method
    assert override(checkpoint.quantization_config, None) == "auto_awq"
    assert override(checkpoint.quantization_config, "awq") == "auto_awq"
    # A compressed-tensors checkpoint is no AWQ checkpoint: the override leaves it alone.
    fp8 = lookup_checkpoint("neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8")
    assert fp8 is not None and override(fp8.quantization_config, None) is None
