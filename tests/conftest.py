"""Shared fixtures: renders of the real stacks, made once per test session (each takes ~0.3 s)."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from infra import render


@cache
def rendered(stack: str) -> render.RenderResult:
    return render.run(stack)


def resources_of(result: render.RenderResult, type_: str) -> list[render.Recorded]:
    return [record for record in result.resources if record.type == type_]


def one(result: render.RenderResult, type_: str, name: str | None = None) -> dict[str, Any]:
    matches = [record for record in resources_of(result, type_) if name is None or record.name == name]
    assert len(matches) == 1, f"expected one {type_} {name or ''}, found {[record.name for record in matches]}"
    return matches[0].inputs


@pytest.fixture(scope="session", params=render.stack_names())
def any_stack(request: pytest.FixtureRequest) -> render.RenderResult:
    return rendered(request.param)
