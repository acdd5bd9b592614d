"""Start a real vLLM OpenAI server (CPU build) on 127.0.0.1 with the arguments our component renders.

Reusable: `start_vllm(tmp_path)` returns a `VllmServer` (base_url, api_key, process) and `stop_vllm` ends it;
`running_vllm(tmp_path)` is the same as a context manager, and `vllm_server` a module-scoped pytest fixture.
The argument list and environment come from the `local` stack's rendered Deployment: only `--model` (a tiny
Llama built on the spot), `--port` (a free one) and `--host` (loopback, not every interface) are swapped, and env
paths on the pod's volumes (HF_HOME, HOME, caches, TMPDIR) become folders under the test's tmp_path.
`start_vllm(..., run_as=uid)` also runs it as the pod does (that uid, read-only root, only the volumes writable)
where the machine allows it (`can_confine`: mount namespaces; user namespaces when not run as root).
Needs the `vllm` extra (scripts/install-vllm.sh); callers mark their tests `vllm`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.tiny_model import build_tiny_llama

START_TIMEOUT_SECONDS = 300
STOP_TIMEOUT_SECONDS = 20
HOST = "127.0.0.1"


@dataclass(frozen=True)
class VllmServer:
    base_url: str  # e.g. http://127.0.0.1:41234/v1
    api_key: str
    process: subprocess.Popen[bytes]
    model: str  # the served model name
    log_path: Path

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def rendered_local_container() -> dict[str, Any]:
    """The vLLM container of the `local` stack's Deployment, as the render records it."""
    from infra import render

    deployments = [
        obj
        for obj in render.run("local").kubernetes_objects()
        if obj["kind"] == "Deployment" and obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "vllm"
    ]
    assert len(deployments) == 1, f"expected one vLLM Deployment in the local stack, got {len(deployments)}"
    containers = deployments[0]["spec"]["template"]["spec"]["containers"]
    return next(container for container in containers if container["name"] == "vllm")


def _swap(args: list[str], flag: str, value: str) -> list[str]:
    index = args.index(flag)
    return [*args[: index + 1], value, *args[index + 2 :]]


def local_serve_args(model_dir: Path, port: int) -> list[str]:
    args = list(rendered_local_container()["args"])
    args = _swap(args, "--model", str(model_dir))
    args = _swap(args, "--port", str(port))
    return _swap(args, "--host", HOST)


# Paths the server writes to; in the pod each lies on a volume, here each must land in the test's folder.
WRITTEN_PATH_VARS = ("HF_HOME", "HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "VLLM_CACHE_ROOT", "TMPDIR")


def pod_path_on_host(pod_path: str, mounts: dict[str, str], work_dir: Path) -> str:
    """The folder under work_dir that stands for `pod_path`, a path on one of the pod's volumes (mount path ->
    volume name), as `--model` stands for the model folder; a path on no volume is returned unchanged."""
    path = PurePosixPath(pod_path)
    for mount_path, volume in mounts.items():
        if path.is_relative_to(mount_path):
            return str(work_dir / "volumes" / volume / path.relative_to(mount_path))
    return pod_path


def local_serve_env(api_key: str, work_dir: Path) -> dict[str, str]:
    """The Deployment's plain env values, secrets replaced by local ones, paths on the pod's volumes moved under
    work_dir (each start leaves IPC sockets and compile caches behind: they stay in the test's folder)."""
    container = rendered_local_container()
    mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
    env = dict(os.environ)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = pod_path_on_host(str(item["value"]), mounts, work_dir)
    env |= {"VLLM_API_KEY": api_key, "HF_HUB_OFFLINE": "1"}
    env.pop("HF_TOKEN", None)
    outside = {name: env.get(name) for name in WRITTEN_PATH_VARS if not env.get(name, "").startswith(str(work_dir))}
    assert not outside, f"the rendered vLLM env leaves these paths off the pod's volumes: {outside}"
    for name in WRITTEN_PATH_VARS:
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    return env


def _vllm_command() -> list[str]:
    # The container runs `vllm serve`; the console script sits beside this interpreter.
    script = Path(sys.executable).parent / "vllm"
    if not script.exists():
        raise RuntimeError(f"no `vllm` console script at {script}: run scripts/install-vllm.sh")
    return [str(script), "serve"]


# Run by `sh -c` inside a private mount namespace: each argument before `--` (a volume) is bind-mounted on itself so
# it stays writable, the interpreter's prefix under /root stays reachable behind an empty tmpfs (the pod's user
# cannot enter the image's root home either), then the root file system turns read-only and the command runs as
# the pod's user. Exit 99: the root was still writable, and the check would prove nothing.
# Two ways to become the pod's user, one script. As root: setpriv to the real uid. As anyone else: the namespace is
# also a user namespace in which the runner is root (so it may mount), and a nested one maps the pod's uid onto the
# runner's (unshare --map-user, util-linux >= 2.38): the server then has that uid and no capability in it, exactly
# what the pod's non-root user has; it can write only the runner's own files, and of those only the volumes, since
# the rest of the root is mounted read-only.
_CONFINE_SCRIPT = """set -e
uid=$1; prefix=$2; keep=$3; switch=$4; shift 4
while [ "$1" != "--" ]; do mount --bind "$1" "$1"; shift; done; shift
if [ -n "$prefix" ]; then
  mount --bind "$prefix" "$keep"
  mount -t tmpfs -o mode=755 tmpfs /root; mkdir -p "$prefix"; mount --bind "$keep" "$prefix"
  mount -o bind,remount,ro /root
fi
mount -o bind,remount,ro /
if touch /.read-only-probe 2>/dev/null; then rm -f /.read-only-probe; exit 99; fi
if [ "$switch" = userns ]; then exec unshare --user --map-user="$uid" --map-group="$uid" "$@"; fi
exec setpriv --reuid "$uid" --regid "$uid" --clear-groups "$@"
"""


def _namespace_command() -> list[str]:
    """The outer unshare: a mount namespace; for a runner that is not root, inside a user namespace of its own."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--mount", "--propagation", "private"]


def can_confine() -> str | None:
    """None if this machine can run the server as the pod does (mount namespaces, and setpriv as root or nested user
    namespaces otherwise); else why not."""
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        return "needs unshare and setpriv (util-linux)"
    probe_script = "unshare --user --map-user=10001 --map-group=10001 true"
    probe = [*_namespace_command(), "sh", "-c", "true" if os.geteuid() == 0 else probe_script]
    result = subprocess.run(probe, capture_output=True, check=False)
    if result.returncode != 0:
        return f"{' '.join(probe)} fails: {result.stderr.decode(errors='replace').strip()}"
    return None


def confined(command: list[str], volumes: list[Path], uid: int, mount_point: Path) -> list[str]:
    """`command` as the pod runs it: as `uid`, on a read-only root where only `volumes` take writes; `mount_point`
    is an empty folder the namespace may use (it stays empty outside)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    if as_root:
        # What the pod's fsGroup does to its volumes. A runner that is not root owns them already, and its uid is
        # the one the pod's uid maps onto.
        for volume in volumes:
            for folder, _, files in os.walk(volume):
                for name in [folder, *(os.path.join(folder, file) for file in files)]:
                    os.chown(name, uid, uid)
    prefix = Path(sys.base_prefix).resolve()
    hidden_prefix = str(prefix) if prefix.is_relative_to("/root") else ""
    return [
        *_namespace_command(),
        *("sh", "-c", _CONFINE_SCRIPT, "sh", str(uid)),
        hidden_prefix,
        str(mount_point),
        "setpriv" if as_root else "userns",
        *map(str, volumes),
        "--",
        *command,
    ]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_vllm(tmp_path: Path, timeout: float = START_TIMEOUT_SECONDS, run_as: int | None = None) -> VllmServer:
    """Build the tiny model, start the server with the local stack's arguments, wait for /health. With `run_as`
    (a uid; see `can_confine`), the server runs as that user on a read-only root, as in the pod; tmp_path must then
    be readable by that user."""
    model_dir = build_tiny_llama(tmp_path / "tiny-llama")
    port = free_port()
    api_key = "test-" + secrets.token_hex(8)
    args = local_serve_args(model_dir, port)
    env = local_serve_env(api_key, tmp_path)
    command = [*_vllm_command(), *args]
    if run_as is not None:
        # In the pod the model lies in the cache volume, downloaded by the pod's user: it is one more volume here.
        volumes = [*sorted((tmp_path / "volumes").iterdir()), model_dir]
        command = confined(command, volumes, run_as, tmp_path / "mnt")
    log_path = tmp_path / "vllm.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: vLLM forks an engine core; stop_vllm signals the whole group it started.
            start_new_session=True,
        )
    server = VllmServer(
        base_url=f"http://{HOST}:{port}/v1",
        api_key=api_key,
        process=process,
        model=args[args.index("--served-model-name") + 1],
        log_path=log_path,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM exited with {process.returncode} before /health:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{server.root_url}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    stop_vllm(server)
    raise RuntimeError(f"vLLM not healthy after {timeout:.0f} s:\n{_tail(log_path)}")


def stop_vllm(server: VllmServer) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after STOP_TIMEOUT_SECONDS."""
    process = server.process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
    # Engine-core children may outlive the API process; they share its group.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=STOP_TIMEOUT_SECONDS)


@contextmanager
def running_vllm(tmp_path: Path, run_as: int | None = None) -> Iterator[VllmServer]:
    server = start_vllm(tmp_path, run_as=run_as)
    try:
        yield server
    finally:
        stop_vllm(server)


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """One real vLLM server per test module (start-up takes ~25 s with --enforce-eager)."""
    pytest.importorskip("vllm", reason="needs the vLLM CPU build: scripts/install-vllm.sh")
    with running_vllm(tmp_path_factory.mktemp("vllm")) as server:
        yield server
