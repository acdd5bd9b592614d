"""The usage ledger's writer and migrations against a real PostgreSQL (pg_server.py): idempotent batches, the spool
while PostgreSQL is down or killed, its bound, its replay, and month-to-date."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from llm_gateway.config import ConfigError, LedgerConfig
from llm_gateway.ledger import SPOOL_FILE, LedgerMetrics, LedgerWriter, UsageLedger, month_to_date
from llm_gateway.ledger_migrations import migrate
from llm_gateway.spend import ReportError, parse_query
from pg_server import new_pg_server
from prometheus_client import CollectorRegistry

from conftest import free_port

pytestmark = pytest.mark.network

# The contract of the shared table (the brief's column list), written out by hand, not read from the migration.
CONTRACT = {
    "request_id": ("text", "NO"),
    "ts": ("timestamp with time zone", "NO"),
    "team": ("text", "NO"),
    "key_id": ("text", "YES"),
    "model": ("text", "NO"),
    "route": ("text", "YES"),
    "backend": ("text", "YES"),
    "endpoint": ("text", "YES"),
    "status": ("smallint", "NO"),
    "prompt_tokens": ("integer", "NO"),
    "completion_tokens": ("integer", "NO"),
    "cost_usd": ("numeric", "NO"),
    "latency_ms": ("double precision", "YES"),
    "ttft_ms": ("double precision", "YES"),
    "attempts": ("smallint", "NO"),
    "fallback": ("boolean", "NO"),
}
NOW = dt.datetime.now(dt.UTC).timestamp()


def row(request_id: str, team: str = "alpha", ts: float = NOW, tokens: tuple[int, int] = (2, 13)) -> tuple[Any, ...]:
    cost = (tokens[0] * 1.0 + tokens[1] * 2.0) / 1_000_000
    return (
        request_id,
        ts,
        team,
        "0123456789ab",
        "llama",
        "llama",
        "vllm-a",
        "127.0.0.1:1",
        200,
        *tokens,
        cost,
        12.5,
        None,
        1,
        False,
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def writer(dsn: str, tmp_path: Path, **config: Any) -> tuple[LedgerWriter, LedgerMetrics]:
    settings: dict[str, Any] = {"spool_path": str(tmp_path / "spool"), "batch_max_delay_s": 0.05, **config}
    metrics = LedgerMetrics(CollectorRegistry())
    return LedgerWriter(LedgerConfig(**settings), dsn, metrics, write_timeout_s=2), metrics


def ids(dsn: str) -> list[str]:
    return [r["request_id"] for r in run(fetch(dsn, "SELECT request_id FROM usage_ledger ORDER BY request_id"))]


def test_migrations_from_empty_and_from_the_previous_version(pg_dsn: str) -> None:
    assert run(migrate(pg_dsn, target=1)) == [1]
    assert run(fetch(pg_dsn, "SELECT to_regclass('spend_daily') AS v"))[0]["v"] is None
    assert run(migrate(pg_dsn)) == [2]  # from N-1
    assert run(migrate(pg_dsn)) == []  # up to date: nothing, and no error
    columns = run(
        fetch(
            pg_dsn,
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'usage_ledger'",
        )
    )
    assert {c["column_name"]: (c["data_type"], c["is_nullable"]) for c in columns} == CONTRACT
    index = run(fetch(pg_dsn, "SELECT indexdef FROM pg_indexes WHERE indexname = 'usage_ledger_team_ts'"))
    assert index and index[0]["indexdef"].endswith("(team, ts)")
    versions = run(fetch(pg_dsn, "SELECT version, name FROM schema_migrations ORDER BY version"))
    assert [(v["version"], v["name"]) for v in versions] == [(1, "usage_ledger"), (2, "spend_daily")]


def test_two_migrators_at_once_apply_each_version_once(pg_dsn: str) -> None:
    async def both() -> list[list[int]]:
        return list(await asyncio.gather(migrate(pg_dsn), migrate(pg_dsn), migrate(pg_dsn)))

    results = run(both())
    # Without the advisory lock, the second CREATE TABLE fails (or a version row is inserted twice).
    assert sorted(v for applied in results for v in applied) == [1, 2]
    assert sorted(results) == [[], [], [1, 2]]


@pytest.fixture
def ledger_db(pg_dsn: str) -> str:
    run(migrate(pg_dsn))
    return pg_dsn


def test_a_retried_batch_counts_once(ledger_db: str, tmp_path: Path) -> None:
    ledger, metrics = writer(ledger_db, tmp_path)
    batch = [row(f"r{i}") for i in range(5)]

    async def twice() -> None:
        assert await ledger._insert(batch)
        assert await ledger._insert([*batch[2:], row("r5")])  # a retry that overlaps, plus one new row

    run(twice())
    assert ids(ledger_db) == [f"r{i}" for i in range(6)]
    assert metrics.written._value.get() == 6  # rows inserted, not rows sent (8)
    total = run(fetch(ledger_db, "SELECT sum(cost_usd) AS c FROM usage_ledger"))[0]["c"]
    assert str(total) == "0.00016800"  # 6 x (2 x $1 + 13 x $2) / 1e6, by hand


def test_rows_batched_by_count_and_by_time(ledger_db: str, tmp_path: Path) -> None:
    ledger, metrics = writer(ledger_db, tmp_path, batch_max_rows=3, batch_max_delay_s=30)

    async def scenario() -> tuple[int, int]:
        await ledger.start()
        for i in range(7):
            ledger.append(row(f"b{i}"))
        await asyncio.sleep(0.3)
        by_count = metrics.written._value.get()  # two full batches of 3 went; 1 row waits for the 30 s timer
        await ledger.close()
        return by_count, metrics.written._value.get()

    by_count, after_close = run(scenario())
    assert (by_count, after_close) == (6, 7)


def test_postgres_killed_rows_spool_then_replay_in_order_once(tmp_path: Path) -> None:
    server = new_pg_server()
    try:
        run(migrate(server.dsn))
        ledger, metrics = writer(server.dsn, tmp_path)

        async def scenario() -> None:
            await ledger.start()
            for i in range(10):
                ledger.append(row(f"k{i:03}"))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.kill)
            for i in range(10, 30):
                ledger.append(row(f"k{i:03}"))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            assert ledger.spool_bytes > 0
            await asyncio.to_thread(server.start)
            await asyncio.sleep(2.5)  # no new row: the spool is replayed all the same, after the retry pause
            assert await asyncio.to_thread(ids, server.dsn) == [f"k{i:03}" for i in range(30)]
            for i in range(30, 40):
                ledger.append(row(f"k{i:03}"))
            await asyncio.sleep(0.3)
            await ledger.close()

        run(scenario())
        assert ids(server.dsn) == [f"k{i:03}" for i in range(40)]
        assert metrics.spooled._value.get() >= 20
        assert metrics.dropped._value.get() == 0
        assert (tmp_path / "spool" / SPOOL_FILE).stat().st_size == 0 and ledger.spool_bytes == 0
    finally:
        server.close()


def test_spool_overflow_is_counted_and_a_restart_replays_the_spool(ledger_db: str, tmp_path: Path) -> None:
    down = f"postgresql://ledger@127.0.0.1:{free_port()}/postgres"  # nothing listens there
    ledger, metrics = writer(down, tmp_path, spool_max_bytes=1024 * 1024, batch_max_rows=100)
    rows = [row(f"o{i:05}") for i in range(12000)]  # ~1.5 MB as spooled JSON (127 bytes a row): over 1 MiB

    async def fill() -> None:
        await ledger.start()
        for item in rows:
            ledger.append(item)
        await ledger.close()

    run(fill())
    spooled, dropped = metrics.spooled._value.get(), metrics.dropped._value.get()
    spool = tmp_path / "spool" / SPOOL_FILE
    assert spooled + dropped == len(rows) and dropped > 0
    assert 1024 * 1024 - 20_000 < spool.stat().st_size <= 1024 * 1024  # full, within one batch's size
    # The next process on the same volume replays the spool first.
    again, _ = writer(ledger_db, tmp_path)

    async def restart() -> None:
        await again.start()
        await again.close()

    run(restart())
    assert ids(ledger_db) == [f"o{i:05}" for i in range(int(spooled))]  # the oldest rows, in order; the rest counted
    assert spool.stat().st_size == 0


def test_month_to_date_counts_this_utc_month_only(ledger_db: str, tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC)
    last_second_of_november = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    first_second = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
    ledger, _ = writer(ledger_db, tmp_path)
    rows = [
        row("m1", ts=last_second_of_november),
        row("m2", ts=first_second),
        row("m3", ts=now.timestamp()),
        row("m4", team="beta", ts=first_second, tokens=(10, 0)),
    ]
    run(ledger._insert(rows))

    async def mtd() -> dict[str, Any]:
        conn = await asyncpg.connect(ledger_db)
        try:
            return await month_to_date(conn, now)
        finally:
            await conn.close()

    usage = run(mtd())
    # alpha: two rows of 15 tokens and $0.000028; beta: 10 tokens at $1/M.
    assert usage == {"alpha": (30, pytest.approx(0.000056)), "beta": (10, pytest.approx(0.00001))}


def test_spend_query_parameters() -> None:
    today = dt.date(2026, 12, 2)
    default = parse_query({}, today)
    assert (default.start, default.end, default.group_by, default.format) == (
        dt.date(2026, 12, 1),
        today,
        ("team",),
        "json",
    )
    november = parse_query({"from": "2026-11-01", "to": "2026-11-30", "group_by": "team, model,day"}, today)
    assert november.group_by == ("team", "model", "day")
    for params, param in [
        ({"from": "2026-13-01"}, "from"),
        ({"from": "2026-11-30", "to": "2026-11-01"}, "to"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),  # 367 days counting both ends: over a (leap) year
        ({"group_by": "team,team"}, "group_by"),
        ({"group_by": "prompt"}, "group_by"),
        ({"format": "xml"}, "format"),
    ]:
        with pytest.raises(ReportError) as caught:
            parse_query(params, today)
        assert caught.value.param == param


def test_a_ledger_without_its_dsn_variable_fails_with_the_key_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGER_DSN", raising=False)
    with pytest.raises(ConfigError, match=r"^ledger\.dsn_env: the environment variable 'LEDGER_DSN' is not set"):
        UsageLedger(LedgerConfig(), CollectorRegistry())


class _BrokenConnection:
    """What asyncpg 0.32 sometimes leaves when the server dies mid-query (seen in the soak's postgres_kill): not
    closed, and its next call raises InternalClientError ("cannot switch to state 12; another operation (2) is in
    progress"), an exception outside asyncpg's PostgresError and InterfaceError (MagicStack/asyncpg#1069)."""

    terminated = False

    def is_closed(self) -> bool:
        return False

    async def execute(self, *args: Any, **kwargs: Any) -> str:
        raise asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress")

    def terminate(self) -> None:
        self.terminated = True


def test_a_broken_connection_spools_the_batch_and_a_new_connection_writes_it(ledger_db: str, tmp_path: Path) -> None:
    ledger, metrics = writer(ledger_db, tmp_path)
    broken = _BrokenConnection()
    ledger._conn = broken

    async def write() -> None:
        await ledger._write([row("x1"), row("x2")])

    run(write())
    # The stale connection is dropped and the batch written at once on a fresh one: neither lost nor spooled.
    assert broken.terminated
    assert ids(ledger_db) == ["x1", "x2"]
    assert (metrics.written._value.get(), metrics.spooled._value.get()) == (2, 0)
    down = f"postgresql://ledger@127.0.0.1:{free_port()}/postgres"
    dead, dead_metrics = writer(down, tmp_path / "dead")
    dead._conn = _BrokenConnection()
    dead.spool_path.parent.mkdir(parents=True)  # start() does this
    run(dead._write([row("y1")]))  # the retry cannot connect either: the batch goes to the spool, not away
    assert (dead_metrics.spooled._value.get(), dead.spool_bytes > 0) == (1, True)


def test_migrate_command_from_the_previous_version_and_when_up_to_date(pg_dsn: str) -> None:
    """The migration Job's command: exit 0 each time, the second run applies only what is new, the third nothing."""
    env = {**os.environ, "MY_LEDGER_DSN": pg_dsn}
    command = [sys.executable, "-m", "llm_gateway", "migrate", "--dsn-env", "MY_LEDGER_DSN"]
    outputs = []
    for extra in (["--to", "1"], [], []):
        done = subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stderr.strip().splitlines()[-1])
    assert outputs == [
        "ledger schema at version 1; applied now: [1]",
        "ledger schema at version 2; applied now: [2]",
        "ledger schema at version 2; applied now: none",
    ]
    unset = subprocess.run(
        command, env={**os.environ, "MY_LEDGER_DSN": ""}, capture_output=True, text=True, check=False
    )
    assert unset.returncode == 2 and "MY_LEDGER_DSN" in unset.stderr


def test_a_row_postgres_cannot_store_is_dropped_alone_and_counted(ledger_db: str, tmp_path: Path) -> None:
    ledger, metrics = writer(ledger_db, tmp_path)
    poison = row("p2", team="bad\x00team")  # PostgreSQL text holds no NUL: CharacterNotInRepertoireError (22021)
    negative = (*row("p4")[:9], -1, *row("p4")[10:])  # fits int4, so it is stored: not every odd value is refused

    async def write() -> None:
        await ledger.start()
        await ledger._write([row("p1"), poison, row("p3"), negative])
        await ledger._write([row("p5")])  # the next batch is not held behind the bad row
        await ledger.close()

    run(write())
    assert ids(ledger_db) == ["p1", "p3", "p4", "p5"]
    assert (metrics.dropped._value.get(), metrics.spooled._value.get(), metrics.written._value.get()) == (1, 0, 4)
