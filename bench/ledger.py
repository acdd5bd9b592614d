"""How many usage-ledger rows per second the gateway's writer puts into a local PostgreSQL.

    .venv/bin/python bench/ledger.py                     # 200,000 rows, batches of 500 (the default config)
    .venv/bin/python bench/ledger.py --rows 50000 --batch 100 --json

Starts its own PostgreSQL 15 (gateway_image/tests/pg_server.py: initdb in a temp dir, fsync off as in the tests,
synchronous_commit on), applies the migrations, then appends rows to `LedgerWriter` as the hot path does and times
until every row is committed (ON CONFLICT (request_id) DO NOTHING, the (team, ts) index maintained). The issue's
target is at least 5,000 rows/s on this machine. Also reports the hot path's cost of one `append` (deque append).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "gateway_image"))
sys.path.insert(0, str(ROOT / "gateway_image" / "tests"))

import asyncpg  # noqa: E402
from llm_gateway.config import LedgerConfig  # noqa: E402
from llm_gateway.ledger import LedgerMetrics, LedgerWriter  # noqa: E402
from llm_gateway.ledger_migrations import migrate  # noqa: E402
from pg_server import PgServer, postgres_bin_dir  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402


def make_rows(count: int) -> list[tuple[Any, ...]]:
    now = time.time()
    teams = ["search", "ads", "support", "research"]
    return [
        (
            f"bench-{i:09}",
            now,
            teams[i % 4],
            "0123456789ab",
            "llama",
            "llama",
            "vllm-llama",
            "10.0.0.1:8000",
            200,
            120,
            40,
            0.000201,
            85.5,
            12.5,
            1,
            False,
        )
        for i in range(count)
    ]


async def measure(dsn: str, rows: list[tuple[Any, ...]], batch: int, spool: Path) -> dict[str, float]:
    config = LedgerConfig(batch_max_rows=batch, batch_max_delay_s=0.2, spool_path=str(spool))
    metrics = LedgerMetrics(CollectorRegistry())
    writer = LedgerWriter(config, dsn, metrics)
    await writer.start()
    # The hot path: one deque append per request, timed alone.
    append_ns = []
    for row in rows[:10_000]:
        started = time.perf_counter_ns()
        writer.append(row)
        append_ns.append(time.perf_counter_ns() - started)
    writer.pending.clear()
    started = time.perf_counter()
    for offset in range(0, len(rows), 1000):
        for row in rows[offset : offset + 1000]:
            writer.append(row)
        await asyncio.sleep(0)  # a request's worth of scheduling: the writer task runs in between
    await writer.close()
    elapsed = time.perf_counter() - started
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM usage_ledger")
    finally:
        await conn.close()
    assert stored == len(rows), (stored, len(rows))
    assert metrics.spooled._value.get() == 0
    return {
        "rows": len(rows),
        "batch": batch,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(len(rows) / elapsed),
        "batch_mean_ms": round(_histogram_mean_ms(metrics), 2),
        "append_p50_ns": statistics.median(append_ns),
    }


def _histogram_mean_ms(metrics: LedgerMetrics) -> float:
    total = count = 0.0
    for sample in metrics.batch_seconds.collect()[0].samples:
        if sample.name.endswith("_sum"):
            total = sample.value
        elif sample.name.endswith("_count"):
            count = sample.value
    return 1000 * total / count if count else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="batch_max_rows")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        print("PostgreSQL is not installed: run scripts/install-postgres.sh", file=sys.stderr)
        return 2
    server = PgServer(bin_dir)
    server.start()
    try:
        asyncio.run(migrate(server.dsn))
        with tempfile.TemporaryDirectory() as spool:
            result = asyncio.run(measure(server.dsn, make_rows(args.rows), args.batch, Path(spool)))
    finally:
        server.close()
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['rows']} rows in {result['seconds']} s: {result['rows_per_s']} rows/s "
            f"(batches of {result['batch']}, mean batch insert {result['batch_mean_ms']} ms); "
            f"hot-path append median {result['append_p50_ns']:.0f} ns"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
