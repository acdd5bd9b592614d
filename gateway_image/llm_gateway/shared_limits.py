"""Fleet-wide limits on Valkey/Redis: one round trip per request, usage added off the path.

Design (a) of issue 12, chosen over locally leased quotas (b); docs/benchmarks.md has the trade-off in numbers:
- The check is one EVALSHA (over store_client.py's auto-pipelined connection; every other call goes through
  valkey-glide, `LimitStore` below) of a Lua script that reads the
  team's month-to-date tokens and spend, checks the requests-per-minute window, and counts the request,
  atomically (a script runs alone on the server).
- Requests per minute use a sliding window counter: two fixed one-minute counters, the previous one weighted by
  the share of it that still lies inside the last 60 s (Cloudflare's rate limiter,
  https://blog.cloudflare.com/counting-things-a-lot-of-different-things/). O(1) memory per team, and within a
  fraction of one request of an exact sliding log when the rate is even across a minute.
- Usage (tokens, spend) is added after the answer, batched per team every FLUSH_INTERVAL_S, by a background
  task: never on the path.
- Month keys carry the month (`llm:{team}:tokens:2026-12`) and expire 35 days after the month ends. The `{team}`
  hash tag keeps one team's keys in one slot, so the script also runs on a cluster-mode store.
- Keys missing (the store restarted empty, or a new month): the month-to-date is rebuilt from the ledger (a
  `MonthToDate` callable, llm_gateway.ledger.month_to_date) in the background and written with SET NX, so two
  replicas never double it; usage recorded while the keys are missing only goes to the ledger, which the rebuild
  reads. Until then the replica decides with the last month-to-date it saw.
- Store down or slower than timeout_s: `open` enforces each replica's share locally (rate / replicas, and the
  remaining month / replicas from the last known month-to-date); `closed` answers 503. Both count
  llm_gateway_limit_store_errors_total, set llm_gateway_limit_store_up to 0 and log at most every 10 s; a
  background probe reconnects, and nothing touches the store on the path meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from glide import (
    AdvancedGlideClientConfiguration,
    BackoffStrategy,
    ConditionalChange,
    ExpirySet,
    ExpiryType,
    GlideClient,
    GlideClientConfiguration,
    GlideError,
    Logger,
    LogLevel,
    NodeAddress,
    Script,
    ServerCredentials,
)

from .accounting import Ledger, seconds_to_next_month
from .auth import TokenBucket
from .config import ConfigError, LimitStoreConfig, TeamConfig
from .errors import GatewayError
from .metrics import Metrics
from .store_client import PipelinedStore, StoreReplyError

logger = logging.getLogger("llm_gateway.shared_limits")

# (team, now) -> (tokens, spend in USD) used by the team in now's calendar month (UTC), from the ledger
# (UsageLedger.team_month_to_date); a plain (not async) function is accepted too.
MonthToDate = Callable[[str, dt.datetime], Awaitable[tuple[int, float]] | tuple[int, float]]

WINDOW_S = 60
MONTH_KEY_GRACE_S = 35 * 86400  # a month's counters stay readable five weeks after it ended
PROBE_INTERVAL_S = 0.5
# Usage is sent at most this often: one pipeline for every team's usage of the interval, instead of a round trip
# per answer. Other replicas see an answer's cost up to this much later.
FLUSH_INTERVAL_S = 0.05
LOG_INTERVAL_S = 10.0


# Failures the store's clients can raise: their own errors (glide's TimeoutError, ConnectionError, ClosingError and the
# server's error replies are GlideErrors), sockets, and our timeout around each call.
STORE_ERRORS = (GlideError, StoreReplyError, OSError, TimeoutError, asyncio.TimeoutError)

# KEYS: rpm current window, rpm previous window, month tokens, month spend.
# ARGV: rpm limit (0: none), share of the current window elapsed (0..1), token limit (0: none), budget (0: none).
# Returns {verdict, missing, tokens, spend, previous window, current window}; verdict 0 admitted (and counted),
# 1 over the rate, 2 over the month's tokens, 3 over the budget. Numbers as strings: Lua numbers become integers.
CHECK_SCRIPT = """
local tokens = redis.call('GET', KEYS[3])
local spend = redis.call('GET', KEYS[4])
local missing = 0
if not tokens or not spend then missing = 1 end
tokens = tonumber(tokens or '0')
spend = tonumber(spend or '0')
local token_limit = tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
if token_limit > 0 and tokens >= token_limit then
  return {2, missing, tostring(tokens), tostring(spend), '0', '0'}
end
if budget > 0 and spend >= budget then
  return {3, missing, tostring(tokens), tostring(spend), '0', '0'}
end
local rpm = tonumber(ARGV[1])
if rpm > 0 then
  local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
  local current = tonumber(redis.call('GET', KEYS[1]) or '0')
  if previous * (1 - tonumber(ARGV[2])) + current + 1 > rpm then
    return {1, missing, tostring(tokens), tostring(spend), tostring(previous), tostring(current)}
  end
  redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], 2 * 60 + 5)
end
return {0, missing, tostring(tokens), tostring(spend), '0', '0'}
"""

# KEYS: month tokens, month spend. ARGV: tokens, spend. Only adds to counters that exist, else returns 1: while they
# are missing the usage is in the ledger, and the rebuild from the ledger counts it (adding here too would count it
# twice); without a ledger the replica holds it and adds it to the value it seeds.
RECORD_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return 1 end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('INCRBYFLOAT', KEYS[2], ARGV[2])
return 0
"""


def month_label(now: dt.datetime) -> str:
    return f"{now.year:04d}-{now.month:02d}"


def month_keys(team: str, now: dt.datetime) -> tuple[str, str]:
    month = month_label(now)
    return f"llm:{{{team}}}:tokens:{month}", f"llm:{{{team}}}:spend:{month}"


def month_expiry(now: dt.datetime) -> int:
    """Unix time at which a month's keys expire: MONTH_KEY_GRACE_S after the month ends."""
    return int(now.timestamp()) + seconds_to_next_month(now) + MONTH_KEY_GRACE_S


def rate_retry_after(limit: int, previous: float, current: float, elapsed: float) -> int:
    """Seconds until the sliding window admits one more request (elapsed: share of the current window, 0..1)."""
    if current + 1 <= limit and previous > 0:
        # Within this window, once the previous window's weight has shrunk enough.
        needed = 1 - (limit - 1 - current) / previous
        seconds = (needed - elapsed) * WINDOW_S
    else:
        # Not in this window: in the next one, this window's count is the weighted previous one.
        needed = 1 - (limit - 1) / current if current > 0 else 0.0
        seconds = (1 - elapsed + max(0.0, needed)) * WINDOW_S
    # The 1e-9 keeps float noise (55.000000001) from adding a whole second.
    return max(1, math.ceil(seconds - 1e-9))


def glide_configuration(url: str, timeout_s: float) -> GlideClientConfiguration:
    """The glide client's settings from a redis:// or rediss:// URL (`redis[s]://[[user]:password@]host[:port][/db]`,
    https://www.iana.org/assignments/uri-schemes/prov/redis and .../rediss).

    rediss:// turns TLS on (ElastiCache's in-transit encryption); the password (the auth token) and user are
    percent-decoded; timeout_s bounds every call, reconnection included, and the connection attempt.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"limit store URL must start with redis:// or rediss://, not {parts.scheme}://")
    credentials = None
    if parts.password is not None:
        username = unquote(parts.username) if parts.username else None
        credentials = ServerCredentials(password=unquote(parts.password), username=username)
    timeout_ms = max(1, round(timeout_s * 1000))
    return GlideClientConfiguration(
        [NodeAddress(parts.hostname or "127.0.0.1", parts.port or 6379)],
        use_tls=parts.scheme == "rediss",
        credentials=credentials,
        database_id=int(parts.path.lstrip("/") or 0),
        request_timeout=timeout_ms,
        # glide reconnects by itself, forever, waiting up to 20 ms * 2^5 = 0.64 s (with jitter) between tries, so a
        # store that comes back is used again within about a probe interval.
        reconnect_strategy=BackoffStrategy(num_of_retries=5, factor=20, exponent_base=2),
        # Connect on the first call, not at start-up: a gateway starts (and fails open or closed) with its store down.
        lazy_connect=True,
        advanced_config=AdvancedGlideClientConfiguration(connection_timeout=timeout_ms),
        client_name="llm-gateway",
    )


class LimitStore:
    """The store through valkey-glide's asyncio client, created on the first call: the calls off the path (month
    reads for /metrics, the probe, the rebuild's SET NX), and the check itself when swapped in (STORE_CLIENT).

    One client per gateway process: glide keeps one multiplexed connection and pipelines the commands of all
    concurrent requests on it, and reconnects by itself. Scripts go by EVALSHA and are loaded again by glide when
    the store lost them (NOSCRIPT). Failures raise GlideError subclasses: TimeoutError after timeout_s,
    ConnectionError while the store is unreachable.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        # glide's core logs every failed reconnection (WARN, to the console) while the store is down: the gateway
        # reports that itself, rate-limited (_failed); keep the core's errors. A no-op if a logger was set before.
        Logger.init(LogLevel.ERROR)
        self.configuration = glide_configuration(url, timeout_s)
        self.scripts: dict[str, Script] = {}
        self._client: GlideClient | None = None
        self._creating: asyncio.Task[GlideClient] | None = None

    async def client(self) -> GlideClient:
        if self._client is not None:
            return self._client
        if self._creating is None or self._creating.done():
            self._creating = asyncio.get_running_loop().create_task(GlideClient.create(self.configuration))
        self._client = await asyncio.shield(self._creating)
        return self._client

    async def evalsha(self, source: str, keys: list[str], args: list[str | int | float]) -> Any:
        script = self.scripts.get(source)
        if script is None:
            script = self.scripts[source] = Script(source)
        client = self._client or await self.client()
        return await client.invoke_script(script, keys, [str(arg) for arg in args])

    def reset(self) -> None:
        """Nothing to drop: glide matches replies to calls and reconnects by itself."""

    async def close(self) -> None:
        if self._creating is not None and not self._creating.done():
            self._creating.cancel()
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def pipelined_store(url: str, timeout_s: float) -> PipelinedStore:
    return PipelinedStore(url, [CHECK_SCRIPT, RECORD_SCRIPT], timeout_s=timeout_s)


# The check's and the usage batches' client. glide runs them too (LimitStore), but costs the gateway 3-4 times the
# CPU per check of the hand-written client: the gateway served 62-77% of its capacity without the store with glide,
# against the 85% (docs/benchmarks.md, "Shared limits"). bench/limits.py swaps LimitStore in to compare.
STORE_CLIENT: Callable[[str, float], Any] = pipelined_store


@dataclass
class Known:
    """The team's month-to-date as last seen in the store, and this replica's own usage at that moment."""

    tokens: float = 0.0
    spend_usd: float = 0.0
    local_tokens: int = 0
    local_spend_usd: float = 0.0


class SharedLimits:
    """Checks and counts every team's limits in one store for the whole fleet."""

    def __init__(
        self,
        config: LimitStoreConfig,
        teams: list[TeamConfig],
        metrics: Metrics,
        ledger: Ledger,
        month_to_date: MonthToDate | None = None,
        url: str | None = None,
    ) -> None:
        if url is None:
            url = os.environ.get(config.url_env)
            if not url:
                raise ConfigError(
                    f"limit_store.url_env: environment variable {config.url_env} is not set; it must hold the "
                    "redis:// or rediss:// URL of the limit store"
                )
        self.config = config
        self.by_name = {team.name: team for team in teams}
        self.metrics = metrics
        self.ledger = ledger
        self.month_to_date = month_to_date
        timeout = config.timeout_s
        if not url.startswith(("redis://", "rediss://")):
            # Never echo the value: it carries the auth token.
            raise ConfigError(
                f"limit_store.url_env: environment variable {config.url_env} does not hold a redis:// or rediss:// "
                "URL; it must hold the limit store's URL (redis[s]://:TOKEN@HOST:PORT/0)"
            )
        self.store = LimitStore(url, timeout)
        # The check and the usage batches (store_client.py, STORE_CLIENT says why).
        self.fast = self.store if STORE_CLIENT is LimitStore else STORE_CLIENT(url, timeout)
        self.up = True
        metrics.limit_store_up.set(1)
        self._known: dict[str, Known] = {}
        self._keys: dict[str, tuple[int, list[str]]] = {}
        # Fail-open: each replica's share of the rate, in the in-memory token buckets of the single-replica path.
        self._buckets: dict[str, TokenBucket] = {}
        for team in teams:
            if team.requests_per_minute is not None:
                share = team.requests_per_minute / config.replicas
                self._buckets[team.name] = TokenBucket(share / WINDOW_S, share, share)
        self._pending: dict[tuple[str, str], list[float]] = {}
        # Usage that found the month keys missing, without a ledger to rebuild them from: seeded with the rebuild.
        self._held: dict[tuple[str, str], list[float]] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rebuilding: set[tuple[str, str]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._last_log = 0.0
        self._closed = False

    # ---- the hot path

    async def check(self, team_name: str) -> None:
        """Raise a 429 if the team is over a limit, a 503 if the store is down and the config fails closed."""
        team = self.by_name.get(team_name)
        if team is None or not (team.requests_per_minute or team.monthly_token_limit or team.monthly_budget_usd):
            return  # no limit to check; its usage is still counted (record)
        if not self.up:
            self._degraded(team)
            return
        stamp = time.time()
        window = int(stamp // WINDOW_S)
        elapsed = stamp / WINDOW_S - window
        keys = self._keys_of(team.name, window)
        args: list[str | int | float] = [
            team.requests_per_minute or 0,
            repr(elapsed),
            team.monthly_token_limit or 0,
            repr(team.monthly_budget_usd or 0),
        ]
        try:
            reply = await self.fast.evalsha(CHECK_SCRIPT, keys, args)  # fails with TimeoutError after timeout_s
        except STORE_ERRORS as exc:
            self._failed("check", exc)
            self._degraded(team)
            return
        if not isinstance(reply, list) or len(reply) != 6:
            self._failed("check", StoreReplyError(f"unexpected reply to the check: {reply!r}"))
            self._degraded(team)
            return
        verdict, missing = int(reply[0]), int(reply[1])
        if verdict == 0 and not missing:
            self._remember(team.name, float(reply[2]), float(reply[3]))
            return
        now = dt.datetime.fromtimestamp(stamp, dt.UTC)
        if missing:
            self._schedule_rebuild(team.name, now)
            self._over_month(team, now, *self._estimate(team.name))
        else:
            self._remember(team.name, float(reply[2]), float(reply[3]))
        if verdict == 1:
            assert team.requests_per_minute is not None
            retry = rate_retry_after(team.requests_per_minute, float(reply[4]), float(reply[5]), elapsed)
            raise _rate_limited(team, retry)
        if verdict in (2, 3):
            self._over_month(team, now, float(reply[2]), float(reply[3]))

    def record(self, team_name: str, tokens: int, spend_usd: float) -> None:
        """Add a finished request's usage to the store, batched, off the path (called from the sync finish)."""
        if team_name not in self.by_name or self._closed:
            return
        key = (team_name, month_label(dt.datetime.now(dt.UTC)))
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = [tokens, spend_usd]
        else:
            pending[0] += tokens
            pending[1] += spend_usd
        self._wake.set()
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def spend_by_team(self) -> dict[str, float]:
        """The fleet's month-to-date spend per team, read from the store for /metrics (off the path).

        The store down: the last value seen plus this replica's usage since, as the fail-open check counts it.
        """
        now = dt.datetime.now(dt.UTC)
        names = list(self.by_name)
        if self.up and names:
            try:
                async with asyncio.timeout(max(self.config.timeout_s, 0.5)):
                    client = await self.store.client()
                    values = await client.mget([month_keys(name, now)[1] for name in names])
                return {
                    name: float(value) if value is not None else self._estimate(name)[1]
                    for name, value in zip(names, values, strict=True)
                }
            except STORE_ERRORS as exc:
                self._failed("read", exc)
        return {name: self._estimate(name)[1] for name in names}

    # ---- decisions

    def _over_month(self, team: TeamConfig, now: dt.datetime, tokens: float, spend_usd: float) -> None:
        if team.monthly_token_limit is not None and tokens >= team.monthly_token_limit:
            raise GatewayError(
                429,
                f"Team {team.name!r} used its monthly token limit ({team.monthly_token_limit}).",
                "token_limit",
                code="monthly_token_limit_exceeded",
                retry_after_s=seconds_to_next_month(now),
            )
        if team.monthly_budget_usd is not None and spend_usd >= team.monthly_budget_usd:
            raise GatewayError(
                429,
                f"Team {team.name!r} spent its monthly budget (${team.monthly_budget_usd:.2f}).",
                "budget_exceeded",
                code="monthly_budget_exceeded",
                retry_after_s=seconds_to_next_month(now),
            )

    def _keys_of(self, team: str, window: int) -> list[str]:
        """The check's keys, built once a minute per team (a month starts on a minute, so its keys change then)."""
        cached = self._keys.get(team)
        if cached is not None and cached[0] == window:
            return cached[1]
        tokens_key, spend_key = month_keys(team, dt.datetime.fromtimestamp(window * WINDOW_S, dt.UTC))
        keys = [f"llm:{{{team}}}:rpm:{window}", f"llm:{{{team}}}:rpm:{window - 1}", tokens_key, spend_key]
        self._keys[team] = (window, keys)
        return keys

    def _remember(self, team: str, tokens: float, spend_usd: float) -> None:
        local = self.ledger.usage(team)
        known = self._known.get(team)
        if known is None:
            known = self._known[team] = Known()
        known.tokens, known.spend_usd, known.local_tokens, known.local_spend_usd = (
            tokens,
            spend_usd,
            local.tokens,
            local.spend_usd,
        )

    def _estimate(self, team: str) -> tuple[float, float]:
        """Month-to-date without the store: the last value seen plus this replica's usage since, times replicas.

        Each replica may use 1/replicas of what was left, so that all of them together stay within the limit.
        """
        known = self._known.get(team, Known())
        local = self.ledger.usage(team)
        share = self.config.replicas
        tokens = known.tokens + max(0, local.tokens - known.local_tokens) * share
        spend = known.spend_usd + max(0.0, local.spend_usd - known.local_spend_usd) * share
        return tokens, spend

    def _degraded(self, team: TeamConfig) -> None:
        if self.config.on_failure == "closed":
            raise GatewayError(
                503,
                "The limit store is unavailable; requests are refused until it is back (limit_store.on_failure: "
                "closed).",
                "limit_store_unavailable",
                code="limit_store_unavailable",
                retry_after_s=1,
            )
        self._over_month(team, dt.datetime.now(dt.UTC), *self._estimate(team.name))
        bucket = self._buckets.get(team.name)
        if bucket is not None:
            wait_s = bucket.take()
            if wait_s > 0:
                raise _rate_limited(team, max(1, math.ceil(wait_s)))

    # ---- failures and reconnection

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.metrics.child(self.metrics.limit_store_errors, operation).inc()
        self.fast.reset()
        if self.up:
            self.up = False
            self.metrics.limit_store_up.set(0)
            if self._probe is None or self._probe.done():
                self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())
        now = time.monotonic()
        if now - self._last_log >= LOG_INTERVAL_S:
            self._last_log = now
            logger.warning(
                "limit store %s failed (%s: %s); failing %s until it answers again",
                operation,
                type(exc).__name__,
                exc,
                self.config.on_failure,
            )

    async def _probe_until_up(self) -> None:
        while not self._closed:
            await asyncio.sleep(PROBE_INTERVAL_S)
            try:
                async with asyncio.timeout(max(self.config.timeout_s, 0.5)):
                    await (await self.store.client()).ping()
            except STORE_ERRORS:
                self.metrics.child(self.metrics.limit_store_errors, "ping").inc()
                continue
            self.up = True
            self.metrics.limit_store_up.set(1)
            logger.warning("limit store answers again; shared limits resumed")
            self._wake.set()
            return

    # ---- background work

    async def _flush_forever(self) -> None:
        while not self._closed:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._wake.clear()
            if self.up:
                await self.flush()

    async def flush(self) -> None:
        """Send the pending usage in one pipeline; kept for the next try when the store fails."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        now = dt.datetime.now(dt.UTC)
        calls = []
        for (team, month), (tokens, spend) in batch.items():
            keys = [f"llm:{{{team}}}:tokens:{month}", f"llm:{{{team}}}:spend:{month}"]
            calls.append(self.fast.evalsha(RECORD_SCRIPT, keys, [int(tokens), repr(spend)]))
        try:
            # One write for the whole batch on the check's connection (store_client.py).
            missing = await asyncio.gather(*calls)
        except STORE_ERRORS as exc:
            self._failed("record", exc)
            for key, usage in batch.items():
                if key[1] == month_label(now):  # a past month's usage is in the ledger; its keys will expire
                    _add(self._pending, key, usage)
            return
        for (key, usage), was_missing in zip(batch.items(), missing, strict=True):
            if was_missing and key[1] == month_label(now):
                if self.month_to_date is None:
                    _add(self._held, key, usage)
                self._schedule_rebuild(key[0], now)

    def _schedule_rebuild(self, team: str, now: dt.datetime) -> None:
        key = (team, month_label(now))
        if key in self._rebuilding or self._closed:
            return
        self._rebuilding.add(key)
        task = asyncio.get_running_loop().create_task(self.rebuild(team, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def rebuild(self, team: str, now: dt.datetime) -> bool:
        """Write the month-to-date from the ledger into missing keys (SET NX); True if this replica wrote them."""
        key = (team, month_label(now))
        held = self._held.pop(key, [0, 0.0])
        try:
            if self.month_to_date is not None:
                found = self.month_to_date(team, now)
                tokens, spend = await found if inspect.isawaitable(found) else found
            else:
                # No ledger: the last month-to-date this replica saw in the store (0 at the start of a month), plus
                # what it served while the keys were missing.
                known = self._known.get(team, Known())
                tokens, spend = int(known.tokens + held[0]), known.spend_usd + held[1]
            expiry = month_expiry(now)
            tokens_key, spend_key = month_keys(team, now)
            async with asyncio.timeout(max(self.config.timeout_s, 1.0)):
                client = await self.store.client()
                only_new, until = ConditionalChange.ONLY_IF_DOES_NOT_EXIST, ExpirySet(ExpiryType.UNIX_SEC, expiry)
                # Both sets leave in one write (glide pipelines); SET NX answers None when the key was there.
                written = await asyncio.gather(
                    client.set(tokens_key, str(int(tokens)), conditional_set=only_new, expiry=until),
                    client.set(spend_key, repr(float(spend)), conditional_set=only_new, expiry=until),
                )
            if any(written):
                logger.warning("rebuilt month-to-date of team %s: %d tokens, $%.6f", team, tokens, spend)
            elif held[0] or held[1]:
                # Another replica seeded first: what this one held is added like any other usage.
                _add(self._pending, key, held)
                self._wake.set()
            return bool(all(written))
        except STORE_ERRORS as exc:
            self._failed("rebuild", exc)
            _add(self._held, key, held)
            return False
        except Exception:
            logger.exception("month-to-date of team %s could not be read from the ledger", team)
            return False
        finally:
            self._rebuilding.discard((team, month_label(now)))

    async def close(self) -> None:
        """Send what is pending (bounded by the store's timeout), stop background tasks, close the pool."""
        if self.up:
            await self.flush()
        self._closed = True
        self._wake.set()
        for task in [self._flusher, self._probe, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *STORE_ERRORS):
                    await task
        with contextlib.suppress(*STORE_ERRORS):
            if self.fast is not self.store:
                await self.fast.close()
            await self.store.close()


def _add(table: dict[tuple[str, str], list[float]], key: tuple[str, str], usage: list[float]) -> None:
    found = table.setdefault(key, [0, 0.0])
    found[0] += usage[0]
    found[1] += usage[1]


def _rate_limited(team: TeamConfig, retry_after_s: int) -> GatewayError:
    return GatewayError(
        429,
        f"Team {team.name!r} is over its {team.requests_per_minute} requests per minute.",
        "rate_limited",
        code="rate_limit_exceeded",
        retry_after_s=retry_after_s,
    )
