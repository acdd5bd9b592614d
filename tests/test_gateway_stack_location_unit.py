"""Where a problem found in the rendered gateway config points in the stack file (infra/semantics.py
`_stack_location`): the gateway validates the file the stack renders, and each problem must name the stack key a
DevOps engineer edits. Expected keys are written out from the stack files' layout (prod: two models, then the
`openai` managed API; dev: one model, no `routes`), and a round trip checks that the value at the returned stack key
is the very value `gateway_config` rendered there."""

from __future__ import annotations

from typing import Any

import pytest

from infra.gateway_wiring import gateway_config
from infra.semantics import _stack_location
from infra.validation import parse_platform
from tests.test_config_checks_unit import stack

PROD = parse_platform("prod", stack("prod"))
DEV = parse_platform("dev", stack("dev"))


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        # vLLM backends come first, one per model, each derived from the model's name (prod has 2 models).
        (("backends", 0, "dns", "host"), ("models", 0, "name")),
        (("backends", 1), ("models", 1, "name")),
        # Then the managed APIs: index 2 is managed_apis[0]; `url` is written from `base_url`.
        (("backends", 2, "url"), ("gateway", "managed_apis", 0, "base_url")),
        (("backends", 2, "model"), ("gateway", "managed_apis", 0, "model")),
        (("backends", 2, "name"), ("gateway", "managed_apis", 0, "name")),
        (("backends", 2), ("gateway", "managed_apis", 0, "name")),
        # The gateway's own models, written as the stack says them.
        (("routes", 1, "targets", 0, "backend"), ("gateway", "routes", 1, "targets", 0, "backend")),
        (("routes", 0, "context_fallbacks", 0), ("gateway", "routes", 0, "context_fallbacks", 0)),
        (("aliases", 0, "complex_route"), ("gateway", "aliases", 0, "complex_route")),
        (("teams", 2, "name"), ("gateway", "teams", 2, "name")),
        (("pricing", "gpt-9"), ("gateway", "pricing", "gpt-9")),
        # server.* keys the stack has under gateway; others name the section the stack cannot set.
        (("server", "request_timeout_s"), ("gateway", "request_timeout_s")),
        (("server", "max_body_bytes"), ("gateway", "max_body_bytes")),
        (("server", "port"), ("gateway", "server")),
        (("audit", "include_prompts"), ("gateway", "audit_include_prompts")),
        (("audit", "path"), ("gateway", "audit")),
        (("stream_recovery",), ("gateway", "stream_recovery")),
        (("backends", "x"), ("gateway", "backends")),
        ((), ("gateway",)),
    ],
)
def test_prod_locations(loc: tuple[str | int, ...], expected: tuple[str | int, ...]) -> None:
    assert _stack_location(PROD, loc) == expected


def test_without_routes_each_default_route_is_its_models_name() -> None:
    # dev sets no `routes`: the gateway gets one route per model, named by the model.
    assert _stack_location(DEV, ("routes", 0, "model")) == ("models", 0, "name")
    assert _stack_location(DEV, ("routes", 0, "targets", 0, "backend")) == ("models", 0, "name")
    assert _stack_location(DEV, ("routes", "x")) == ("gateway", "routes", "x")
    # With `routes` in the stack (prod) the route is the stack's own.
    assert _stack_location(PROD, ("routes", 0, "model")) == ("gateway", "routes", 0, "model")


def _at(tree: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


@pytest.mark.parametrize("name", ["prod", "dev", "staging", "local"])
def test_round_trip_the_stack_key_holds_the_rendered_value(name: str) -> None:
    platform = parse_platform(name, stack(name))
    raw = stack(name)
    rendered = gateway_config(platform, {team.name: [] for team in platform.gateway.teams})
    checked = 0
    for index, backend in enumerate(rendered["backends"]):
        for field in ("name", "url", "model"):
            if field not in backend:
                continue
            where = _stack_location(platform, ("backends", index, field))
            if where[-1] in ("base_url", "model") or where[:1] == ("gateway",):
                assert _at(raw, where) == backend[field], (index, field, where)
                checked += 1
            else:
                # A vLLM backend's name, model and host all come from its model's name.
                assert _at(raw, where) == backend["name"] == backend["model"]
                checked += 1
    for index, route in enumerate(rendered["routes"]):
        where = _stack_location(platform, ("routes", index, "model"))
        assert _at(raw, where) == route["model"]
        checked += 1
    assert checked >= 2
