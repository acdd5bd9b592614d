"""A stack's raw `platform` object to a validated PlatformConfig: the schema first (infra/config.py, pydantic
models only), then the cross-checks that need the catalogs and the capacity planner (infra/semantics.py).

Kept apart from the schema so that config.py imports no planner: the data flows stack file -> schema -> checks.
"""

from __future__ import annotations

from typing import Any

from infra.config import ConfigError, PlatformConfig, validate_schema
from infra.semantics import semantic_problems


def parse_platform(stack: str, raw: Any) -> PlatformConfig:
    """Validate the raw `platform` object of a stack; raise ConfigError with every problem."""
    platform = validate_schema(stack, raw)
    problems = cross_check(platform)
    if problems:
        raise ConfigError(stack, problems)
    return platform


def cross_check(platform: PlatformConfig) -> list[str]:
    """Checks that need the catalogs and the capacity planner, after the shape is valid."""
    return semantic_problems(platform)
