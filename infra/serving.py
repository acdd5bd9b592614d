"""Wiring of device plugin and one vLLM Deployment per model (placeholder until its component lands: registers nothing yet)."""

from __future__ import annotations

import pulumi

from infra.config import PlatformConfig


def wire_serving(
    platform: PlatformConfig, secrets: object, opts: pulumi.ResourceOptions
) -> dict[str, object]:
    del platform, secrets, opts
    return {}
