"""The gateway container of every stack's render, started as Kubernetes would start it, answers its probes and a
client.

The image side comes from gateway_image/Dockerfile (ENTRYPOINT, CMD, ENV, WORKDIR, COPY), the pod side from the
render (command, args, env, mounts, probes); tests/container_run.py combines them by Kubernetes' rules. The process
runs in its own network namespace (tests/pod_sandbox.py), where the backends' cluster DNS names resolve to a fake
vLLM, so the rendered ConfigMap is used unchanged: only the mount path prefix leads to a temp folder.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import render
from infra.config import PLATFORM_KEY, SECRET_KEYS
from tests.container_run import (
    ImageConfig,
    build_rootfs,
    container_env,
    image_config,
    mount_volumes,
    process_argv,
    rewrite_mount_paths,
)

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = ROOT / "gateway_image"
SANDBOX = [
    "unshare",
    "--user",
    "--map-root-user",
    "--net",
    "--mount",
    sys.executable,
    str(ROOT / "tests" / "pod_sandbox.py"),
]
CANARY = "canary-4c1d8e"
STORE_URLS = {
    "LEDGER_DSN": f"postgresql://gateway:{CANARY}@ledger.invalid:5432/ledger",
    "LIMIT_STORE_URL": f"redis://:{CANARY}@limits.invalid:6379/0",
}
# python:3.11-slim's PATH (docker-library/python 3.11/slim-bookworm/Dockerfile: ENV PATH /usr/local/bin:$PATH),
# with this interpreter's folder first: it stands in for the image's /usr/local/bin/python.
IMAGE_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"


def _image(entrypoint: list[str], cmd: list[str]) -> ImageConfig:
    return ImageConfig(entrypoint=entrypoint, cmd=cmd, env={}, workdir="/", copies=[])


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        # The table in kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/#notes
        ({}, ["/ep-1", "foo", "bar"]),
        ({"command": ["/ep-2"]}, ["/ep-2"]),
        ({"args": ["zoo", "boo"]}, ["/ep-1", "zoo", "boo"]),
        ({"command": ["/ep-2"], "args": ["zoo", "boo"]}, ["/ep-2", "zoo", "boo"]),
        # Same page: $(VAR) expands from the container's env; $$ escapes.
        ({"args": ["$(MESSAGE)", "$$(MESSAGE)", "$(UNSET)"]}, ["/ep-1", "hello", "$(MESSAGE)", "$(UNSET)"]),
    ],
)
def test_command_and_args_combine_with_the_image_as_kubernetes_documents(
    container: dict[str, Any], expected: list[str]
) -> None:
    assert process_argv(_image(["/ep-1"], ["foo", "bar"]), container, {"MESSAGE": "hello"}) == expected


def test_the_dockerfile_is_read_as_docker_builds_it(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11-slim\nENV A=1 B=two\nWORKDIR /srv\nWORKDIR app\nCOPY x.txt ./\n"
        'CMD ["serve"]\nENTRYPOINT exec run\n'
    )
    image = image_config(dockerfile)
    # ENTRYPOINT in shell form runs under /bin/sh -c, and it resets a CMD set before it (Dockerfile reference).
    assert (image.entrypoint, image.cmd) == (["/bin/sh", "-c", "exec run"], [])
    assert (image.env, image.workdir, image.copies) == ({"A": "1", "B": "two"}, "/srv/app", [("x.txt", "/srv/app/")])


def _sandbox_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


@cache
def _secret_values(stack: str) -> dict[str, Any]:
    platform = render.read_stack_file(stack).get(PLATFORM_KEY) or {}
    teams = [team["name"] for team in (platform.get("gateway") or {}).get("teams", [])]
    values: dict[str, Any] = {key: f"{CANARY}-{key}" for key in SECRET_KEYS if key != "teamKeys"}
    values["teamKeys"] = {team: [f"{CANARY}-team-{team}"] for team in teams}
    return values


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def _probe_path(container: dict[str, Any], probe: str) -> str:
    http_get = container[probe]["httpGet"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports.get(http_get["port"], http_get["port"]) == ports["http"], f"{probe} probes another port"
    return str(http_get["path"])


@pytest.mark.network
@pytest.mark.parametrize("stack", render.stack_names())
def test_gateway_container_starts_as_kubernetes_would_and_serves(stack: str, tmp_path: Path) -> None:
    if not _sandbox_available():
        pytest.skip("needs unprivileged user + network namespaces (`unshare --user --net --mount`)")
    values = _secret_values(stack)
    objects = render.run(stack, secret_values=values).kubernetes_objects()
    deployment = _one(objects, "Deployment", "llm-gateway")
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "gateway")
    image = image_config(CONTEXT / "Dockerfile")

    rootfs = tmp_path / "rootfs"
    build_rootfs(image, CONTEXT, rootfs)
    mount_volumes(pod, container, objects, rootfs)

    def secret_value(name: str, key: str) -> str:
        # The Secret the pod names must exist and hold the key, else the kubelet would not start the container.
        assert key in _one(objects, "Secret", name).get("stringData", {}), f"{stack}: Secret {name} lacks {key}"
        # The store URLs are composed by the program from hosts and passwords; the render masks them as a whole,
        # so the container gets well-formed ones whose hosts cannot be reached: the gateway must serve regardless
        # (the ledger spools, the limits fail open or closed as configured).
        if key in STORE_URLS:
            return STORE_URLS[key]
        return f"{CANARY}-{name}-{key}"

    env = {**image.env, "PATH": IMAGE_PATH, **container_env(container, secret_value)}
    argv = rewrite_mount_paths(process_argv(image, container, env), container, rootfs)
    workdir = rootfs / container.get("workingDir", image.workdir).lstrip("/")

    config = yaml.safe_load(_one(objects, "ConfigMap", "llm-gateway-config")["data"]["config.yaml"])
    vllm = {b["name"]: b for b in config["backends"] if b["kind"] == "vllm"}
    assert vllm, f"{stack}: no vLLM backend to stand in for"
    # A route served by vLLM alone: the managed APIs cannot be reached from here.
    model = next(r["model"] for r in config["routes"] if all(t["backend"] in vllm for t in r["targets"]))
    ports = {backend["dns"]["port"] for backend in vllm.values()}
    assert len(ports) == 1
    team_key = next(iter(values["teamKeys"].values()))[0]
    spec = {
        "argv": argv,
        "env": env,
        "cwd": str(workdir),
        "hosts": sorted({backend["dns"]["host"] for backend in vllm.values()}),
        "upstream_port": ports.pop(),
        "port": next(port["containerPort"] for port in container["ports"] if port["name"] == "http"),
        "probes": {
            "liveness": _probe_path(container, "livenessProbe"),
            "readiness": _probe_path(container, "readinessProbe"),
        },
        "team_key": team_key,
        "model": model,
        "log_dir": str(tmp_path),
    }
    run = subprocess.run(SANDBOX, input=json.dumps(spec), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"{stack}: sandbox failed: {run.stderr[-3000:]}"
    seen = json.loads(run.stdout)
    logs = (tmp_path / "stderr").read_text()[-3000:] if (tmp_path / "stderr").exists() else ""
    assert "start_error" not in seen, f"{stack}: the container cannot start: argv {argv}: {seen.get('start_error')}"
    assert seen["liveness"]["status"] == 200, f"{stack}: liveness {seen['liveness']}; stderr: {logs}"
    assert seen["readiness"]["status"] == 200, f"{stack}: readiness {seen['readiness']}; stderr: {logs}"
    assert seen["models"]["status"] == 200, f"{stack}: /v1/models {seen['models']}"
    assert model in {entry["id"] for entry in json.loads(seen["models"]["body"])["data"]}
    assert seen["chat"]["status"] == 200, f"{stack}: chat {seen['chat']}; stderr: {logs}"
    # The key the gateway sends vLLM is the one the pod's Secret reference delivers.
    vllm_env = next(iter(vllm.values()))["api_key_env"]
    assert seen["upstream_authorization"] == [f"Bearer {CANARY}-llm-gateway-credentials-{vllm_env}"]
    # SIGTERM drains and exits cleanly, within the pod's grace period.
    assert seen["exit_code"] == 0, f"{stack}: exit {seen['exit_code']}; stderr: {logs}"


# The registry name of a private ECR repository: <account>.dkr.ecr.<region>.amazonaws.com
# (https://docs.aws.amazon.com/AmazonECR/latest/userguide/Registries.html); on AWS stacks the image `pulumi up`
# builds, pinned by the digest it pushed: <repository>:src-<16 hex>@sha256:<64 hex>.
ECR_IMAGE = (
    r"[0-9]{{12}}\.dkr\.ecr\.{region}\.amazonaws\.com/llm-serving-{env}/llm-gateway"
    r":src-[0-9a-f]{{16}}@sha256:[0-9a-f]{{64}}"
)


@pytest.mark.parametrize("stack", render.stack_names())
def test_each_stack_runs_the_gateway_image_it_loads_or_builds(stack: str) -> None:
    platform = render.read_stack_file(stack)[PLATFORM_KEY]
    objects = render.run(stack).kubernetes_objects()
    image = _one(objects, "Deployment", "llm-gateway")["spec"]["template"]["spec"]["containers"][0]["image"]
    readme = (ROOT / "README.md").read_text()
    if platform.get("aws") is None:
        # What a kind user loads into the cluster's nodes, word for word from the README.
        loaded = re.findall(r"kind load docker-image (\S+)", readme)
        assert loaded == [image], f"{stack}: {image!r}; the README loads {loaded}"
    else:
        region = platform["aws"]["region"]
        pattern = ECR_IMAGE.format(region=re.escape(region), env=platform["environment"])
        assert re.fullmatch(pattern, image), f"{stack}: {image!r}"
        # No manual build-and-push left in the README for AWS stacks: `pulumi up` does it.
        assert not re.search(r"docker push", readme)
