"""The "Spend by team" dashboard's SQL runs against a real PostgreSQL holding the ledger table of the shared contract
(gateway config contracts, commit 622fbe4), with Grafana's macros expanded the way its PostgreSQL datasource does.

The server is Debian's `postgresql` (15, installed by the test tools script), started on 127.0.0.1 by the gateway
tests' PgServer (gateway_image/tests/pg_server.py) and migrated by the ledger's own migrations. Expected figures are
worked by hand from the rows inserted here.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from llm_gateway.ledger_migrations import migrate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway_image" / "tests"))
from pg_server import new_pg_server  # the gateway tests' PostgreSQL, shared

from components.spend_dashboard import BY_DAY_SQL, BY_MODEL_SQL, month_to_date_sql, spend_dashboard, teams_sql

THIS_MONTH = "date_trunc('month', now(), 'UTC') + interval '1 second'"
LAST_MONTH = "date_trunc('month', now(), 'UTC') - interval '1 day'"
ROWS = [
    # (request id, time, team, model, prompt, completion, cost)
    ("r1", THIS_MONTH, "search", "llama-8b", 1000, 500, "1.25"),
    ("r2", THIS_MONTH, "search", "llama-70b", 2000, 1000, "3.50"),
    ("r3", THIS_MONTH, "support-bot", "gpt-4o-mini", 100, 50, "0.40"),
    ("r4", THIS_MONTH, "ghost", "gpt-4o-mini", 10, 10, "2.00"),  # a team no longer in the stack config
    ("r5", LAST_MONTH, "search", "llama-8b", 1, 1, "100.00"),  # last month: not month to date
]
BUDGETS: dict[str, float | None] = {"platform": None, "search": 10.0, "support-bot": 5000.0}
ALL_TEAMS = "'ghost','platform','search','support-bot'"


@pytest.fixture(scope="module")
def psql() -> Iterator[list[str]]:
    # The ledger's own migrations (`python -m llm_gateway migrate`): the dashboard reads the table production has.
    server = new_pg_server()
    try:
        asyncio.run(migrate(server.dsn))
        command = [str(server.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "ledger"]
        command += ["-d", "postgres"]
        values = ", ".join(
            f"('{rid}', {ts}, '{team}', '{model}', 200, {prompt}, {completion}, {cost}, 1, false)"
            for rid, ts, team, model, prompt, completion, cost in ROWS
        )
        _run(
            command,
            "INSERT INTO usage_ledger (request_id, ts, team, model, status, prompt_tokens, completion_tokens, "
            f"cost_usd, attempts, fallback) VALUES {values}",
        )
        yield command
    finally:
        server.close()


def _run(command: list[str], sql: str) -> list[list[str]]:
    done = subprocess.run(
        [*command, "-v", "ON_ERROR_STOP=1", "-At", "-F", "|", "-c", sql], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, f"{sql}\n{done.stderr}"
    return [line.split("|") for line in done.stdout.splitlines() if line]


def grafana(sql: str, teams: str = ALL_TEAMS, days: int = 40) -> str:
    """Grafana's PostgreSQL macros: $__timeFilter(col) -> col BETWEEN from AND to; a multi-value variable -> a
    quoted, comma-separated list (https://grafana.com/docs/grafana/latest/datasources/postgres/query-editor/)."""
    time_filter = f"ts BETWEEN now() - interval '{days} days' AND now() + interval '1 day'"
    return sql.replace("$__timeFilter(ts)", time_filter).replace("$team", teams)


def test_month_to_date_against_budget(psql: list[str]) -> None:
    rows = _run(psql, grafana(month_to_date_sql(BUDGETS)))

    # team | spend this month | budget | % used | tokens; worked by hand from ROWS (last month's 100.00 excluded).
    def number(text: str) -> Decimal | None:
        return Decimal(text) if text else None

    assert [
        (team, Decimal(spend), number(budget), number(pct), int(tokens)) for team, spend, budget, pct, tokens in rows
    ] == [
        ("search", Decimal("4.75"), Decimal(10), Decimal("47.5"), 4500),
        ("ghost", Decimal("2.00"), None, None, 20),
        ("support-bot", Decimal("0.40"), Decimal(5000), Decimal("0.0"), 150),
        ("platform", Decimal(0), None, None, 0),
    ]


def test_month_to_date_honours_the_team_variable(psql: list[str]) -> None:
    rows = _run(psql, grafana(month_to_date_sql(BUDGETS), teams="'search'"))
    assert [row[0] for row in rows] == ["search"]


def test_spend_by_model_over_the_time_range(psql: list[str]) -> None:
    rows = _run(psql, grafana(BY_MODEL_SQL))
    assert [(team, model, Decimal(spend), int(requests)) for team, model, spend, requests, *_ in rows] == [
        ("search", "llama-8b", Decimal("101.25"), 2),
        ("search", "llama-70b", Decimal("3.50"), 1),
        ("ghost", "gpt-4o-mini", Decimal("2.00"), 1),
        ("support-bot", "gpt-4o-mini", Decimal("0.40"), 1),
    ]


def test_spend_by_day_is_a_time_series_per_team(psql: list[str]) -> None:
    rows = _run(psql, grafana(BY_DAY_SQL))
    by_team: dict[str, Decimal] = {}
    for _time, team, spend in rows:
        by_team[team] = by_team.get(team, Decimal(0)) + Decimal(spend)
    assert by_team == {"search": Decimal("104.75"), "ghost": Decimal("2.00"), "support-bot": Decimal("0.40")}
    # Two days for search (this month's first day and last month's last day), one row per (day, team).
    assert len(rows) == 4


def test_the_team_variable_lists_configured_and_spending_teams(psql: list[str]) -> None:
    assert [row[0] for row in _run(psql, teams_sql(BUDGETS))] == ["ghost", "platform", "search", "support-bot"]


def test_every_query_of_the_dashboard_runs(psql: list[str]) -> None:
    dashboard = spend_dashboard(BUDGETS)
    queries = [target["rawSql"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [variable["query"] for variable in dashboard["templating"]["list"]]
    assert len(queries) == 4
    for sql in queries:
        _run(psql, grafana(sql))
