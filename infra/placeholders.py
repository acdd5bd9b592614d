"""Example values that must never reach a real `pulumi preview`/`up`.

The stack files carry documentation values (RFC 5737 networks, AWS's example account, an all-zero certificate ARN)
so that the offline render works anywhere. A real run stops on them before registering anything, with one line per
value that names the key to set. The walk is generic over the validated `platform` object, so a new field that
holds, say, an ECR image of the example account is covered without a new rule.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from typing import Any

from infra.config import PLATFORM_KEY, PlatformConfig

# RFC 5737 section 3: TEST-NET-1/2/3, "for use in documentation"; no real client or VPN has these addresses.
DOCUMENTATION_NETWORKS = tuple(
    ipaddress.IPv4Network(cidr) for cidr in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
# The account id AWS's own documentation uses in every example ARN (and infra/mocks.py answers with).
EXAMPLE_ACCOUNT_ID = "123456789012"
# An ARN whose resource id is the all-zero UUID, e.g. arn:aws:acm:...:certificate/00000000-0000-0000-0000-000000000000.
_ZERO_UUID_ARN = re.compile(r"^arn:aws[\w-]*:.*\b0{8}-0{4}-0{4}-0{4}-0{12}\b")
_CIDR_OR_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?$")

# What to set instead, by key (the first matching prefix of the key path wins); the generic advice is the fallback.
_ADVICE = (
    ("cluster.public_access_cidrs", "set it to the public egress CIDRs of your office, VPN or CI runners"),
    (
        "cluster.private_access_cidrs",
        "set it to the CIDRs (VPN, peered VPC, CI runner subnet) that reach the VPC and deploy this stack",
    ),
    ("gateway.ingress.certificate_arn", "set it to the ARN of an issued ACM certificate for the gateway's host"),
    ("gateway.image", "set it to the gateway image you pushed (README, 'Deploying for real')"),
)


def _advice(path: str) -> str:
    for prefix, advice in _ADVICE:
        if path.startswith(prefix):
            return advice
    return "set a real value for this environment"


def _reason(value: str) -> str | None:
    if _CIDR_OR_ADDRESS.match(value):
        try:
            network = ipaddress.IPv4Network(value, strict=False)
        except ValueError:
            return None
        for documentation in DOCUMENTATION_NETWORKS:
            if network.overlaps(documentation):
                return f"{documentation} is a documentation range (RFC 5737) that no real client has"
        return None
    if EXAMPLE_ACCOUNT_ID in value:
        return f"{EXAMPLE_ACCOUNT_ID} is AWS's documentation example account, not yours"
    if _ZERO_UUID_ARN.match(value):
        return "an all-zero id is a placeholder, not an issued resource"
    return None


def _walk(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [item for key, child in value.items() for item in _walk(child, f"{path}.{key}" if path else str(key))]
    if isinstance(value, list | tuple):
        return [item for index, child in enumerate(value) for item in _walk(child, f"{path}[{index}]")]
    return []


def placeholder_problems(platform: PlatformConfig) -> list[str]:
    """One line per example value left in the validated config: key path, value, why, and what to set."""
    problems: list[str] = []
    for path, value in _walk(platform.model_dump(mode="json"), ""):
        reason = _reason(value)
        if reason is not None:
            problems.append(f"{PLATFORM_KEY}.{path} = {value!r}: {reason}; {_advice(path)}")
    return problems


def cluster_version_problems(platform: PlatformConfig, today: date | None = None) -> list[str]:
    """EKS refuses versions past extended support and auto-upgrades STANDARD-policy clusters past standard support.

    A fact about the day of the run, not about the stack file: a real preview/up refuses it (with the placeholders),
    while the offline render only warns, so that a stack file does not turn into bad config by the calendar alone.
    """
    from infra import eks_versions

    if platform.cluster is None:
        return []
    cluster = platform.cluster
    problem = eks_versions.version_problem(
        cluster.kubernetes_version,
        cluster.upgrade_policy.support_type,
        today or eks_versions.utc_today(),
        f"{PLATFORM_KEY}.cluster",
    )
    return [problem] if problem else []
