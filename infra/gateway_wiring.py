"""Wiring of the LLM gateway (placeholder until its component lands: registers nothing yet)."""

from __future__ import annotations

import pulumi

from infra.config import PlatformConfig


def wire_gateway(platform: PlatformConfig, secrets: object, opts: pulumi.ResourceOptions) -> dict[str, object]:
    del platform, secrets, opts
    return {}
