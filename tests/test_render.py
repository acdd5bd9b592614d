"""The offline render: every stack renders, the bytes are stable, `local` has no AWS, `diff` reads like a review."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from infra import render
from infra.cli import main as cli
from infra.plan_diff import diff_dirs
from tests.conftest import rendered


def test_every_stack_renders_with_resources_and_a_cost_summary(any_stack: render.RenderResult) -> None:
    assert any_stack.resources
    assert "cost" in any_stack.outputs and "capacity" in any_stack.outputs
    text = render.summary(any_stack)
    assert text.startswith(f"stack {any_stack.stack}: {len(any_stack.resources)} resources")


def test_rendering_twice_gives_identical_bytes(tmp_path: Path) -> None:
    for stack in render.stack_names():
        first = render.write(render.run(stack), tmp_path / "a" / stack)
        second = render.write(render.run(stack), tmp_path / "b" / stack)
        assert first == second
        for name in first:
            assert (tmp_path / "a" / stack / name).read_bytes() == (tmp_path / "b" / stack / name).read_bytes()


def test_local_stack_registers_no_aws_resource_and_targets_the_current_kube_context() -> None:
    result = rendered("local")
    assert [
        record.type for record in result.resources if record.type.startswith(("aws:", "pulumi:providers:aws"))
    ] == []
    providers = [record for record in result.resources if record.type == "pulumi:providers:kubernetes"]
    assert len(providers) == 1 and "kubeconfig" not in providers[0].inputs


def test_plan_lists_every_resource_with_type_name_parent_and_inputs(tmp_path: Path) -> None:
    result = rendered("dev")
    files = render.write(result, tmp_path)
    import json

    plan = json.loads(files["plan.json"])
    assert len(plan) == len(result.resources)
    assert [item["urn"] for item in plan] == sorted(item["urn"] for item in plan)
    pool = next(item for item in plan if item["type"] == "kubernetes:karpenter.sh/v1:NodePool")
    assert pool["parent"].endswith("llm-serving:index:GpuNodePool::llm-serving-dev-gpu-a10g")
    assert pool["inputs"]["spec"]["template"]["spec"]["requirements"][0]["values"] == ["g5.xlarge"]


def test_kubernetes_objects_are_written_one_file_per_component_and_parse_back(tmp_path: Path) -> None:
    result = rendered("prod")
    files = render.write(result, tmp_path)
    yaml_files = [name for name in files if name.endswith(".yaml")]
    assert "platform.yaml" in yaml_files
    objects = [doc for name in yaml_files for doc in yaml.safe_load_all((tmp_path / name).read_text())]
    assert len(objects) == len(result.kubernetes_objects())
    assert all("kind" in obj and "metadata" in obj for obj in objects)


def _stack_config(stack: str) -> dict:
    return copy.deepcopy(render.read_stack_file(stack))


def test_diff_shows_a_changed_instance_type_as_a_field_level_change(tmp_path: Path) -> None:
    render.write(render.run("dev"), tmp_path / "before")
    config = _stack_config("dev")
    config["llm-serving:platform"]["gpu_node_groups"][0]["instance_types"] = ["g5.2xlarge"]
    render.write(render.run("dev", config=config), tmp_path / "after")
    result = diff_dirs(tmp_path / "before", tmp_path / "after")
    assert result.added == [] and result.removed == []
    assert result.changed["kubernetes:karpenter.sh/v1:NodePool llm-serving-dev-gpu-a10g-node-pool"] == [
        'spec.template.spec.requirements[0].values[0]: "g5.xlarge" -> "g5.2xlarge"'
    ]
    # At zero the dev pool costs nothing idle; the bigger type shows in the full-scale cost.
    assert any(line.startswith("cost.full_scale_monthly_usd: ") for line in result.outputs)


def test_diff_lists_added_and_removed_resources(tmp_path: Path) -> None:
    render.write(render.run("prod"), tmp_path / "before")
    config = _stack_config("prod")
    platform = config["llm-serving:platform"]
    platform["gpu_node_groups"] = [group for group in platform["gpu_node_groups"] if group["name"] != "gpu-l40s"]
    platform["models"] = [model for model in platform["models"] if model["node_group"] != "gpu-l40s"]
    platform["gateway"]["routes"] = [r for r in platform["gateway"]["routes"] if r["model"] != "llama-3-1-8b"]
    platform["gateway"]["aliases"] = []
    del platform["gateway"]["pricing"]["llama-3-1-8b"]
    render.write(render.run("prod", config=config), tmp_path / "after")
    result = diff_dirs(tmp_path / "before", tmp_path / "after")
    assert "kubernetes:karpenter.sh/v1:NodePool llm-serving-prod-gpu-l40s-node-pool" in result.removed
    # Its pool was prod's only Karpenter one: the controller and its interruption queue go with it.
    assert "aws:sqs/queue:Queue llm-serving-prod-karpenter-interruption-queue" in result.removed
    assert result.added == []


def test_cli_render_and_diff_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["render", "dev", "--out", str(tmp_path / "a")]) == 0
    assert cli(["render", "dev", "--out", str(tmp_path / "b")]) == 0
    assert "estimated monthly cost" in capsys.readouterr().out
    assert cli(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.strip() == "no changes"
    plan = tmp_path / "b" / "plan.json"
    plan.write_text(plan.read_text().replace('"g5.xlarge"', '"g5.2xlarge"'))
    assert cli(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert cli(["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--exit-zero"]) == 0
    assert cli(["render", "nope"]) == 2
    assert "no stack 'nope'" in capsys.readouterr().err


def test_render_works_after_asyncio_run_left_the_main_thread_without_a_loop() -> None:
    import asyncio

    async def nothing() -> None:
        return None

    asyncio.run(nothing())  # closes its loop and leaves no current loop behind, as the gateway tests do
    assert render.run("local").resources
