"""API keys, per-team rate limits, and monthly token and budget limits."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import time
from dataclasses import dataclass, field

from .accounting import Ledger, seconds_to_next_month
from .config import TeamConfig
from .errors import GatewayError

ANONYMOUS = "anonymous"


@dataclass
class TokenBucket:
    """requests_per_minute with bursts up to one minute's worth."""

    rate_per_s: float
    capacity: float
    tokens: float
    updated: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """Take one token; return 0 on success, else the seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate_per_s


class Teams:
    """Authenticates keys and enforces the limits of the team that holds them."""

    def __init__(self, teams: list[TeamConfig], require_key: bool, ledger: Ledger, buckets: dict[str, TokenBucket]):
        self.require_key = require_key
        self.ledger = ledger
        self.by_name = {team.name: team for team in teams}
        self._digests = [(key.encode(), team) for team in teams for key in team.key_sha256]
        # Buckets live outside the config so that a reload keeps each team's current fill.
        self._buckets = buckets
        for team in teams:
            if team.requests_per_minute is None:
                buckets.pop(team.name, None)
                continue
            rate = team.requests_per_minute / 60
            bucket = buckets.get(team.name)
            if bucket is None:
                buckets[team.name] = TokenBucket(rate, team.requests_per_minute, team.requests_per_minute)
            else:
                bucket.rate_per_s, bucket.capacity = rate, team.requests_per_minute
                bucket.tokens = min(bucket.tokens, bucket.capacity)

    def authenticate(self, authorization: str | None) -> str:
        """Return the team name for an `Authorization: Bearer <key>` header, or raise a 401."""
        if not self.require_key:
            return ANONYMOUS
        if not authorization:
            raise GatewayError(
                401,
                "Missing API key: send 'Authorization: Bearer <key>'.",
                "unauthorized",
                code="missing_api_key",
            )
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise GatewayError(
                401,
                "Malformed Authorization header: expected 'Bearer <key>'.",
                "unauthorized",
                code="invalid_api_key",
            )
        digest = hashlib.sha256(key.encode()).hexdigest().encode()
        found: TeamConfig | None = None
        # Compare against every key without stopping early, so timing says nothing about which one matched.
        for candidate, team in self._digests:
            if hmac.compare_digest(candidate, digest):
                found = team
        if found is None:
            raise GatewayError(401, "Invalid API key.", "unauthorized", code="invalid_api_key")
        return found.name

    def check_limits(self, team_name: str) -> None:
        """Raise a 429 with Retry-After if the team is over its rate, token or budget limit."""
        team = self.by_name.get(team_name)
        if team is None:
            return
        if team.monthly_token_limit is not None or team.monthly_budget_usd is not None:
            now = dt.datetime.now(dt.UTC)
            usage = self.ledger.usage(team_name, now)
            if team.monthly_token_limit is not None and usage.tokens >= team.monthly_token_limit:
                raise GatewayError(
                    429,
                    f"Team {team_name!r} used its monthly token limit ({team.monthly_token_limit}).",
                    "token_limit",
                    code="monthly_token_limit_exceeded",
                    retry_after_s=seconds_to_next_month(now),
                )
            if team.monthly_budget_usd is not None and usage.spend_usd >= team.monthly_budget_usd:
                raise GatewayError(
                    429,
                    f"Team {team_name!r} spent its monthly budget (${team.monthly_budget_usd:.2f}).",
                    "budget_exceeded",
                    code="monthly_budget_exceeded",
                    retry_after_s=seconds_to_next_month(now),
                )
        bucket = self._buckets.get(team_name)
        if bucket is not None:
            wait_s = bucket.take()
            if wait_s > 0:
                raise GatewayError(
                    429,
                    f"Team {team_name!r} is over its {team.requests_per_minute} requests per minute.",
                    "rate_limited",
                    code="rate_limit_exceeded",
                    retry_after_s=max(1, math.ceil(wait_s)),
                )
