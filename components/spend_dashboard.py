"""Grafana's view of the usage ledger: a PostgreSQL datasource and the "Spend by team" dashboard.

Pure builders, no Pulumi. The SQL reads only the ledger table of the shared contract:
usage_ledger(request_id, ts timestamptz, team, key_id, model, route, backend, endpoint, status, prompt_tokens,
completion_tokens, cost_usd numeric(18,8), latency_ms, ttft_ms, attempts, fallback), indexed on (team, ts).
Budgets are not in the database: they are the stack's `gateway.teams[].monthly_budget_usd`, written into the
dashboard's SQL as a VALUES list, so the dashboard shows the budgets the gateway enforces.

Months are calendar months in UTC (`date_trunc('month', now(), 'UTC')`, PostgreSQL >= 12), like the gateway's
month-to-date counters.
"""

from __future__ import annotations

from typing import Any

DATASOURCE_UID = "llm-ledger"
# The plugin id of Grafana's built-in PostgreSQL datasource since Grafana 10.2 (`postgres` before); the chart pinned
# in components/monitoring.py ships Grafana 12 (grafana/grafana@v12.0.0: public/app/plugins/datasource/
# grafana-postgresql-datasource/plugin.json, "id": "grafana-postgresql-datasource").
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DASHBOARD_UID = "llm-spend-by-team"
DATASOURCE = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
MONTH_START = "date_trunc('month', now(), 'UTC')"


def datasource_provisioning(host: str, port: int, database: str, user: str, password: str, tls: bool) -> dict[str, Any]:
    """Grafana's datasource provisioning file (https://grafana.com/docs/grafana/latest/datasources/postgres/
    #provision-the-data-source); the password goes in secureJsonData, which Grafana stores encrypted."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Usage ledger",
                "uid": DATASOURCE_UID,
                "type": DATASOURCE_TYPE,
                "access": "proxy",
                "url": f"{host}:{port}",
                "user": user,
                "editable": False,
                "jsonData": {
                    "database": database,
                    "sslmode": "require" if tls else "disable",
                    "postgresVersion": 1600,
                    "timescaledb": False,
                    # Dashboards only read; a few connections are plenty and leave the gateway's pool its room.
                    "maxOpenConns": 5,
                    "maxIdleConns": 2,
                },
                "secureJsonData": {"password": password},
            }
        ],
    }


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def budgets_sql(budgets: dict[str, float | None]) -> str:
    """The configured teams and budgets as a VALUES list (NULL = no budget)."""
    rows = [
        f"({_sql_literal(team)}, {'NULL' if budget is None else repr(float(budget))}::numeric)"
        for team, budget in sorted(budgets.items())
    ]
    return "VALUES " + ", ".join(rows) if rows else "SELECT NULL::text, NULL::numeric WHERE false"


def month_to_date_sql(budgets: dict[str, float | None]) -> str:
    """One row per team: spend this month, its budget and the share used (teams with spend and no config too)."""
    return (
        f"WITH budget(team, budget_usd) AS ({budgets_sql(budgets)}),\n"
        "spend AS (\n"
        "  SELECT team, SUM(cost_usd) AS spend_usd, SUM(prompt_tokens + completion_tokens) AS tokens\n"
        f"  FROM usage_ledger WHERE ts >= {MONTH_START} GROUP BY team\n"
        ")\n"
        "SELECT COALESCE(s.team, b.team) AS team, COALESCE(s.spend_usd, 0) AS spend_usd, b.budget_usd,\n"
        "  ROUND(100 * COALESCE(s.spend_usd, 0) / NULLIF(b.budget_usd, 0), 1) AS budget_used_pct,\n"
        "  COALESCE(s.tokens, 0) AS tokens\n"
        "FROM spend s FULL OUTER JOIN budget b ON b.team = s.team\n"
        "WHERE COALESCE(s.team, b.team) IN ($team)\n"
        "ORDER BY spend_usd DESC, team"
    )


BY_MODEL_SQL = (
    "SELECT team, model, SUM(cost_usd) AS spend_usd, COUNT(*) AS requests,\n"
    "  SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens\n"
    "FROM usage_ledger\n"
    "WHERE $__timeFilter(ts) AND team IN ($team)\n"
    "GROUP BY team, model\n"
    "ORDER BY spend_usd DESC, team, model"
)
BY_DAY_SQL = (
    "SELECT date_trunc('day', ts, 'UTC') AS time, team AS metric, SUM(cost_usd) AS spend_usd\n"
    "FROM usage_ledger\n"
    "WHERE $__timeFilter(ts) AND team IN ($team)\n"
    "GROUP BY 1, 2\n"
    "ORDER BY 1"
)


def teams_sql(budgets: dict[str, float | None]) -> str:
    """The team variable's values: the configured teams and any team with spend in the last three months."""
    return (
        f"SELECT team FROM ({budgets_sql(budgets)}) AS budget(team, budget_usd)\n"
        f"UNION SELECT DISTINCT team FROM usage_ledger WHERE ts >= {MONTH_START} - interval '3 months'\n"
        "ORDER BY 1"
    )


def _panel(panel_id: int, title: str, kind: str, sql: str, fmt: str, grid: dict[str, int]) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "editorMode": "code",
                "format": fmt,
                "rawQuery": True,
                "rawSql": sql,
            }
        ],
    }


def spend_dashboard(budgets: dict[str, float | None]) -> dict[str, Any]:
    """The "Spend by team" dashboard: month to date against budget, spend by model, spend by day."""
    team_variable = {
        "name": "team",
        "label": "Team",
        "type": "query",
        "datasource": DATASOURCE,
        "query": teams_sql(budgets),
        "definition": teams_sql(budgets),
        "includeAll": True,
        "multi": True,
        "current": {},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
    }
    mtd = _panel(
        1,
        "Month to date vs budget (UTC month)",
        "table",
        month_to_date_sql(budgets),
        "table",
        {"h": 9, "w": 24, "x": 0, "y": 0},
    )
    by_model = _panel(
        2, "Spend by model (time range)", "table", BY_MODEL_SQL, "table", {"h": 9, "w": 24, "x": 0, "y": 9}
    )
    by_day = _panel(
        3, "Spend by day (USD)", "timeseries", BY_DAY_SQL, "time_series", {"h": 9, "w": 24, "x": 0, "y": 18}
    )
    by_day["fieldConfig"] = {
        "defaults": {"unit": "currencyUSD", "custom": {"drawStyle": "bars", "stacking": {"mode": "normal"}}},
        "overrides": [],
    }
    mtd["fieldConfig"] = {
        "defaults": {},
        "overrides": [
            {
                "matcher": {"id": "byName", "options": "spend_usd"},
                "properties": [{"id": "unit", "value": "currencyUSD"}],
            }
        ],
    }
    return {
        "uid": DASHBOARD_UID,
        "title": "Spend by team",
        "description": "Usage ledger (PostgreSQL): what each team spent, on which models, against its monthly budget.",
        "tags": ["llm-serving", "spend"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "timezone": "utc",
        "time": {"from": "now-30d", "to": "now"},
        "refresh": "5m",
        "templating": {"list": [team_variable]},
        "annotations": {"list": []},
        "links": [],
        "panels": [mtd, by_model, by_day],
    }
