"""One gateway schema: a stack's `gateway:` routes, aliases, teams and prices are the gateway's own models
(gateway_image/llm_gateway/config.py), so what the gateway accepts there a stack can say, and the checks across them
are the gateway's, reported with the stack's key path before any resource is registered.

Each test below failed before the stack reused the gateway's models (the drift it names is in the test's comment).
Expected values are the hand-written inputs or the gateway's documented rules, never the function under test.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pulumi
import pytest
import yaml
from llm_gateway import semantic
from llm_gateway.config import ConfigError as GatewayConfigError
from llm_gateway.config import TargetConfig, parse_config
from pydantic import ValidationError

from infra import render
from infra.config import PLATFORM_KEY, ConfigError
from infra.validation import parse_platform

Mutation = Callable[[dict[str, Any]], None]


def _platform(stack: str, mutate: Mutation) -> dict[str, Any]:
    platform = copy.deepcopy(render.read_stack_file(stack)[PLATFORM_KEY])
    mutate(platform)
    return platform


def _problems(stack: str, mutate: Mutation) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_platform(stack, _platform(stack, mutate))
    return caught.value.problems


def _gateway_config(stack: str, mutate: Mutation) -> dict[str, Any]:
    """The gateway's config file as the render writes it into the ConfigMap."""
    config = copy.deepcopy(render.read_stack_file(stack))
    mutate(config[PLATFORM_KEY])
    result = render.run(stack, config=config)
    (config_map,) = [
        o
        for o in result.kubernetes_objects()
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "llm-gateway-config"
    ]
    loaded: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return loaded


def _targets(*weights: Any) -> Mutation:
    def mutate(platform: dict[str, Any]) -> None:
        names = ["llama-3-1-8b", "openai"]
        platform["gateway"]["routes"][0]["targets"] = [
            {"backend": names[i], "weight": weight} for i, weight in enumerate(weights)
        ]

    return mutate


# Drift: weights were integers 0..1000 in the stack and floats > 0 in the gateway. One rule now, the gateway's: any
# finite number >= 0 and at least one above 0 per route; 0 drains a target (it stays in the route, takes no share).
@pytest.mark.parametrize(("weight", "accepted"), [(0.5, True), (2.5, True), (1500, True), (0, True), (-1, False)])
def test_a_weight_is_accepted_by_the_stack_exactly_when_the_gateway_accepts_it(weight: float, accepted: bool) -> None:
    def gateway_accepts() -> bool:
        try:
            TargetConfig(backend="x", weight=weight)
        except ValidationError:
            return False
        return True

    assert gateway_accepts() is accepted
    platform = _platform("prod", _targets(80, weight))
    if accepted:
        parse_platform("prod", platform)
    else:
        with pytest.raises(ConfigError, match=r"gateway\.routes\[0\]\.targets\[1\]\.weight = -1: .*>= 0"):
            parse_platform("prod", platform)


@pytest.mark.parametrize("weight", [math.inf, math.nan])
def test_a_weight_that_is_not_a_finite_number_is_refused_by_both(weight: float) -> None:
    # The split sums the weights and draws a point in [0, total): inf or NaN would make every draw meaningless.
    with pytest.raises(ValidationError):
        TargetConfig(backend="x", weight=weight)
    (problem,) = _problems("prod", _targets(80, weight))
    assert f"{PLATFORM_KEY}.gateway.routes[0].targets[1].weight = " in problem and "finite" in problem


def test_fractional_and_drained_weights_reach_the_config_map_as_written() -> None:
    # Before: 2.5 was refused by the stack, and a target of weight 0 was silently left out of the rendered route.
    config = _gateway_config("prod", _targets(2.5, 0))
    route = config["routes"][0]
    assert route["targets"] == [{"backend": "llama-3-1-8b", "weight": 2.5}, {"backend": "openai", "weight": 0.0}]
    assert parse_config(config).routes[0].targets[1].weight == 0.0


def test_a_route_whose_weights_are_all_zero_is_one_problem_at_its_targets() -> None:
    (problem,) = _problems("prod", _targets(0, 0))
    assert problem.startswith(f"{PLATFORM_KEY}.gateway.routes[0].targets = ")
    assert "at least one target's weight must be > 0" in problem


RULES = {"long_text_chars": 200, "complex_keywords": ["prove", "design"], "weights": {"code": 0.5}}


def _alias(**options: Any) -> Mutation:
    def mutate(platform: dict[str, Any]) -> None:
        platform["gateway"]["aliases"][0].update(options)

    return mutate


def test_a_stack_alias_with_rules_options_renders_and_the_gateway_builds_that_scorer() -> None:
    # Before: `rules` was an unknown key in a stack's alias, though the gateway reads it.
    config = _gateway_config("prod", _alias(rules=RULES))
    alias = config["aliases"][0]
    assert alias["rules"] == RULES, "the ConfigMap carries the options as written, not the scorer's defaults"
    parsed = parse_config(config).aliases[0]
    assert parsed.rules is not None
    scorer = semantic.make_scorer("rules", parsed.rules.model_dump())
    assert isinstance(scorer, semantic.RuleScorer)
    assert scorer.options.long_text_chars == 200 and scorer.options.complex_keywords == ["prove", "design"]
    assert scorer.options.weights.code == 0.5 and scorer.options.weights.length == 0.5  # 0.5: RuleWeights default


def test_a_stack_alias_with_embedding_examples_renders_and_the_gateway_accepts_it() -> None:
    examples = {"simple": ["hi", "capital of France?"], "complex": ["design a distributed lock"]}
    config = _gateway_config("prod", _alias(scorer="embedding", examples=examples))
    assert config["aliases"][0]["examples"] == examples
    assert parse_config(config).aliases[0].examples == examples


@pytest.mark.parametrize(
    ("options", "key_path", "fragments"),
    [
        # RuleWeights: each weight is in [0, 1].
        ({"rules": {"weights": {"code": 1.5}}}, "aliases[0].rules.weights.code", ["1.5", "<= 1"]),
        ({"rules": {"no_such_option": 1}}, "aliases[0].rules.no_such_option", ["unknown key"]),
        # The embedding scorer's examples have exactly the keys simple and complex.
        ({"scorer": "embedding", "examples": {"easy": ["hi"]}}, "aliases[0].examples", ["'simple', 'complex'"]),
        # Options of the other scorer would be ignored without a word.
        ({"scorer": "embedding", "rules": {"long_text_chars": 10}}, "aliases[0]", ["rules scorer", "'embedding'"]),
        ({"model": ""}, "aliases[0].model", ["''", "at least 1"]),
    ],
)
def test_bad_alias_options_are_a_stack_error_naming_the_key(
    options: dict[str, Any], key_path: str, fragments: list[str]
) -> None:
    # Before: the stack either refused the key or let it through to a gateway that failed at start.
    problems = _problems("prod", _alias(**options))
    path = f"{PLATFORM_KEY}.gateway.{key_path}"
    line = next((p for p in problems if p.startswith((f"{path} = ", f"{path}: "))), None)
    assert line is not None, problems
    assert all(fragment in line for fragment in fragments), line


def _add_route_named(name: str) -> Mutation:
    def mutate(platform: dict[str, Any]) -> None:
        platform["gateway"]["routes"].append({"model": name, "targets": [{"backend": "openai"}]})

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        # Names used twice: before, only the gateway checked routes and aliases, when the render was already
        # registering resources, and named the rendered config rather than the stack key.
        (_add_route_named("llama-3-1-8b"), "gateway.routes[2].model = 'llama-3-1-8b': appears twice"),
        (
            lambda p: p["gateway"]["aliases"].append(dict(p["gateway"]["aliases"][0])),
            "gateway.aliases[1].model = 'auto': appears twice",
        ),
        (
            lambda p: p["gateway"]["teams"].append({"name": "search"}),
            "gateway.teams[3].name = 'search': appears twice",
        ),
        (
            lambda p: p["gateway"]["managed_apis"][0].update(name="llama-3-1-8b"),
            "gateway.managed_apis[0].name = 'llama-3-1-8b': appears twice",
        ),
        # Names that must exist.
        (
            lambda p: p["gateway"]["routes"][0]["fallbacks"].append("anthropic"),
            "gateway.routes[0].fallbacks[1] = 'anthropic': is not defined; known: llama-3-1-8b, llama-3-3-70b, openai",
        ),
        (
            lambda p: p["gateway"]["aliases"][0].update(simple_route="small"),
            "gateway.aliases[0].simple_route = 'small': is not defined; known: llama-3-1-8b, llama-3-3-70b",
        ),
        (
            lambda p: p["gateway"]["aliases"][0].update(model="llama-3-3-70b"),
            "gateway.aliases[0].model = 'llama-3-3-70b': is also a route",
        ),
        (
            lambda p: p["gateway"]["pricing"].update({"gpt-5": {"input_per_million": 1, "output_per_million": 2}}),
            "gateway.pricing.gpt-5 = 'gpt-5': is not defined; known: gpt-4o-mini, llama-3-1-8b, llama-3-3-70b",
        ),
        # A team name is a gateway name (metrics label, audit field): before, "Team A" passed the stack.
        (lambda p: p["gateway"]["teams"][0].update(name="Team A"), "gateway.teams[0].name = 'Team A': String should"),
    ],
)
def test_cross_checks_are_the_gateways_reported_with_the_stack_key(mutate: Mutation, expected: str) -> None:
    problems = _problems("prod", mutate)
    assert any(problem.startswith(f"{PLATFORM_KEY}.{expected}") for problem in problems), problems


def test_a_price_by_backend_model_name_is_accepted_as_the_gateway_bills_by_it() -> None:
    # The gateway looks a price up by the backend's model, then by the route's name (llm_gateway/runtime.py
    # `price`). Before, with the route renamed the stack refused a price keyed by the vLLM model's name.
    def rename_route(platform: dict[str, Any]) -> None:
        platform["gateway"]["routes"][0]["model"] = "chat"
        platform["gateway"]["aliases"][0]["simple_route"] = "chat"

    config = _gateway_config("prod", rename_route)
    assert "llama-3-1-8b" in config["pricing"] and [r["model"] for r in config["routes"]] == ["chat", "llama-3-3-70b"]
    assert parse_config(config).pricing["llama-3-1-8b"].output_per_million == 0.10


def test_default_routes_are_checked_against_the_models() -> None:
    # The local stack has no routes: one per model. An alias must name one of those.
    def add_alias(platform: dict[str, Any]) -> None:
        platform["gateway"]["aliases"] = [{"simple_route": "qwen2-5-0-5b", "complex_route": "big"}]

    (problem,) = _problems("local", add_alias)
    assert problem == f"{PLATFORM_KEY}.gateway.aliases[0].complex_route = 'big': is not defined; known: qwen2-5-0-5b"


def test_every_gateway_problem_is_its_own_line() -> None:
    def three_mistakes(platform: dict[str, Any]) -> None:
        platform["gateway"]["routes"][0]["targets"][0]["backend"] = "gpt-5"
        platform["gateway"]["aliases"][0]["complex_route"] = "huge"
        platform["gateway"]["pricing"]["nothing"] = {"input_per_million": 1, "output_per_million": 1}

    problems = _problems("prod", three_mistakes)
    assert [problem.split(" = ")[0].removeprefix(f"{PLATFORM_KEY}.gateway.") for problem in problems] == [
        "routes[0].targets[0].backend",
        "aliases[0].complex_route",
        "pricing.nothing",
    ]


def test_the_gateway_names_each_broken_reference_on_its_own_line() -> None:
    raw = {
        "backends": [{"name": "a", "kind": "vllm", "url": "http://127.0.0.1:1/v1"}],
        "routes": [{"model": "m", "targets": [{"backend": "b"}], "fallbacks": ["c"]}],
        "pricing": {"z": {"input_per_million": 1, "output_per_million": 1}},
        "server": {"require_api_key": False},
    }
    with pytest.raises(GatewayConfigError) as caught:
        parse_config(raw)
    assert str(caught.value).splitlines()[1:] == [
        "  routes[0].targets[0].backend: 'b' is not defined; known: a",
        "  routes[0].fallbacks[0]: 'c' is not defined; known: a",
        "  pricing.z: 'z' is not defined; known: m",
    ]


def test_a_gateway_problem_fails_the_render_before_any_resource_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: a route name used twice passed the stack's own checks and was caught only by the gateway's check of the
    # rendered file, in one "(top): routes: ..." line that named no stack key and printed the whole rendered config.
    registered: list[str] = []
    original = render.RecordingMonitor.RegisterResource

    def counting(self: render.RecordingMonitor, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            registered.append(request.type)
        return original(self, request)

    monkeypatch.setattr(render.RecordingMonitor, "RegisterResource", counting)
    config = copy.deepcopy(render.read_stack_file("prod"))
    _add_route_named("llama-3-3-70b")(config[PLATFORM_KEY])
    with pytest.raises(pulumi.RunError, match=r"(?s)stack 'prod'.*gateway\.routes\[2\]\.model = 'llama-3-3-70b'"):
        render.run("prod", config=config)
    assert registered == []
