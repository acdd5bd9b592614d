"""Everything built from one config: backends, routes, aliases, teams, audit log.

A reload builds a new Runtime and swaps it in; requests already running keep the one they started with, and
the old Runtime closes its connection pools once the last of them has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson

from .accounting import Ledger
from .audit import AuditLog
from .auth import Teams, TokenBucket
from .backends import Backend
from .config import GatewayConfig, PriceConfig
from .health import check_endpoints_forever, refresh_endpoints, refresh_endpoints_forever
from .metrics import Metrics
from .routing import Alias, Route
from .shared_limits import MonthToDate, SharedLimits
from .tracing import build_tracing


class Runtime:
    def __init__(
        self,
        config: GatewayConfig,
        metrics: Metrics,
        ledger: Ledger,
        buckets: dict[str, TokenBucket],
        month_to_date: MonthToDate | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.backends = {backend.name: Backend(backend, metrics) for backend in config.backends}
        self.routes = {route.model: Route(route, self.backends) for route in config.routes}
        self.aliases = {alias.model: Alias(alias, self.routes) for alias in config.aliases}
        self.teams = Teams(config.teams, config.server.require_api_key, ledger, buckets)
        self.audit = AuditLog(config.audit.path)
        self.shared_limits: SharedLimits | None = None
        if config.limit_store is not None:
            self.shared_limits = SharedLimits(config.limit_store, config.teams, metrics, ledger, month_to_date)
        self.tracing = build_tracing(config.tracing)
        self.in_flight = 0
        self._tasks: list[asyncio.Task[None]] = []
        public = [*self.routes, *self.aliases]
        self.models_body = orjson.dumps(
            {
                "object": "list",
                "data": [{"id": name, "object": "model", "created": 0, "owned_by": "llm-gateway"} for name in public],
            }
        )
        for team in config.teams:
            if team.monthly_budget_usd is not None:
                metrics.team_budget.labels(team.name).set(team.monthly_budget_usd)

    async def start(self) -> None:
        for backend in self.backends.values():
            if backend.config.dns is not None:
                await refresh_endpoints(backend)
                self._tasks.append(asyncio.create_task(refresh_endpoints_forever(backend)))
            if backend.config.health.interval_s > 0:
                self._tasks.append(asyncio.create_task(check_endpoints_forever(backend)))
        for alias in self.aliases.values():
            await alias.load_scorer()

    def price(self, backend: Backend, public_model: str) -> PriceConfig | None:
        pricing = self.config.pricing
        if backend.upstream_model is not None and backend.upstream_model in pricing:
            return pricing[backend.upstream_model]
        return pricing.get(public_model)

    def ready(self) -> bool:
        now = time.monotonic()
        # A backend that wakes from zero takes requests (it holds them): the gateway must stay in its load
        # balancer, or no request would ever reach it to wake the backend.
        return any(
            backend.has_available_endpoint(now) or backend.activator is not None for backend in self.backends.values()
        )

    async def close(self, drain_timeout_s: float) -> None:
        """Stop background checks, wait for in-flight requests (bounded), then close pools and audit file."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        deadline = time.monotonic() + drain_timeout_s
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for backend in self.backends.values():
            await backend.close()
        if self.shared_limits is not None:
            await self.shared_limits.close()
        self.audit.close()
        await self.tracing.close()
