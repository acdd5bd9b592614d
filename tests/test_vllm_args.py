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
