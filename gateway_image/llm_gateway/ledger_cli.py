"""`python -m llm_gateway migrate` and `python -m llm_gateway spend`: the ledger's two commands.

migrate: apply the ledger's schema migrations to $LEDGER_DSN (the Job that runs before the gateway rolls); exits 0
when the schema is up to date. spend: the report of GET /v1/spend, as a table, CSV or JSON, for finance.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

import asyncpg

from .ledger import DB_ERRORS
from .ledger_migrations import migrate, migrations
from .spend import ReportError, ReportQuery, parse_query, render, spend_rows

COMMANDS = ("migrate", "spend")


def _dsn(parser: argparse.ArgumentParser, env: str) -> str:
    dsn = os.environ.get(env)
    if not dsn:
        parser.error(f"the environment variable {env} (--dsn-env) is not set; it holds the postgresql:// DSN")
    return dsn


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="llm-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("migrate", help="apply the ledger's schema migrations")
    up.add_argument("--dsn-env", default="LEDGER_DSN", help="environment variable holding the DSN")
    up.add_argument("--to", type=int, help="stop at this version (default: the latest)")
    up.add_argument("--timeout", type=float, default=30, help="seconds to wait for the connection")
    report = commands.add_parser("spend", help="spend by team, model, day from the ledger")
    report.add_argument("--dsn-env", default="LEDGER_DSN", help="environment variable holding the DSN")
    report.add_argument("--from", dest="start", help="first UTC day, YYYY-MM-DD (default: first of this month)")
    report.add_argument("--to", dest="end", help="last UTC day, inclusive (default: today)")
    report.add_argument("--group-by", default="team", help="comma list of team, model, day, backend, key_id")
    report.add_argument("--format", default="table", help="table, csv or json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="llm-gateway: %(message)s", stream=sys.stderr)
    dsn = _dsn(parser, args.dsn_env)
    try:
        if args.command == "migrate":
            applied = asyncio.run(migrate(dsn, args.to, args.timeout))
            latest = args.to or migrations()[-1].version
            print(f"ledger schema at version {latest}; applied now: {applied or 'none'}", file=sys.stderr)
            return 0
        params = {"group_by": args.group_by, "format": args.format}
        params |= {k: v for k, v in (("from", args.start), ("to", args.end)) if v is not None}
        try:
            query = parse_query(params)
        except ReportError as exc:
            parser.error(f"--{exc.param.replace('_', '-')}: {exc}")
        body, _ = render(query, asyncio.run(_report(dsn, query)))
        sys.stdout.write(body.decode())
        return 0
    except DB_ERRORS as exc:
        print(f"llm-gateway {args.command}: cannot reach the ledger database: {exc!r}", file=sys.stderr)
        return 1


async def _report(dsn: str, query: ReportQuery) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        return await spend_rows(conn, query)
    finally:
        await conn.close()
