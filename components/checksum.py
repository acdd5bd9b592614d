"""Checksums for pod-template annotations: a changed input rolls the pods (the Helm chart convention,
`checksum/config`), since Kubernetes restarts nothing when only a ConfigMap or a Secret changes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import pulumi


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def secret_checksum(values: Mapping[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    """SHA-256 of the secret values (and their names), as a plain output.

    Anything derived from a secret output is secret itself, and Pulumi would then mask the whole Deployment in
    previews. The values here are keys and tokens of high entropy: their hash tells nothing about them, so only
    the hash is unsecreted; the values themselves stay secret.
    """
    names = sorted(values)
    digest = pulumi.Output.all(*(values[name] for name in names)).apply(
        lambda resolved: sha256_hex(json.dumps(dict(zip(names, resolved, strict=True)), sort_keys=True))
    )
    return pulumi.Output.unsecret(digest)
