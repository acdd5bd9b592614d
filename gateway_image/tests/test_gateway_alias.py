"""The `auto` alias: the semantic scorer picks the simple or the complex route per request."""

from __future__ import annotations

import pytest

from conftest import Harness, backend, client

pytestmark = pytest.mark.network

COMPLEX_PROMPT = (
    "Design a distributed rate limiter and prove that it is correct under concurrency. Walk me through the "
    "trade-offs step by step, then implement it:\n```python\ndef allow(key: str) -> bool:\n    ...\n```\n"
    "Compare it with a token bucket and analyse the failure modes in detail."
)


def test_auto_alias_routes_by_complexity(harness: Harness) -> None:
    semantic = pytest.importorskip("llm_gateway.semantic")
    assert semantic.make_scorer("rules", {}).score({"messages": [{"role": "user", "content": "hi"}]}) < 0.5
    small, large = harness.upstream("small"), harness.upstream("large")
    _, url = harness.gateway(
        {
            "backends": [backend("small", small), backend("large", large)],
            "routes": [
                {"model": "llama-8b", "targets": [{"backend": "small"}]},
                {"model": "llama-70b", "targets": [{"backend": "large"}]},
            ],
            "aliases": [{"model": "auto", "scorer": "rules", "simple_route": "llama-8b", "complex_route": "llama-70b"}],
        }
    )
    c = client(url)
    c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert (len(small.requests), len(large.requests)) == (1, 0)
    c.chat.completions.create(model="auto", messages=[{"role": "user", "content": COMPLEX_PROMPT}])
    assert (len(small.requests), len(large.requests)) == (1, 1)
    assert sorted(m.id for m in c.models.list().data) == ["auto", "llama-70b", "llama-8b"]
    audit = harness.audit(2)
    assert [(a["model"], a["route"], a["backend"]) for a in audit] == [
        ("auto", "llama-8b", "small"),
        ("auto", "llama-70b", "large"),
    ]


def test_bad_scorer_options_are_a_config_error(harness: Harness) -> None:
    pytest.importorskip("llm_gateway.semantic")
    small = harness.upstream("small")
    # The alias's schema holds the scorer's options, so the config is refused when read, naming the key.
    with pytest.raises(ValueError, match=r"aliases\[0\]\.rules\.no_such_option: unknown key"):
        harness.gateway(
            {
                "backends": [backend("small", small)],
                "routes": [{"model": "llama-8b", "targets": [{"backend": "small"}]}],
                "aliases": [{"simple_route": "llama-8b", "complex_route": "llama-8b", "rules": {"no_such_option": 1}}],
            }
        )
