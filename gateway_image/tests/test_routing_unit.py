"""Route chains and alias decisions without servers. Shares are checked against the configured weights with
binomial bounds worked out by hand; backends are stubs whose availability the test sets."""

from __future__ import annotations

import asyncio
import collections
import random
import sys
import threading
import time
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


class ClockedBackend(StubBackend):
    """Records the clock each availability question is asked with: ejections are timed on time.monotonic()."""

    def __init__(self, name: str, up: bool = True) -> None:
        super().__init__(name, up)
        self.asked: list[Any] = []

    def has_available_endpoint(self, now: float) -> bool:
        self.asked.append(now)
        return self.up


@pytest.mark.parametrize("b_up", [True, False])
def test_availability_is_asked_on_the_monotonic_clock(b_up: bool) -> None:
    a, b = ClockedBackend("a"), ClockedBackend("b", up=b_up)
    config = RouteConfig(model="m", targets=[TargetConfig(backend="a"), TargetConfig(backend="b")])
    backends: dict[str, Any] = {"a": a, "b": b}
    weighted = Route(config, backends)
    before = time.monotonic()
    weighted.chain()
    after = time.monotonic()
    # Both targets are asked (all up: the all() check; b down: the all() check, then the live filter for a and b).
    assert a.asked and b.asked
    assert all(isinstance(now, float) and before <= now <= after for now in a.asked + b.asked), (a.asked, b.asked)


def test_route_keeps_its_public_model_name() -> None:
    single, _ = route([("a", 1)], [])
    assert single.model == "m"


def test_route_for_before_load_scorer_is_a_programming_error() -> None:
    with pytest.raises(AssertionError, match=r"^load_scorer\(\) runs when the runtime starts$"):
        asyncio.run(alias(0.5).route_for({"messages": []}))


class RecordingScorer:
    """Scores 1.0, and records the body it saw and the thread it ran on."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.threads: list[int] = []

    def score(self, body: dict[str, Any]) -> float:
        self.bodies.append(body)
        self.threads.append(threading.get_ident())
        return 1.0


def test_the_rules_scorer_runs_on_the_loop_and_the_embedding_scorer_beside_it() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    for kind, on_loop in (("rules", True), ("embedding", False)):
        chosen = alias(0.5, kind)  # type: ignore[arg-type]
        scorer = RecordingScorer()
        chosen.scorer = scorer
        # asyncio.run drives the loop on this thread; run_in_executor uses a pool thread.
        assert asyncio.run(chosen.route_for(body)).chain()[0].name == "strong"
        assert scorer.bodies == [body] and scorer.bodies[0] is body
        assert (scorer.threads == [threading.get_ident()]) is on_loop, (kind, scorer.threads)


@pytest.mark.parametrize(
    ("examples", "options"),
    [
        ({"simple": ["hi"], "complex": ["prove it"]}, {"examples": {"simple": ["hi"], "complex": ["prove it"]}}),
        # No examples: the embedding scorer's own defaults (EmbeddingOptions), so no key at all.
        (None, {}),
    ],
)
def test_load_scorer_passes_the_embedding_examples(
    monkeypatch: pytest.MonkeyPatch, examples: dict[str, list[str]] | None, options: dict[str, Any]
) -> None:
    from llm_gateway import semantic

    built: list[tuple[str, Any]] = []

    def make_scorer(kind: str, opts: dict[str, Any]) -> FixedScorer:
        built.append((kind, opts))
        return FixedScorer(0.0)

    monkeypatch.setattr(semantic, "make_scorer", make_scorer)
    chosen = alias(0.5, "embedding", examples=examples)
    asyncio.run(chosen.load_scorer())
    assert built == [("embedding", options)]


def test_load_scorer_names_the_alias_when_the_semantic_module_cannot_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import llm_gateway

    # A None entry in sys.modules makes `from . import semantic` raise ImportError, as a missing extra would.
    monkeypatch.setitem(sys.modules, "llm_gateway.semantic", None)
    monkeypatch.delattr(llm_gateway, "semantic", raising=False)
    with pytest.raises(ConfigError, match=r"^alias 'auto' needs llm_gateway.semantic, which failed to import: "):
        asyncio.run(alias(0.5).load_scorer())


def test_a_scorer_that_cannot_be_built_names_the_alias_and_the_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    # The embedding extra missing at start (sentence-transformers not installed) reaches make_scorer as ImportError.
    from llm_gateway import semantic

    def make_scorer(kind: str, opts: dict[str, Any]) -> FixedScorer:
        raise ImportError("No module named 'sentence_transformers'")

    monkeypatch.setattr(semantic, "make_scorer", make_scorer)
    chosen = alias(0.5, "embedding")
    with pytest.raises(ConfigError) as caught:
        asyncio.run(chosen.load_scorer())
    assert str(caught.value) == (
        "alias 'auto': cannot build the embedding scorer: No module named 'sentence_transformers'"
    )


def test_a_route_keeps_its_context_fallbacks_in_order() -> None:
    backends: dict[str, Any] = {name: StubBackend(name) for name in ("small", "long", "api")}
    config = RouteConfig(model="m", targets=[TargetConfig(backend="small")], context_fallbacks=["long", "api"])
    assert Route(config, backends).context_fallbacks == [backends["long"], backends["api"]]
    assert Route(RouteConfig(model="m", targets=[TargetConfig(backend="small")]), backends).context_fallbacks == []
