"""Wiring of Prometheus, Grafana, DCGM exporter, alerts, autoscaling (placeholder until its component lands: registers nothing yet)."""

from __future__ import annotations

import pulumi

from infra.config import PlatformConfig


def wire_monitoring(
    platform: PlatformConfig, secrets: object, opts: pulumi.ResourceOptions
) -> dict[str, object]:
    del platform, secrets, opts
    return {}
