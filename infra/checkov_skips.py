"""Checkov findings the project accepts, each with the reason, and the workloads allowed to run privileged.

tests/test_security_scan.py runs checkov on every rendered stack and fails on any finding not listed here. A skip
is scoped to the resources it names (checkov's `Kind.namespace.name`, shell-style wildcards), never global, and a
skip that no longer matches anything fails the test too (like mypy's `warn_unused_ignores`): when a component is
fixed, delete its line. Reasons starting with "pending fix in" are debts, listed in docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Skip:
    check_id: str  # e.g. "CKV_K8S_43"
    resources: str  # checkov resource id pattern, e.g. "Deployment.llm-serving.*"
    reason: str
    unless: str = ""  # resources the pattern would match that the skip must not cover

    def matches(self, check_id: str, resource: str) -> bool:
        excluded = bool(self.unless) and fnmatchcase(resource, self.unless)
        return check_id == self.check_id and fnmatchcase(resource, self.resources) and not excluded


_VLLM = "Deployment.llm-serving.*"  # every vLLM model Deployment (model names are free); `unless=_GATEWAY` below
_GATEWAY = "Deployment.llm-serving.llm-gateway"
_DEVICE_PLUGIN = "DaemonSet.kube-system.nvidia-device-plugin"
_DCGM = "DaemonSet.monitoring.dcgm-exporter"

SKIPS: tuple[Skip, ...] = (
    # -- accepted by design ----------------------------------------------------------------------------------------
    Skip(
        "CKV_K8S_43",
        "*",
        "images are pinned by version tag (asserted by test_images_are_pinned_by_tag); resolving tags to digests "
        "belongs to the release pipeline, which has registry access, not to the stack config",
    ),
    Skip(
        "CKV_K8S_15",
        "*",
        "IfNotPresent with immutable version tags: vLLM and NVIDIA images are 5-10 GB and pulling them on every "
        "pod start would add minutes to each scale-up",
    ),
    Skip(
        "CKV_K8S_35",
        _VLLM,
        "vLLM reads its API key only from VLLM_API_KEY or --api-key (no file option); the value comes from a "
        "Secret by secretKeyRef, never a literal",
        unless=_GATEWAY,
    ),
    Skip(
        "CKV_K8S_35",
        _GATEWAY,
        "the gateway reads upstream API keys from environment variables named in its config (api_key_env), "
        "filled by secretKeyRef from its credentials Secret; a file-based key option is a possible hardening",
    ),
    Skip(
        "CKV_K8S_35",
        "Job.llm-serving.llm-gateway-migrate-*",
        "`python -m llm_gateway migrate` reads the ledger DSN from $LEDGER_DSN (the gateway's config contract, "
        "LedgerConfig.dsn_env), filled by secretKeyRef from the stores' Secret, never a literal",
    ),
    Skip(
        "CKV_K8S_23",
        _DEVICE_PLUGIN,
        "the device plugin creates its socket in the root-owned hostPath /var/lib/kubelet/device-plugins; NVIDIA's "
        "own chart runs it as root",
    ),
    Skip("CKV_K8S_40", _DEVICE_PLUGIN, "runs as root for the kubelet socket directory (see CKV_K8S_23)"),
    Skip(
        "CKV_K8S_8",
        _DEVICE_PLUGIN,
        "the NVIDIA device plugin serves no HTTP endpoint to probe; it exits on error (FAIL_ON_INIT_ERROR) and "
        "the DaemonSet restarts it",
    ),
    Skip("CKV_K8S_9", _DEVICE_PLUGIN, "no endpoint to probe and no traffic to gate (see CKV_K8S_8)"),
    Skip(
        "CKV_K8S_25",
        _DCGM,
        "DCGM's profiling metrics (SM activity, tensor pipe, NVLink) need CAP_SYS_ADMIN, as NVIDIA documents",
    ),
    Skip("CKV_K8S_39", _DCGM, "CAP_SYS_ADMIN for DCGM profiling metrics (see CKV_K8S_25)"),
    Skip("CKV_K8S_23", _DCGM, "DCGM runs as root to open the NVIDIA driver's profiling interface"),
    Skip("CKV_K8S_40", _DCGM, "runs as root for DCGM profiling (see CKV_K8S_23)"),
)

# The project's own promises (tests/test_security_scan.py) that a landed component does not meet yet, by
# "<check>:<stack>:<Kind namespace/name container>" pattern; same rule: the test fails when one matches nothing.
PROMISE_EXCEPTIONS: dict[str, str] = {}

# Workloads (Kind/namespace/name patterns) whose containers may be privileged, and why. Anything else privileged fails.
PRIVILEGED_WORKLOADS: dict[str, str] = {
    "DaemonSet/*/*nvidia-device-plugin*": (
        "the NVIDIA device plugin registers GPUs with the kubelet through /var/lib/kubelet/device-plugins and must "
        "see every /dev/nvidia* device (NVIDIA's own manifest runs it privileged for MIG and time-slicing)"
    ),
    "DaemonSet/*/*dcgm*": (
        "DCGM exporter reads GPU telemetry (SM clocks, XID errors, ECC) from the driver, which needs the "
        "SYS_ADMIN capability or privileged mode on the node"
    ),
}


def skip_for(check_id: str, resource: str) -> Skip | None:
    return next((skip for skip in SKIPS if skip.matches(check_id, resource)), None)


def privileged_reason(kind: str, namespace: str, name: str) -> str | None:
    workload = f"{kind}/{namespace}/{name}"
    return next((reason for pattern, reason in PRIVILEGED_WORKLOADS.items() if fnmatchcase(workload, pattern)), None)


def promise_exception(check: str, stack: str, finding: str) -> str | None:
    key = f"{check}:{stack}:{finding}"
    return next((reason for pattern, reason in PROMISE_EXCEPTIONS.items() if fnmatchcase(key, pattern)), None)
