"""Route chains and alias decisions without servers. Shares are checked against the configured weights with
binomial bounds worked out by hand; backends are stubs whose availability the test sets."""

from __future__ import annotations

import asyncio
import collections
import random
from typing import Any, Literal

import pytest
from llm_gateway.config import AliasConfig, ConfigError, RouteConfig, TargetConfig, parse_config
from llm_gateway.routing import Alias, Route


class StubBackend:
    def __init__(self, name: str, up: bool = True) -> None:
        self.name = name
        self.up = up

    def has_available_endpoint(self, now: float) -> bool:
        return self.up

    def __repr__(self) -> str:
        return self.name


def route(targets: list[tuple[str, float]], fallbacks: list[str], **down: bool) -> tuple[Route, dict[str, Any]]:
    names = {name for name, _ in targets} | set(fallbacks)
    backends: dict[str, Any] = {name: StubBackend(name, up=not down.get(name, False)) for name in names}
    config = RouteConfig(
        model="m", targets=[TargetConfig(backend=n, weight=w) for n, w in targets], fallbacks=fallbacks
    )
    return Route(config, backends), backends


def shares(chosen: list[Any]) -> dict[str, int]:
    return dict(collections.Counter(backend.name for backend in chosen))


def test_one_target_then_the_fallbacks_in_order_without_repeating_the_target() -> None:
    single, _ = route([("a", 1)], ["b", "a", "c"])
    assert [b.name for b in single.chain()] == ["a", "b", "c"]


def test_targets_share_by_weight() -> None:
    random.seed(1)
    weighted, _ = route([("a", 3), ("b", 1)], [])
    counts = shares([weighted.chain()[0] for _ in range(4000)])
    # Expected 3000 / 1000; a binomial(4000, 1/4) stays within ±110 of 1000 with probability > 0.999.
    assert abs(counts["b"] - 1000) < 110, counts
    assert counts["a"] + counts["b"] == 4000


def test_the_last_target_is_reachable_and_each_chain_has_the_other_target_as_no_fallback() -> None:
    random.seed(2)
    weighted, _ = route([("a", 1), ("b", 1), ("c", 2)], ["d"])
    chains = [weighted.chain() for _ in range(2000)]
    counts = shares([chain[0] for chain in chains])
    # 500 / 500 / 1000 expected; ±100 is over 5 standard deviations for each.
    assert abs(counts["a"] - 500) < 100 and abs(counts["b"] - 500) < 100 and abs(counts["c"] - 1000) < 100, counts
    assert all([b.name for b in chain[1:]] == ["d"] for chain in chains)


def test_a_target_without_endpoints_gets_no_traffic_and_the_rest_keep_their_weights() -> None:
    random.seed(3)
    weighted, _ = route([("a", 1), ("b", 1), ("c", 3)], [], b=True)
    counts = shares([weighted.chain()[0] for _ in range(4000)])
    assert "b" not in counts
    # a:c = 1:3 → 1000 / 3000 expected; ±110 as above.
    assert abs(counts["a"] - 1000) < 110, counts


def test_when_every_target_is_down_all_share_by_weight_again() -> None:
    random.seed(4)
    weighted, _ = route([("a", 1), ("b", 3)], ["f"], a=True, b=True)
    chains = [weighted.chain() for _ in range(4000)]
    counts = shares([chain[0] for chain in chains])
    assert abs(counts["a"] - 1000) < 110, counts
    assert all(chain[-1].name == "f" for chain in chains)


class FixedScorer:
    def __init__(self, value: float) -> None:
        self.value = value

    def score(self, body: dict[str, Any]) -> float:
        return self.value


def alias(threshold: float, scorer: Literal["rules", "embedding"] = "rules", **extra: Any) -> Alias:
    simple, _ = route([("cheap", 1)], [])
    complex_, _ = route([("strong", 1)], [])
    config = AliasConfig(model="auto", scorer=scorer, simple_route="s", complex_route="c", threshold=threshold, **extra)
    return Alias(config, {"s": simple, "c": complex_})


@pytest.mark.parametrize(("score", "expected"), [(0.49, "cheap"), (0.5, "strong"), (0.9, "strong")])
def test_alias_sends_scores_at_or_above_the_threshold_to_the_complex_route(score: float, expected: str) -> None:
    kinds: tuple[Literal["rules", "embedding"], ...] = ("rules", "embedding")
    for kind in kinds:
        chosen = alias(0.5, kind)
        chosen.scorer = FixedScorer(score)
        route_ = asyncio.run(chosen.route_for({"messages": []}))
        assert route_.chain()[0].name == expected


def test_load_scorer_builds_the_rules_scorer_with_the_alias_options() -> None:
    chosen = alias(0.5, rules={"long_text_chars": 10, "weights": {"length": 1.0}})
    asyncio.run(chosen.load_scorer())
    assert chosen.scorer is not None
    assert chosen.scorer.options.long_text_chars == 10  # type: ignore[attr-defined]


def test_wrong_rules_options_fail_when_the_config_is_read_naming_the_key() -> None:
    # Checked by the alias's schema (RuleOptions), so a stack's render fails too, not only the gateway's start.
    with pytest.raises(ConfigError, match=r"aliases\[0\]\.rules\.no_such_option: unknown key; accepted keys here: "):
        parse_config(
            {
                "backends": [{"name": "a", "kind": "vllm", "url": "http://127.0.0.1:1/v1"}],
                "routes": [{"model": "m", "targets": [{"backend": "a"}]}],
                "aliases": [{"simple_route": "m", "complex_route": "m", "rules": {"no_such_option": 1}}],
                "server": {"require_api_key": False},
            }
        )


def test_a_drained_target_gets_no_traffic_even_when_the_weighted_one_is_down() -> None:
    # Weights (1, 0): the 0 is drained. With "a" down, the choice among live weighted targets is empty, so "a" is
    # chosen (its fallbacks and panic mode follow), never the drained "b". Before, random.choices got a total of 0.
    drained, _ = route([("a", 1), ("b", 0)], ["f"], a=True)
    assert {drained.chain()[0].name for _ in range(200)} == {"a"}
    healthy, _ = route([("a", 1), ("b", 0), ("c", 1)], [])
    assert "b" not in {healthy.chain()[0].name for _ in range(500)}
