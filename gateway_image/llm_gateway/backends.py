"""A backend at run time: its endpoints, its connection pool, its credentials."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import aiohttp

from .balancing import Endpoint
from .balancing_policies import new_policy
from .config import BackendConfig, ConfigError
from .metrics import Metrics

if TYPE_CHECKING:
    from .activator import Activator


class Backend:
    def __init__(self, config: BackendConfig, metrics: Metrics) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.kind
        self.upstream_model = config.model
        self.timeout_s = config.timeout_s
        self.first_token_timeout_s = config.first_token_timeout_s
        self.max_model_len = config.max_model_len
        self.retry = config.retry
        # sock_read bounds the wait for the headers and for each stream chunk; the deadline is separate.
        self.client_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(10.0, config.timeout_s), sock_read=config.timeout_s
        )
        # A non-streamed answer arrives whole after its headers, so one timer per attempt (the caller's, set at
        # timeout_s or the deadline) does sock_read's job: aiohttp re-arms sock_read on every read, ~2 us a time.
        self.plain_timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, config.timeout_s))
        self.metrics = metrics
        self.headers = {"Content-Type": "application/json"}
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ConfigError(f"backend {config.name!r}: environment variable {config.api_key_env} is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        urls = [config.url] if config.url else config.endpoints or []
        self.endpoints: list[Endpoint] = [self.new_endpoint(url) for url in urls]
        self.balancer = new_policy(config.balancing, self.count_decision)
        self._session: aiohttp.ClientSession | None = None
        self.activator: Activator | None = None  # set for a backend with `wake` (activator.Activators.attach)

    def new_endpoint(self, base_url: str) -> Endpoint:
        endpoint = Endpoint(
            base_url,
            self.config.health.failures_to_eject,
            self.config.health.cooldown_s,
            self.publish_health,
            self.config.health.max_cooldown_s,
        )
        self.publish_health(endpoint)
        return endpoint

    def forget_endpoint(self, endpoint: Endpoint) -> None:
        self.balancer.forget(endpoint)
        with contextlib.suppress(KeyError):
            self.metrics.endpoint_healthy.remove(self.name, endpoint.label)

    def count_decision(self, outcome: str) -> None:
        policy = self.config.balancing.policy
        self.metrics.child(self.metrics.balancing_decisions, self.name, policy, outcome).inc()

    def publish_health(self, endpoint: Endpoint) -> None:
        self.metrics.endpoint_healthy.labels(self.name, endpoint.label).set(1 if endpoint.healthy else 0)

    @property
    def session(self) -> aiohttp.ClientSession:
        # Created lazily because a ClientSession must be made inside the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_connections,
                limit_per_host=0,
                ttl_dns_cache=30,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                # The gateway names itself; aiohttp would add its own User-Agent on every request otherwise.
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def has_available_endpoint(self, now: float) -> bool:
        return any(endpoint.available(now) for endpoint in self.endpoints)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
