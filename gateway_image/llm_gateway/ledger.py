"""The durable usage ledger: one PostgreSQL row per finished request, written in batches off the hot path.

The request path only appends a tuple to a deque (`UsageLedger.append`). A background task writes batches, by
count (batch_max_rows) and by time (batch_max_delay_s), with one multi-row `INSERT ... SELECT FROM unnest(...)
ON CONFLICT (request_id) DO NOTHING`: a batch written twice (a timeout after the commit, a replayed spool) counts
once. While PostgreSQL is unreachable or slow, batches go to an append-only spool file (one JSON line per batch,
fsynced) bounded by spool_max_bytes; the spool is replayed in order before any new batch once the database answers,
then truncated. Rows beyond the bound are counted in llm_gateway_ledger_rows_dropped_total and logged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .accounting import Ledger
from .config import ConfigError, LedgerConfig

log = logging.getLogger("llm_gateway.ledger")

# Column -> the type of its unnest() array parameter; the row's time travels as epoch seconds (spooled as JSON too).
COLUMN_TYPES = {
    "request_id": "text",
    "ts": "float8",
    "team": "text",
    "key_id": "text",
    "model": "text",
    "route": "text",
    "backend": "text",
    "endpoint": "text",
    "status": "int2",
    "prompt_tokens": "int4",
    "completion_tokens": "int4",
    "cost_usd": "float8",
    "latency_ms": "float8",
    "ttft_ms": "float8",
    "attempts": "int2",
    "fallback": "bool",
}
COLUMNS = tuple(COLUMN_TYPES)
_SELECT = ", ".join(
    "to_timestamp(ts)" if name == "ts" else "cost_usd::numeric(18, 8)" if name == "cost_usd" else name
    for name in COLUMNS
)
INSERT_SQL = (
    f"INSERT INTO usage_ledger ({', '.join(COLUMNS)}) SELECT {_SELECT} FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(COLUMN_TYPES.values(), start=1))
    + f") AS batch({', '.join(COLUMNS)}) ON CONFLICT (request_id) DO NOTHING"
)
SPOOL_FILE = "ledger.spool"
MAX_MODEL_CHARS = 256  # the requested model as the client wrote it; every route name is far shorter
# After a failed write, batches go straight to the spool for this long instead of each waiting for a timeout.
RETRY_AFTER_S = 1.0

Row = tuple[Any, ...]
# Rows PostgreSQL will never take, however often they are retried (SQLSTATE classes 22 and 23).
REFUSED_ROWS = (asyncpg.exceptions.DataError, asyncpg.exceptions.IntegrityConstraintViolationError)
# What a database call may raise when PostgreSQL is down, slow, restarting or killed mid-query.
DB_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


def key_id(authorization: str | None) -> str | None:
    """The first 12 hex characters of the key's SHA-256 (what the team config holds): names a key, reveals nothing."""
    if not authorization:
        return None
    key = authorization.partition(" ")[2].strip()
    return hashlib.sha256(key.encode()).hexdigest()[:12] if key else None


def month_start(now: dt.datetime | None = None) -> dt.datetime:
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def month_to_date(db: asyncpg.Connection | asyncpg.Pool, now: dt.datetime | None = None) -> dict[str, Any]:
    """Each team's month-to-date {team: (tokens, cost_usd)} in UTC months, as accounting.Ledger counts them.

    Also what the shared limit store is rebuilt from when it loses its counters.
    """
    rows = await db.fetch(
        "SELECT team, sum(prompt_tokens + completion_tokens)::bigint AS tokens, sum(cost_usd)::float8 AS cost "
        "FROM usage_ledger WHERE ts >= $1 GROUP BY team",
        month_start(now),
    )
    return {row["team"]: (int(row["tokens"]), float(row["cost"])) for row in rows}


class LedgerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "llm_gateway_ledger_rows_written", "Ledger rows inserted into PostgreSQL", registry=registry
        )
        self.spooled = Counter(
            "llm_gateway_ledger_rows_spooled",
            "Ledger rows written to the spool while PostgreSQL failed",
            registry=registry,
        )
        self.dropped = Counter(
            "llm_gateway_ledger_rows_dropped",
            "Ledger rows lost: the spool was full (spool_max_bytes)",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "llm_gateway_ledger_batch_seconds",
            "Time to insert one batch into PostgreSQL",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.spool_bytes = Gauge("llm_gateway_ledger_spool_bytes", "Size of the ledger spool file", registry=registry)
        self.pending = Gauge(
            "llm_gateway_ledger_rows_pending", "Rows waiting in memory for their batch", registry=registry
        )


class LedgerWriter:
    """Batches rows to PostgreSQL, spooling them to a file while it fails; one per gateway process."""

    def __init__(self, config: LedgerConfig, dsn: str, metrics: LedgerMetrics, write_timeout_s: float = 5.0) -> None:
        self.config = config
        self.dsn = dsn
        self.metrics = metrics
        self.write_timeout_s = write_timeout_s
        self.spool_path = Path(config.spool_path) / SPOOL_FILE
        self.pending: collections.deque[Row] = collections.deque()
        self.spool_bytes = 0
        self._conn: asyncpg.Connection | None = None
        self._retry_at = 0.0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        metrics.pending.set_function(lambda: len(self.pending))
        metrics.spool_bytes.set_function(lambda: self.spool_bytes)

    def append(self, row: Row) -> None:
        """The hot path's only call: no I/O, no allocation beyond the tuple the caller made."""
        self.pending.append(row)
        if len(self.pending) >= self.config.batch_max_rows:
            self._wake.set()

    async def start(self) -> None:
        """Find a spool left by the previous process and replay it first, then start the background writer."""
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        self.spool_bytes = self.spool_path.stat().st_size if self.spool_path.exists() else 0
        if self.spool_bytes:
            log.info("ledger: replaying a spool of %d bytes left by the previous process", self.spool_bytes)
            await self._replay()
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def close(self) -> None:
        """Write what is pending (to PostgreSQL, else to the spool) and stop; on SIGTERM nothing is left in memory."""
        self._closing = True
        self._retry_at = 0.0  # one more try now, even inside the pause after a failure; a failure spools the rest
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), self.write_timeout_s)
            self._conn = None
        if self.spool_bytes:
            log.warning(
                "ledger: %d spool bytes left for the next start to replay: %s", self.spool_bytes, self.spool_path
            )

    async def _run(self) -> None:
        while True:
            by_count = False
            with contextlib.suppress(TimeoutError):
                by_count = await asyncio.wait_for(self._wake.wait(), self.config.batch_max_delay_s)
            self._wake.clear()
            try:
                # Woken by a full batch: write the full ones, the rest waits for its timer (or the next full batch,
                # which it heads); woken by the timer or close: everything.
                await self.flush(full_only=by_count and not self._closing)
                # Without new rows too: a quiet gateway must not keep its spool until the next request (or stop).
                if self.spool_bytes and time.monotonic() >= self._retry_at:
                    await self._replay()
            except Exception:  # never let the writer die: the next round spools or writes again
                log.exception("ledger: flush failed")
            if self._closing:
                return

    async def flush(self, full_only: bool = False) -> None:
        """Write the pending rows, a batch at a time (only full batches if `full_only`)."""
        size = self.config.batch_max_rows
        while len(self.pending) >= (size if full_only else 1):
            batch = [self.pending.popleft() for _ in range(min(size, len(self.pending)))]
            await self._write(batch)

    async def _write(self, batch: list[Row]) -> None:
        # Order: rows already spooled are older than this batch, so they go first, or this batch joins them.
        if self.spool_bytes and time.monotonic() >= self._retry_at:
            await self._replay()
        if not self.spool_bytes and time.monotonic() >= self._retry_at and await self._insert(batch):
            return
        await self._spool(batch)

    async def _insert(self, batch: list[Row]) -> bool:
        for attempt in (1, 2):
            reused = self._conn is not None and not self._conn.is_closed()
            started = time.perf_counter()
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self.dsn, timeout=self.write_timeout_s)
                status = await self._conn.execute(INSERT_SQL, *zip(*batch, strict=True), timeout=self.write_timeout_s)
            except REFUSED_ROWS as exc:
                # PostgreSQL answered, and would answer the same for ever (spooled, replayed): one row it cannot
                # store must not hold back the others, nor every later batch queued behind it in the spool.
                return await self._insert_row_by_row(batch, exc)
            # Whatever the driver raises (asyncpg 0.32 raises InternalClientError, outside its PostgresError and
            # InterfaceError, on a connection whose server died mid-query), the batch must reach the spool.
            except Exception as exc:
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.terminate()
                if reused and attempt == 1:
                    continue  # a connection from before a restart or failover: one more try on a new one
                log.warning("ledger: writing %d rows failed, spooling them: %r", len(batch), exc)
                self._retry_at = time.monotonic() + RETRY_AFTER_S
                return False
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            # "INSERT 0 <n>": rows a previous try had already written are not counted again.
            self.metrics.written.inc(int(status.rsplit(" ", 1)[-1]))
            return True
        return False

    async def _insert_row_by_row(self, batch: list[Row], cause: Exception) -> bool:
        log.error("ledger: PostgreSQL refused a batch of %d rows (%r); writing it row by row", len(batch), cause)
        for row in batch:
            try:
                assert self._conn is not None
                status = await self._conn.execute(INSERT_SQL, *([value] for value in row), timeout=self.write_timeout_s)
            except REFUSED_ROWS as exc:
                self.metrics.dropped.inc()
                log.error("ledger: row %s dropped, PostgreSQL cannot store it: %r", row[0], exc)
                continue
            except Exception as exc:  # the connection failed meanwhile: all of it to the spool (rows in: no-ops)
                log.warning("ledger: writing %d rows failed, spooling them: %r", len(batch), exc)
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.terminate()
                self._retry_at = time.monotonic() + RETRY_AFTER_S
                return False
            self.metrics.written.inc(int(status.rsplit(" ", 1)[-1]))
        return True

    async def _spool(self, batch: list[Row]) -> None:
        line = orjson.dumps(batch) + b"\n"
        if self.spool_bytes + len(line) > self.config.spool_max_bytes:
            self.metrics.dropped.inc(len(batch))
            log.error(
                "ledger: spool full (%d of %d bytes): %d rows dropped, first request id %s",
                self.spool_bytes,
                self.config.spool_max_bytes,
                len(batch),
                batch[0][0],
            )
            return
        # fsync takes milliseconds on a real disk: in a thread, so that the event loop keeps serving.
        try:
            await asyncio.to_thread(_append_synced, self.spool_path, line)
        except OSError as exc:  # a full or read-only volume: counted and said, never silent
            self.metrics.dropped.inc(len(batch))
            log.error(
                "ledger: spool write failed (%r): %d rows dropped, first request id %s", exc, len(batch), batch[0][0]
            )
            return
        self.spool_bytes += len(line)
        self.metrics.spooled.inc(len(batch))

    async def _replay(self) -> None:
        """Insert the spooled batches in order; truncate the spool when all are in, else keep it whole."""
        batches = await asyncio.to_thread(_read_spool, self.spool_path)
        for batch in batches:
            if not await self._insert([tuple(row) for row in batch]):
                return  # the inserted ones are no-ops when replayed again (ON CONFLICT DO NOTHING)
        await asyncio.to_thread(_truncate_synced, self.spool_path)
        log.info("ledger: replayed %d spooled batches", len(batches))
        self.spool_bytes = 0


def _append_synced(path: Path, line: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _truncate_synced(path: Path) -> None:
    with open(path, "r+b") as spool:
        spool.truncate(0)
        os.fsync(spool.fileno())


def _read_spool(path: Path) -> list[list[list[Any]]]:
    if not path.exists():
        return []
    batches = []
    for line in path.read_bytes().splitlines():
        try:
            batches.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            # A torn last line: the process died inside its write; that batch was never acknowledged as spooled.
            log.warning("ledger: skipping a torn spool line of %d bytes", len(line))
    return batches


def _client_text(text: str) -> str:
    """The model name as the client sent it, made storable: PostgreSQL text cannot hold NUL (one such row would fail
    its batch, and the spool's replay, for ever), and a 4 MiB name must not land in a billing row."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text[:MAX_MODEL_CHARS]


class UsageLedger:
    """What the gateway holds: the writer, and a small pool of its own for the admin spend reports."""

    def __init__(self, config: LedgerConfig, registry: CollectorRegistry) -> None:
        dsn = os.environ.get(config.dsn_env)
        if not dsn:
            raise ConfigError(
                f"ledger.dsn_env: the environment variable {config.dsn_env!r} is not set; "
                "it must hold the ledger's postgresql:// DSN (from a Secret)"
            )
        if not dsn.startswith(("postgresql://", "postgres://")):
            # Never echo the value: it carries the password. A bad DSN would otherwise spool every row for ever.
            raise ConfigError(
                f"ledger.dsn_env: the environment variable {config.dsn_env!r} does not hold a postgresql:// DSN; "
                "it must hold the ledger's DSN (postgresql://USER:PASSWORD@HOST:5432/DB)"
            )
        self.config = config
        self.dsn = dsn
        self.metrics = LedgerMetrics(registry)
        self.writer = LedgerWriter(config, dsn, self.metrics, config.write_timeout_s)
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    async def start(self, accounting: Ledger | None) -> None:
        """Replay a spool, then seed `accounting` with this month's usage from the ledger (None: don't)."""
        await self.writer.start()
        if accounting is None:
            return
        try:
            usage = await month_to_date(await self.pool())
        except DB_ERRORS as exc:
            log.warning("ledger: month-to-date not restored from PostgreSQL, counting from the audit file: %r", exc)
            return
        for team, (tokens, cost) in usage.items():
            # Set, not add: the ledger holds every replica's requests, the audit file only this one's.
            found = accounting.usage(team)
            found.tokens, found.spend_usd = tokens, cost
        log.info("ledger: month-to-date restored for %d teams", len(usage))

    async def team_month_to_date(self, team: str, now: dt.datetime) -> tuple[int, float]:
        """One team's month-to-date (tokens, USD): what the shared limit store is rebuilt from."""
        usage = await month_to_date(await self.pool(), now)
        found = usage.get(team, (0, 0.0))
        return int(found[0]), float(found[1])

    async def pool(self) -> asyncpg.Pool:
        """Created on first use: reports are rare admin calls, not a reason to hold connections."""
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=0,
                    max_size=2,
                    timeout=self.config.report_timeout_s,
                    command_timeout=self.config.report_timeout_s,
                )
            return self._pool

    def append(self, record: dict[str, Any], key: str | None, ledger_id: str | None, fallback: bool) -> None:
        """One row from the audit record of a finished request (the same figures, never the prompt)."""
        ttft = record["ttft_s"]
        self.writer.append(
            (
                ledger_id or record["request_id"],
                record["time"],
                record["team"],
                key,
                _client_text(record["model"]),
                record["route"] or None,
                record["backend"],
                record["endpoint"] or None,
                record["status"],
                record["prompt_tokens"],
                record["completion_tokens"],
                record["cost_usd"],
                record["latency_s"] * 1000,
                None if ttft is None else ttft * 1000,
                record["attempts"],
                fallback,
            )
        )

    async def close(self) -> None:
        await self.writer.close()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), self.config.report_timeout_s)
