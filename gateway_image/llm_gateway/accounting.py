"""Token usage, cost, and each team's month-to-date totals."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

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
