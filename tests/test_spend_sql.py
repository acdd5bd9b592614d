"""The "Spend by team" dashboard's SQL runs against a real PostgreSQL holding the ledger table of the shared contract
(gateway config contracts, commit 622fbe4), with Grafana's macros expanded the way its PostgreSQL datasource does.

The server is Debian's `postgresql` (15, installed by the test tools script), started on 127.0.0.1 on a free port in a
temporary directory and stopped after the module. Expected figures are worked by hand from the rows inserted here.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from components.spend_dashboard import BY_DAY_SQL, BY_MODEL_SQL, month_to_date_sql, spend_dashboard, teams_sql

# The ledger table as the shared contract states it (the ledger engineer's first migration creates it in production).
LEDGER_TABLE = """
CREATE TABLE usage_ledger (
  request_id text PRIMARY KEY, ts timestamptz NOT NULL, team text NOT NULL, key_id text, model text NOT NULL,
  route text, backend text, endpoint text, status smallint NOT NULL, prompt_tokens integer NOT NULL,
  completion_tokens integer NOT NULL, cost_usd numeric(18,8) NOT NULL, latency_ms double precision,
  ttft_ms double precision, attempts smallint NOT NULL, fallback boolean NOT NULL
);
CREATE INDEX usage_ledger_team_ts ON usage_ledger (team, ts);
"""
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


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


def _as_server_user(tmp: str) -> list[str]:
    """initdb and postgres refuse to run as root: as root (a container), run them as the `postgres` user (created by
    Debian's package) or `nobody`, owning the temporary directory."""
    if os.geteuid() != 0:
        return []
    import pwd

    user = next((name for name in ("postgres", "nobody") if _has_user(name)), None)
    assert user is not None, "no unprivileged user to run PostgreSQL as"
    entry = pwd.getpwnam(user)
    os.chown(tmp, entry.pw_uid, entry.pw_gid)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def psql() -> Iterator[list[str]]:
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed (scripts/install-test-tools.sh installs them)")
    with tempfile.TemporaryDirectory(prefix="spend-sql-") as tmp:
        data, port = Path(tmp) / "data", _free_port()
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        as_user = _as_server_user(tmp)
        subprocess.run(
            [*as_user, bindir / "initdb", "-D", data, "-U", "ledger", "-A", "trust"],
            check=True,
            capture_output=True,
            env=env,
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp} -c fsync=off"
        subprocess.run(
            [
                *as_user,
                bindir / "pg_ctl",
                "-D",
                data,
                "-o",
                options,
                "-l",
                Path(tmp) / "log",
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        try:
            command = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "ledger", "-d", "postgres"]
            _run(command, LEDGER_TABLE)
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
            subprocess.run(
                [*as_user, bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], capture_output=True, env=env
            )


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
