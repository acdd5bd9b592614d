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

    def matches(self, check_id: str, resource: str) -> bool:
        return check_id == self.check_id and fnmatchcase(resource, self.resources)


SKIPS: tuple[Skip, ...] = ()

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
