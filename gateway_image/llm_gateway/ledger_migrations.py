"""Versioned schema migrations of the usage ledger: `python -m llm_gateway migrate`.

The SQL files in llm_gateway/migrations/ (NNNN_name.sql) are applied in order, each in one transaction together
with its row in schema_migrations, under a session advisory lock so that two migration Jobs (or a Job and an init
container) never race: the second waits, then finds nothing left to do. Twenty lines of our own instead of alembic,
which would bring SQLAlchemy into the gateway image for plain SQL files.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger("llm_gateway.ledger.migrations")

# Any constant both migrators agree on; pg_advisory_lock takes a bigint. ("ledger" in ASCII.)
ADVISORY_LOCK_ID = 0x6C6564676572
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped in the package, in version order."""
    found = []
    for entry in resources.files("llm_gateway").joinpath("migrations").iterdir():
        match = FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"ledger migrations must be numbered 1..N without gaps, found {versions}")
    return found


async def applied_versions(conn: asyncpg.Connection) -> list[int]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return []
    return [row[0] for row in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]


async def migrate(dsn: str, target: int | None = None, timeout_s: float = 30) -> list[int]:
    """Apply the pending migrations up to `target` (default: all); return the versions applied now."""
    conn = await asyncpg.connect(dsn, timeout=timeout_s)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_ID)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = set(await applied_versions(conn))
            applied = []
            for migration in migrations():
                if migration.version in done or (target is not None and migration.version > target):
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                log.info("applied ledger migration %04d_%s", migration.version, migration.name)
                applied.append(migration.version)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_ID)
    finally:
        await conn.close()
