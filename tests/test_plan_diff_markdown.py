"""`llm-serving diff --format markdown`: golden comments for real changes, and the matching rules behind them.

Goldens live in tests/golden/; after an intended change of the format, rewrite them with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_plan_diff_markdown.py` and read the diff of the goldens.
Each test also asserts the lines a reviewer must see, written by hand, so a golden rewritten blindly still fails.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra import render
from infra.cli import main as cli
from infra.plan_diff import diff_trees, field_changes, normalize, parse_args, to_markdown

GOLDEN = Path(__file__).parent / "golden"


def _platform(config: dict[str, Any]) -> dict[str, Any]:
    platform: dict[str, Any] = config["llm-serving:platform"]
    return platform


def _markdown(tmp_path: Path, change: Callable[[dict[str, Any]], None], stack: str = "dev") -> str:
    render.write(render.run(stack), tmp_path / "before" / stack)
    config = copy.deepcopy(render.read_stack_file(stack))
    change(config)
    render.write(render.run(stack, config=config), tmp_path / "after" / stack)
    return to_markdown(diff_trees(tmp_path / "before", tmp_path / "after"))


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.md"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_a_vllm_flag_shows_by_flag_name_with_the_capacity_before_and_after(tmp_path: Path) -> None:
    def change(config: dict[str, Any]) -> None:
        _platform(config)["models"][0]["max_model_len"] = 16384

    text = _markdown(tmp_path, change)
    _check_golden("vllm_flag", text)
    # The flag by name, not `args[9]`; the values as written on the command line.
    assert "spec.template.spec.containers[vllm].args --max-model-len: 8192 -> 16384" in text
    # dev's A10G keeps 114,704 KV tokens (render summary); sequences of 16,384 tokens: 114704 / 16384 = 7.0.
    assert "| `llama-3-1-8b` KV tokens | 114,704 | 114,704 |" in text
    assert "| `llama-3-1-8b` full-length sequences | 14 | 7 **changed** |" in text


def test_a_node_group_resized_shows_the_gpus_and_the_monthly_cost(tmp_path: Path) -> None:
    def change(config: dict[str, Any]) -> None:
        # dev's group is a Karpenter pool: a bigger cap, and a model allowed to use it.
        group = next(g for g in _platform(config)["gpu_node_groups"] if g["name"] == "gpu-a10g")
        group["scaling"]["max_size"] = 2
        _platform(config)["models"][0]["autoscaling"]["max_replicas"] = 2

    text = _markdown(tmp_path, change)
    _check_golden("node_group_resized", text)
    assert 'spec.limits["nvidia.com/gpu"]: 1 -> 2' in text
    # Idle stays at zero GPUs; full scale adds a second g5.xlarge at spot: $1.006/h x 0.5 x 730 h = $367/month.
    assert "| $/month (full_scale) | $604 | $971 **changed** |" in text
    assert "| $/month (idle) | $236 | $236 |" in text


def test_a_model_added_shows_its_resources_and_its_capacity_row(tmp_path: Path) -> None:
    def change(config: dict[str, Any]) -> None:
        models = _platform(config)["models"]
        models.append({**copy.deepcopy(models[0]), "name": "llama-3-1-8b-long", "max_model_len": 16384})
        group = next(g for g in _platform(config)["gpu_node_groups"] if g["name"] == models[0]["node_group"])
        group["scaling"] = {"min_size": 0, "desired_size": 0, "max_size": 2}  # room for the second model's GPU

    text = _markdown(tmp_path, change)
    _check_golden("model_added", text)
    assert "- `+ kubernetes:apps/v1:Deployment llama-3-1-8b-long`" in text
    assert "| `llama-3-1-8b-long` KV tokens | – | 114,704 **changed** |" in text


def test_an_env_var_inserted_shows_as_one_addition_not_every_later_item_changed(tmp_path: Path) -> None:
    # The stack schema has no free-form env, so insert one into the rendered Deployment, second of its list.
    render.write(render.run("dev"), tmp_path / "before" / "dev")
    render.write(render.run("dev"), tmp_path / "after" / "dev")
    plan_path = tmp_path / "after" / "dev" / "plan.json"
    plan = json.loads(plan_path.read_text())
    deployment = next(r for r in plan if r["type"] == "kubernetes:apps/v1:Deployment" and r["name"] == "llama-3-1-8b")
    env = deployment["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]
    env.insert(1, {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"})
    plan_path.write_text(json.dumps(plan, indent=2, sort_keys=True))
    text = to_markdown(diff_trees(tmp_path / "before", tmp_path / "after"))
    _check_golden("env_var_inserted", text)
    changed = diff_trees(tmp_path / "before", tmp_path / "after")["dev"].changed
    assert changed == {
        "kubernetes:apps/v1:Deployment llama-3-1-8b": [
            "spec.template.spec.containers[vllm].env[VLLM_LOGGING_LEVEL]: + "
            '{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}'
        ]
    }


def test_parse_args_reads_values_bare_flags_equals_and_repeats() -> None:
    assert parse_args(["serve", "--a", "1", "--b", "--c=x", "--d", "-1", "--a", "2"]) == {
        "#0": "serve",
        "--a": ["1", "2"],
        "--b": "(set)",
        "--c": "x",
        "--d": "-1",
    }


def test_lists_match_by_merge_key_and_embedded_yaml_by_key() -> None:
    before: dict[str, Any] = {
        "ports": [{"containerPort": 80}, {"containerPort": 443}],
        "volumeMounts": [{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/b"}],
        "data": {"config.yaml": "routes:\n  - name: a\n    timeout: 5\n  - name: b\n    timeout: 5\n"},
    }
    after = copy.deepcopy(before)
    after["ports"].insert(0, {"containerPort": 8080})
    after["volumeMounts"][1]["readOnly"] = True
    after["data"]["config.yaml"] = (
        "routes:\n  - name: z\n    timeout: 1\n  - name: a\n    timeout: 5\n  - name: b\n    timeout: 6\n"
    )
    assert sorted(field_changes(normalize(before), normalize(after))) == [
        'data["config.yaml"].routes[b].timeout: 5 -> 6',
        'data["config.yaml"].routes[z]: + {"name": "z", "timeout": 1}',
        'ports[8080]: + {"containerPort": 8080}',
        "volumeMounts[/b].readOnly: + true",
    ]


def test_cli_diff_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["render", "local", "--out", str(tmp_path / "a" / "local")]) == 0
    assert cli(["render", "local", "--out", str(tmp_path / "b" / "local")]) == 0
    capsys.readouterr()
    assert cli(["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"local": {"added": [], "removed": [], "changed": {}, "outputs": []}}
    assert cli(["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "markdown"]) == 0
    assert "### `local` — no changes" in capsys.readouterr().out
