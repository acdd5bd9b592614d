"""Cost, month boundaries and the ledger, with figures worked out by hand."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from llm_gateway.accounting import Ledger, TeamUsage, cost_usd, month_of, seconds_to_next_month
from llm_gateway.config import PriceConfig

UTC = dt.UTC


def test_cost_is_per_million_tokens_each_way() -> None:
    price = PriceConfig(input_per_million=3.0, output_per_million=15.0)
    # 2,000 prompt tokens at $3/M = $0.006; 500 completion tokens at $15/M = $0.0075; total $0.0135.
    assert abs(cost_usd(price, 2000, 500) - 0.0135) < 1e-12
    assert cost_usd(price, 1_000_000, 0) == 3.0
    assert cost_usd(price, 0, 1_000_000) == 15.0
    assert cost_usd(None, 2000, 500) == 0.0


def test_month_of_and_seconds_to_next_month() -> None:
    assert month_of(dt.datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == (2026, 12)
    # 31 Dec 23:00 → 1 Jan 00:00 is one hour; mid-February 2028 (a leap year) to 1 March: 14.5 days.
    assert seconds_to_next_month(dt.datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == 3600
    assert seconds_to_next_month(dt.datetime(2028, 2, 15, 12, 0, tzinfo=UTC)) == 14 * 86400 + 12 * 3600
    assert seconds_to_next_month(dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC)) == 31 * 86400
    # Never 0, so a Retry-After is always at least a second.
    assert seconds_to_next_month(dt.datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC)) == 1


def test_ledger_counts_per_team_and_starts_a_new_month_at_zero() -> None:
    ledger = Ledger()
    fresh = ledger.usage("alpha", dt.datetime(2026, 3, 5, tzinfo=UTC))
    assert fresh == TeamUsage((2026, 3), 0, 0.0)
    fresh.tokens, fresh.spend_usd = 100, 1.5
    assert ledger.usage("alpha", dt.datetime(2026, 3, 30, tzinfo=UTC)) is fresh
    assert ledger.usage("beta", dt.datetime(2026, 3, 30, tzinfo=UTC)).tokens == 0
    april = ledger.usage("alpha", dt.datetime(2026, 4, 1, tzinfo=UTC))
    assert april == TeamUsage((2026, 4), 0, 0.0)
    assert ledger.usage("alpha", dt.datetime(2026, 4, 2, tzinfo=UTC)) is april


def test_record_adds_to_the_current_month() -> None:
    ledger = Ledger()
    ledger.record("alpha", 10, 0.25)
    usage = ledger.record("alpha", 5, 0.5)
    assert (usage.tokens, usage.spend_usd) == (15, 0.75)
    assert ledger.usage("alpha").month == month_of(dt.datetime.now(UTC))
    assert (ledger.usage("alpha").tokens, ledger.usage("beta").tokens) == (15, 0)


def test_seconds_to_next_month_counts_from_the_exact_instant() -> None:
    # 1 µs after 23:00 on 31 December: 3,599.999999 s are left, truncated to 3,599.
    assert seconds_to_next_month(dt.datetime(2026, 12, 31, 23, 0, 0, 1, tzinfo=UTC)) == 3599
    # 23:30:30.5 on 30 April: 29 min 29.5 s to 1 May → 1,769.
    assert seconds_to_next_month(dt.datetime(2026, 4, 30, 23, 30, 30, 500000, tzinfo=UTC)) == 1769


def test_restore_adds_this_months_lines_and_skips_the_rest(tmp_path: Path) -> None:
    # Minutes, seconds and microseconds on `now`: the month still starts at 00:00:00.000000 on the 1st.
    now = dt.datetime(2026, 3, 20, 12, 34, 56, 789000, tzinfo=UTC)
    march = dt.datetime(2026, 3, 1, tzinfo=UTC).timestamp()

    def line(**fields: object) -> str:
        record = {"time": march + 60, "team": "alpha", "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.5}
        return json.dumps({**record, **fields})

    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(
        "\n".join(
            [
                '{"torn": ',  # a bad line first: the lines after it still count
                line(),
                line(time=march),  # the first second of the month counts
                line(time=march - 1),  # last month
                line(prompt_tokens=0, completion_tokens=0),  # a refused request
                line(prompt_tokens=7, completion_tokens=0, cost_usd=0.25),  # prompt only still counts
                line(prompt_tokens=0, completion_tokens=3, cost_usd=0.125, team="beta"),
                '{"time": 1, "team": "alpha"}',  # another format: no token fields
                line(prompt_tokens="x"),  # a bad value
                '{"time": 1, "team": "',
            ]
        ).encode()
        + b"\xc3"  # a write torn inside a two-byte UTF-8 character: not text, and no reason to stop
    )
    ledger = Ledger()
    assert ledger.restore(audit, now) == 4
    alpha = ledger.usage("alpha", now)
    assert (alpha.tokens, alpha.spend_usd) == (15 + 15 + 7, 0.5 + 0.5 + 0.25)
    beta = ledger.usage("beta", now)
    assert (beta.tokens, beta.spend_usd) == (3, 0.125)
