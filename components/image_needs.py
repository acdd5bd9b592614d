"""What each third-party image the platform runs (but does not build) needs from its pod, read from upstream.

A pod spec that fights its image fails only on a real cluster: a read-only root under an entrypoint that writes, a
non-root user where the program writes into root-owned paths, a dropped capability the program relies on. Each record
below says, for one image at one tag, which user the image runs as, what it writes (split into what its ENTRYPOINT
script writes and what the program itself writes, because a pod that sets `command` skips the entrypoint), and which
capabilities it needs, each with the upstream file it comes from. tests/test_image_needs.py asserts every rendered
pod using one of these images against its record; a new tag without a record fails there.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WrittenPath:
    """A path the image writes. `env`: the variable that moves it (the path is then that variable's value)."""

    path: str
    why: str
    source: str
    env: str | None = None


@dataclass(frozen=True)
class ImageNeeds:
    image: str
    # The ENTRYPOINT + CMD of the image (what runs when the pod sets no `command`).
    entrypoint: tuple[str, ...]
    # uid the image runs as when the pod sets none (its USER; 0 when the Dockerfile has none).
    image_user: int
    # True when the program only works as uid 0 (root-owned host paths, setcap, device nodes).
    needs_root: bool
    user_source: str
    # Written only by the ENTRYPOINT script, i.e. skipped when the pod sets `command`.
    entrypoint_writes: tuple[WrittenPath, ...] = ()
    # Written by the program itself, whatever runs it.
    program_writes: tuple[WrittenPath, ...] = ()
    # Linux capabilities the program needs beyond none (the pods drop ALL), with the reason and source.
    capabilities: tuple[str, ...] = ()
    capabilities_source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


DCGM_SOURCE = "NVIDIA/dcgm-exporter@4.2.3-4.1.3 (commit dcbb9276f0a5f380030dc129f043e5d9c25c3045)"
DEVICE_PLUGIN_SOURCE = "NVIDIA/k8s-device-plugin@v0.18.2 (commit fb1242add205d8563f9c604b8ba239607b4083e6)"
# vLLM's v0.32.0 tag was not in the source index this was read from; the Dockerfile's final stages (no USER, so root;
# HOME=/root) and vllm/envs.py's cache defaults have kept this shape across releases. Re-read at the tag when bumping.
VLLM_SOURCE = "vllm-project/vllm docker/Dockerfile (stored at commit 0000977eaf873be6a295cf73017976d49ca2fb9d)"

POSTGRES_SOURCE = "docker-library/postgres (16/bookworm/Dockerfile, docker-entrypoint.sh)"
VALKEY_SOURCE = "valkey-io/valkey-container (Dockerfile, docker-entrypoint.sh)"

IMAGE_NEEDS: tuple[ImageNeeds, ...] = (
    ImageNeeds(
        image="postgres:16.6-bookworm",
        entrypoint=("docker-entrypoint.sh", "postgres"),
        image_user=0,
        needs_root=False,
        user_source=(
            f"{POSTGRES_SOURCE}: no USER (the entrypoint drops to `postgres` with gosu when started as root); started "
            "as any other uid it runs as that uid (nss_wrapper supplies a passwd entry), given a writable PGDATA"
        ),
        entrypoint_writes=(
            WrittenPath("/tmp", "nss_wrapper's passwd/group files for an unknown uid (mktemp)", POSTGRES_SOURCE),
        ),
        program_writes=(
            WrittenPath(
                "/var/lib/postgresql/data",
                "the cluster (initdb on first start, then tables and WAL)",
                f"{POSTGRES_SOURCE}: ENV PGDATA",
                env="PGDATA",
            ),
            WrittenPath(
                "/var/run/postgresql", "the server's Unix socket and lock file", f"{POSTGRES_SOURCE}: mkdir, chmod 3777"
            ),
        ),
        capabilities=(),
        capabilities_source="none: the entrypoint's chown/gosu only run when started as root",
    ),
    ImageNeeds(
        image="valkey/valkey:8.0.2",
        entrypoint=("docker-entrypoint.sh", "valkey-server"),
        image_user=0,
        needs_root=False,
        user_source=f"{VALKEY_SOURCE}: no USER; the entrypoint only chowns /data and drops to `valkey` when root",
        program_writes=(
            WrittenPath("/data", "the append-only file and RDB snapshots (`dir /data`, WORKDIR /data)", VALKEY_SOURCE),
        ),
        capabilities=(),
        capabilities_source="none: the entrypoint's chown/setpriv only run when started as root",
    ),
    ImageNeeds(
        image="nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04",
        entrypoint=("/usr/local/dcgm/dcgm-exporter-entrypoint.sh",),
        image_user=0,
        needs_root=True,
        user_source=f"{DCGM_SOURCE}:docker/Dockerfile.ubuntu has no USER; deployment/values.yaml sets runAsUser: 0",
        entrypoint_writes=(
            WrittenPath(
                "/etc/ld.so.cache",
                "`ldconfig` under `set -euo pipefail`: a read-only root kills the container",
                f"{DCGM_SOURCE}:docker/dcgm-exporter-entrypoint.sh",
            ),
            WrittenPath(
                "/usr/bin/dcgm-exporter",
                "`setcap 'cap_sys_admin=+ep'` on the binary (an xattr write) unless NO_SETCAP is set",
                f"{DCGM_SOURCE}:docker/dcgm-exporter-entrypoint.sh",
            ),
        ),
        program_writes=(),
        capabilities=("SYS_ADMIN",),
        capabilities_source=(
            f"{DCGM_SOURCE}:docker/dcgm-exporter-entrypoint.sh ('To get profiling metrics with dcgm-exporter, use "
            "--cap-add SYS_ADMIN'); deployment/values.yaml adds SYS_ADMIN. Our counters list DCGM_FI_PROF_* fields."
        ),
    ),
    ImageNeeds(
        image="nvcr.io/nvidia/k8s-device-plugin:v0.18.2",
        entrypoint=("nvidia-device-plugin",),
        image_user=0,
        needs_root=True,
        user_source=(
            f"{DEVICE_PLUGIN_SOURCE}:deployments/container/Dockerfile (`USER 0:0`); it creates its socket in the "
            "kubelet's root-owned /var/lib/kubelet/device-plugins"
        ),
        program_writes=(
            WrittenPath(
                "/var/lib/kubelet/device-plugins",
                "its gRPC socket nvidia-gpu.sock, registered with the kubelet there",
                f"{DEVICE_PLUGIN_SOURCE}:internal/plugin/server.go (pluginapi.DevicePluginPath); "
                "deployments/static/nvidia-device-plugin.yml mounts that hostPath",
            ),
        ),
        capabilities=(),
        capabilities_source=(
            f"{DEVICE_PLUGIN_SOURCE}:deployments/static/nvidia-device-plugin.yml drops ALL capabilities, "
            "allowPrivilegeEscalation: false"
        ),
    ),
    *(
        ImageNeeds(
            image=image,
            entrypoint=("vllm", "serve"),
            image_user=0,
            needs_root=False,
            user_source=f"{VLLM_SOURCE}: no USER in the vllm-openai stages, so root with HOME=/root",
            program_writes=(
                WrittenPath(
                    "/root/.cache/huggingface",
                    "downloaded weights and tokenizer (huggingface_hub's cache)",
                    "huggingface_hub constants (HF_HOME, default ~/.cache/huggingface)",
                    env="HF_HOME",
                ),
                WrittenPath(
                    "/root/.cache/vllm",
                    "torch.compile artefacts, usage stats, assets",
                    "vllm/envs.py VLLM_CACHE_ROOT (default $XDG_CACHE_HOME/vllm or ~/.cache/vllm)",
                    env="VLLM_CACHE_ROOT",
                ),
                WrittenPath(
                    "/root",
                    "Triton, FlashInfer, numba and CUDA JIT caches under ~ (~/.triton, ~/.cache, ~/.nv)",
                    "triton and torch defaults: os.path.expanduser('~')",
                    env="HOME",
                ),
                WrittenPath(
                    "/tmp",
                    "ZeroMQ IPC sockets between API server and engine, inductor cache",
                    "vllm/utils (get_open_zmq_ipc_path uses tempfile.gettempdir())",
                    env="TMPDIR",
                ),
            ),
            capabilities=(),
            capabilities_source="no capability-gated call; upstream examples run it unprivileged",
        )
        for image in (
            "vllm/vllm-openai:v0.32.0",
            "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0",
        )
    ),
)

# Repositories whose every rendered tag must have a record (so a tag bump without re-reading upstream fails a test).
RECORDED_REPOSITORIES = tuple(sorted({needs.image.rsplit(":", 1)[0] for needs in IMAGE_NEEDS}))


def needs_for(image: str) -> ImageNeeds | None:
    return next((needs for needs in IMAGE_NEEDS if needs.image == image), None)
