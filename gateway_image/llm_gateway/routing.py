"""Which backends serve a request: weighted targets, fallback chains, and semantic aliases."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import time
from typing import Any, Protocol

from .backends import Backend
from .config import AliasConfig, ConfigError, RouteConfig


class Route:
    def __init__(self, config: RouteConfig, backends: dict[str, Backend]) -> None:
        self.model = config.model
        self.targets = [backends[target.backend] for target in config.targets]
        self.weights = [target.weight for target in config.targets]
        self.cumulative = list(itertools.accumulate(self.weights))
        self.fallbacks = [backends[name] for name in config.fallbacks]
        self.context_fallbacks = [backends[name] for name in config.context_fallbacks]
        self.fallback_while_waking = config.fallback_while_waking

    def chain(self) -> list[Backend]:
        """Backends to try in order: one target chosen by weight, then the fallbacks."""
        chosen = self._choose()
        chain = [chosen]
        for backend in self.fallbacks:
            if backend is not chosen:
                chain.append(backend)
        return chain

    def _choose(self) -> Backend:
        if len(self.targets) == 1:
            return self.targets[0]
        now = time.monotonic()
        if all(backend.has_available_endpoint(now) for backend in self.targets):
            index = bisect.bisect_right(self.cumulative, random.random() * self.cumulative[-1])
            return self.targets[min(index, len(self.targets) - 1)]
        # Some targets are down: share the traffic among the others, keeping their relative weights. A drained
        # target (weight 0) stays out: it takes no share, whoever else is down.
        live = [
            (b, w) for b, w in zip(self.targets, self.weights, strict=True) if w > 0 and b.has_available_endpoint(now)
        ]
        if not live:
            # Every weighted target is ejected: the fallbacks go first, then the targets' panic mode (pick_endpoint).
            live = list(zip(self.targets, self.weights, strict=True))
        return random.choices([b for b, _ in live], weights=[w for _, w in live])[0]


class Scorer(Protocol):
    def score(self, body: dict[str, Any]) -> float: ...


class Alias:
    """A public name (e.g. "auto") whose requests go to a simple or a complex route by a complexity score."""

    def __init__(self, config: AliasConfig, routes: dict[str, Route]) -> None:
        self.config = config
        self.model = config.model
        self.simple = routes[config.simple_route]
        self.complex = routes[config.complex_route]
        self.threshold = config.threshold
        self.scorer: Scorer | None = None

    async def load_scorer(self) -> None:
        """Build the scorer; a ConfigError says which alias and why if its options or extra are wrong."""
        try:
            # Imported here so the gateway runs without the semantic module or its heavy extra.
            from . import semantic  # type: ignore[attr-defined,unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                f"alias {self.model!r} needs llm_gateway.semantic, which failed to import: {exc}"
            ) from exc
        if self.config.scorer == "rules":
            options: dict[str, Any] = dict(self.config.rules or {})
        else:
            options = {"examples": self.config.examples} if self.config.examples else {}
        # The embedding scorer loads a model: keep that off the event loop.
        loop = asyncio.get_running_loop()
        try:
            self.scorer = await loop.run_in_executor(None, semantic.make_scorer, self.config.scorer, options)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"alias {self.model!r}: cannot build the {self.config.scorer} scorer: {exc}") from exc

    async def route_for(self, body: dict[str, Any]) -> Route:
        assert self.scorer is not None, "load_scorer() runs when the runtime starts"
        if self.config.scorer == "embedding":
            # Embedding a text takes milliseconds of CPU: run it beside the event loop, not on it.
            score = await asyncio.get_running_loop().run_in_executor(None, self.scorer.score, body)
        else:
            score = self.scorer.score(body)
        return self.complex if score >= self.threshold else self.simple
