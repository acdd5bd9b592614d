"""Spend reports from the usage ledger: GET /v1/spend (admin keys) and `python -m llm_gateway spend` print the same.

Days are UTC calendar days; `to` is inclusive, so from=2026-11-01&to=2026-11-30 is November.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

# group_by name -> SQL expression; only these names ever reach the query text.
GROUPS = {
    "team": "team",
    "model": "model",
    "day": "(ts AT TIME ZONE 'UTC')::date",
    "backend": "backend",
    "key_id": "key_id",
}
FORMATS = ("json", "csv", "table")
FIGURES = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd")
MAX_DAYS = 366


class ReportError(ValueError):
    """A bad parameter: `param` names it, the message says what is accepted."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ReportQuery:
    start: dt.date
    end: dt.date  # inclusive
    group_by: tuple[str, ...]
    format: str


def parse_query(params: Mapping[str, str], today: dt.date | None = None) -> ReportQuery:
    """from/to (YYYY-MM-DD, default: this month to date), group_by (comma list, default team), format (json)."""
    today = today or dt.datetime.now(dt.UTC).date()
    start = _date(params, "from", today.replace(day=1))
    end = _date(params, "to", today)
    if end < start:
        raise ReportError("to", f"'to' ({end}) is before 'from' ({start}).")
    if (end - start).days >= MAX_DAYS:
        raise ReportError("to", f"The range is longer than {MAX_DAYS} days; ask for a year at most.")
    group_by = tuple(name.strip() for name in params.get("group_by", "team").split(",") if name.strip())
    unknown = [name for name in group_by if name not in GROUPS]
    if unknown or not group_by or len(set(group_by)) != len(group_by):
        raise ReportError("group_by", f"'group_by' must be distinct names among {', '.join(GROUPS)}; got {unknown}.")
    fmt = params.get("format", "json")
    if fmt not in FORMATS:
        raise ReportError("format", f"'format' must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    return ReportQuery(start, end, group_by, fmt)


def _date(params: Mapping[str, str], name: str, default: dt.date) -> dt.date:
    text = params.get(name)
    if text is None:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ReportError(name, f"'{name}' must be a date YYYY-MM-DD, not {text!r}.") from None


async def spend_rows(db: asyncpg.Connection | asyncpg.Pool, query: ReportQuery) -> list[dict[str, Any]]:
    keys = ", ".join(f"{GROUPS[name]} AS {name}" for name in query.group_by)
    positions = ", ".join(str(i) for i in range(1, len(query.group_by) + 1))
    sql = (
        f"SELECT {keys}, count(*) AS requests, count(*) FILTER (WHERE status >= 400) AS errors, "
        "sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens, "
        "sum(cost_usd) AS cost_usd FROM usage_ledger WHERE ts >= $1 AND ts < $2 "
        f"GROUP BY {positions} ORDER BY {positions}"
    )
    start = dt.datetime.combine(query.start, dt.time(), dt.UTC)
    end = dt.datetime.combine(query.end + dt.timedelta(days=1), dt.time(), dt.UTC)
    return [dict(row) for row in await db.fetch(sql, start, end)]


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {name: sum((row[name] for row in rows), Decimal(0) if name == "cost_usd" else 0) for name in FIGURES}


def render(query: ReportQuery, rows: list[dict[str, Any]]) -> tuple[bytes, str]:
    """The body and its content type."""
    if query.format == "json":
        body = {
            "object": "spend_report",
            "from": query.start.isoformat(),
            "to": query.end.isoformat(),
            "group_by": list(query.group_by),
            "data": [_plain(row) for row in rows],
            "total": _plain(totals(rows)),
        }
        return orjson.dumps(body), "application/json"
    header = [*query.group_by, *FIGURES]
    if query.format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([_text(row[name]) for name in header])
        return out.getvalue().encode(), "text/csv"
    table = [header, *([_text(row[name]) for name in header] for row in rows)]
    total = totals(rows)
    table.append(["total", *[""] * (len(query.group_by) - 1), *(_text(total[name]) for name in FIGURES)])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in table]
    return ("\n".join(line.rstrip() for line in lines) + "\n").encode(), "text/plain"


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    # cost_usd as a JSON number: numeric(18, 8) holds 8 decimals, which a double keeps exactly up to ~$10^7.
    return {
        k: float(v) if isinstance(v, Decimal) else v.isoformat() if isinstance(v, dt.date) else v
        for k, v in row.items()
    }


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
