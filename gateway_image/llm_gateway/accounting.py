"""Token usage, cost, and each team's month-to-date totals."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import orjson

from .config import PriceConfig


def cost_usd(price: PriceConfig | None, prompt_tokens: int, completion_tokens: int) -> float:
    if price is None:
        return 0.0
    return (prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million) / 1_000_000


def month_of(now: dt.datetime) -> tuple[int, int]:
    return (now.year, now.month)


def seconds_to_next_month(now: dt.datetime) -> int:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return max(1, int((following - now).total_seconds()))


@dataclass
class TeamUsage:
    month: tuple[int, int]
    tokens: int = 0
    spend_usd: float = 0.0


class Ledger:
    """Month-to-date tokens and spend per team, in memory (per gateway replica); survives config reloads."""

    def __init__(self) -> None:
        self._usage: dict[str, TeamUsage] = {}

    def usage(self, team: str, now: dt.datetime | None = None) -> TeamUsage:
        month = month_of(now or dt.datetime.now(dt.UTC))
        found = self._usage.get(team)
        if found is None or found.month != month:
            found = self._usage[team] = TeamUsage(month)
        return found

    def record(self, team: str, tokens: int, spend_usd: float) -> TeamUsage:
        usage = self.usage(team)
        usage.tokens += tokens
        usage.spend_usd += spend_usd
        return usage

    def restore(self, audit_path: str | Path, now: dt.datetime | None = None) -> int:
        """Add this month's usage found in an audit file, so a restarted gateway keeps counting; returns lines used.

        Each replica counts only what it served itself: limits hold per replica unless the audit file is shared.
        """
        now = now or dt.datetime.now(dt.UTC)
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        used = 0
        with open(audit_path, "rb") as lines:
            for line in lines:
                try:
                    record = orjson.loads(line)
                    if record["time"] < month_start or not (record["prompt_tokens"] or record["completion_tokens"]):
                        continue
                    usage = self.usage(str(record["team"]), now)
                    usage.tokens += int(record["prompt_tokens"]) + int(record["completion_tokens"])
                    usage.spend_usd += float(record["cost_usd"])
                    used += 1
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a torn last line after a crash, or a line of another format
        return used
