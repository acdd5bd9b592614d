"""Start a rendered container the way Kubernetes would, with a local process standing in for the image.

What the image contributes is read from its Dockerfile with `dockerfile-parse` (ENTRYPOINT, CMD, ENV, WORKDIR,
COPY); what the pod contributes comes from the render (command, args, env, volume mounts). The rules that combine
them are Kubernetes' own, from "Define a Command and Arguments for a Container"
(https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/#notes):
- neither `command` nor `args`: the image's ENTRYPOINT and CMD;
- `command` only: the command alone (the image's ENTRYPOINT and CMD are both ignored);
- `args` only: the image's ENTRYPOINT with these args (CMD ignored);
- both: the command with the args.
`$(VAR)` in command and args expands to the container's env var VAR; `$$` is a literal `$`; a reference to an
undefined variable stays as written (same page, "Use environment variables to define arguments", and the API
reference of Container.command).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser

# The base image's own config, for what our Dockerfile does not set. docker-library/python 3.11/slim-bookworm/
# Dockerfile ends with `CMD ["python3"]` and sets no ENTRYPOINT.
BASE_IMAGE_CONFIG: dict[str, dict[str, Any]] = {
    "python:3.11-slim": {"entrypoint": [], "cmd": ["python3"], "workdir": "/"},
}


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    workdir: str
    # (source in the build context, destination in the image), in order.
    copies: list[tuple[str, str]]


def _exec_form(value: str) -> list[str]:
    """An ENTRYPOINT/CMD value: the JSON exec form as is, the shell form wrapped in `/bin/sh -c` (Dockerfile
    reference, "Shell and exec form")."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
        return parsed
    return ["/bin/sh", "-c", value]


def image_config(dockerfile: Path) -> ImageConfig:
    parser = DockerfileParser(path=str(dockerfile))
    assert not parser.is_multistage, "a multi-stage Dockerfile needs the final stage picked out"
    base = BASE_IMAGE_CONFIG.get(parser.baseimage)
    assert base is not None, f"{parser.baseimage}: record its ENTRYPOINT/CMD/WORKDIR in BASE_IMAGE_CONFIG"
    entrypoint: list[str] = list(base["entrypoint"])
    cmd: list[str] = list(base["cmd"])
    workdir = str(base["workdir"])
    copies: list[tuple[str, str]] = []
    for instruction in parser.structure:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "ENTRYPOINT":
            entrypoint = _exec_form(value)
            # Dockerfile reference (ENTRYPOINT): "If CMD is defined from the base image, setting ENTRYPOINT will
            # reset CMD to an empty value."
            cmd = []
        elif kind == "CMD":
            cmd = _exec_form(value)
        elif kind == "WORKDIR":
            workdir = str(Path(workdir) / value)
        elif kind == "COPY":
            *sources, destination = shlex.split(value)
            assert not any(source.startswith("--") for source in sources), f"COPY flags not handled: {value}"
            target = str(Path(workdir) / destination)
            copies += [(source, target + ("/" if destination.endswith("/") else "")) for source in sources]
    return ImageConfig(entrypoint=entrypoint, cmd=cmd, env=dict(parser.envs), workdir=workdir, copies=copies)


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, value)


def process_argv(image: ImageConfig, container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The argv the container runtime executes (module docstring: Kubernetes' rules); only the pod's own strings
    are expanded, the image's ENTRYPOINT/CMD are passed as they are."""
    command = [expand(arg, env) for arg in container["command"]] if "command" in container else None
    args = [expand(arg, env) for arg in container["args"]] if "args" in container else None
    if command is None and args is None:
        return [*image.entrypoint, *image.cmd]
    if command is None:
        return [*image.entrypoint, *(args or [])]
    return [*command, *(args or [])]


def container_env(container: dict[str, Any], secret_value: Any) -> dict[str, str]:
    """The container's env entries: plain values as rendered, secret references through `secret_value(ref)`."""
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = expand(str(entry["value"]), env)
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secret_value(ref["name"], ref["key"])
    return env


def build_rootfs(image: ImageConfig, context: Path, root: Path) -> None:
    """The image's COPY steps into `root`, a folder standing in for the image's `/`."""
    for source, destination in image.copies:
        target = root / destination.lstrip("/")
        origin = context / source
        if destination.endswith("/") or (origin.is_file() and target.is_dir()):
            target = target / origin.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, target)


def mount_volumes(pod: dict[str, Any], container: dict[str, Any], objects: list[dict[str, Any]], root: Path) -> None:
    """Each volume mount as a folder under `root`: a ConfigMap's keys as files, an emptyDir as an empty folder."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
    namespace_objects = {(obj["kind"], obj["metadata"]["name"]): obj for obj in objects}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            config_map = namespace_objects[("ConfigMap", volume["configMap"]["name"])]
            for key, content in config_map.get("data", {}).items():
                (folder / key).write_text(content)
        else:
            assert "emptyDir" in volume, f"volume {mount['name']}: only configMap and emptyDir are stood in for"


def rewrite_mount_paths(argv: list[str], container: dict[str, Any], root: Path) -> list[str]:
    """Paths under a mount point lead to the folder standing in for it; nothing else in argv changes."""
    mount_paths = sorted((m["mountPath"] for m in container.get("volumeMounts") or []), key=len, reverse=True)

    def rewrite(arg: str) -> str:
        for path in mount_paths:
            if arg == path or arg.startswith(path.rstrip("/") + "/"):
                return str(root / arg.lstrip("/"))
        return arg

    return [rewrite(arg) for arg in argv]
