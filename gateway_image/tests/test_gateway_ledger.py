"""The usage ledger through the real gateway, a fake upstream, the `openai` client and a real PostgreSQL: the rows
and their fields, the admin spend report, month-to-date across a restart, PostgreSQL killed under load, SIGTERM."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pytest
import yaml
from llm_gateway.ledger_migrations import migrate
from llm_gateway.server import stop_server
from pg_server import new_pg_server

from conftest import KEY, OTHER_KEY, Harness, backend, client, free_port, metric, team

pytestmark = pytest.mark.network

ADMIN_KEY = "sk-finance-admin-secret"
# $1 per million prompt tokens, $2 per million completion tokens: every cost is a whole number of 1e-8 dollars, so
# numeric(18, 8) holds it exactly and the test's own sums are exact Decimals.
PRICE = {"input_per_million": 1.0, "output_per_million": 2.0}
ANSWER_WORDS = 13  # fake_upstream.ANSWER: the completion tokens of every answer


def cost(prompt_tokens: int, completion_tokens: int = ANSWER_WORDS) -> Decimal:
    return (prompt_tokens * Decimal(1) + completion_tokens * Decimal(2)) / 1_000_000


def ledger_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"spool_path": str(tmp_path / "spool"), "batch_max_delay_s": 0.05, "write_timeout_s": 1, **extra}


def gateway_config(tmp_path: Path, *upstreams: Any, **extra: Any) -> dict[str, Any]:
    a, b = upstreams
    return {
        "backends": [
            backend("vllm-a", a, model="llama-3.1-8b", retry={"same_backend": 0}),
            backend("vllm-b", b, model="llama-3.1-8b"),
        ],
        "routes": [
            {"model": "llama", "targets": [{"backend": "vllm-a"}], "fallbacks": ["vllm-b"]},
            {"model": "small", "targets": [{"backend": "vllm-b"}]},
        ],
        "pricing": {"llama-3.1-8b": PRICE},
        "teams": [team("alpha", KEY), team("beta", OTHER_KEY), {**team("finance", ADMIN_KEY), "admin": True}],
        "ledger": ledger_config(tmp_path),
        **extra,
    }


async def _fetch(dsn: str, sql: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def rows(dsn: str, count: int | None = None) -> list[dict[str, Any]]:
    """The ledger's rows, once there are `count` of them (batches are written every 50 ms here)."""
    found: list[dict[str, Any]] = []
    for _ in range(100):
        found = asyncio.run(_fetch(dsn, "SELECT * FROM usage_ledger ORDER BY ts"))
        if count is None or len(found) >= count:
            break
        time.sleep(0.05)
    if count is not None:
        assert len(found) == count, found
    return found


@pytest.fixture
def ledger_db(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    asyncio.run(migrate(pg_dsn))
    monkeypatch.setenv("LEDGER_DSN", pg_dsn)
    return pg_dsn


def ask(url: str, content: str = "hello there", model: str = "llama", key: str = KEY, **options: Any) -> Any:
    return client(url, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], **options
    )


def test_rows_land_with_their_fields(harness: Harness, ledger_db: str, tmp_path: Path) -> None:
    a, b = harness.upstream("a"), harness.upstream("b")
    _, url = harness.gateway(gateway_config(tmp_path, a, b))
    chat_body = {"messages": [{"role": "user", "content": "hello there"}]}
    auth = {"Authorization": f"Bearer {KEY}"}
    plain = ask(url)
    stream = ask(url, stream=True, stream_options={"include_usage": True})
    for _ in stream.parse():
        pass
    a.behaviour.status = 500  # the route's target fails: its fallback answers
    fallback = ask(url, "one two three")
    with pytest.raises(openai.NotFoundError):
        ask(url, model="nope", key=OTHER_KEY)
    # A model name PostgreSQL's text cannot hold (NUL) must not stall the batch it is in, nor a long one bloat it.
    for model in ("no\x00pe", "x" * 5000):
        odd = httpx.post(url + "/v1/chat/completions", json={**chat_body, "model": model}, headers=auth)
        assert odd.status_code == 404
    duplicate = {"x-request-id": "client-chosen-id"}
    ask(url, extra_headers=duplicate)
    ask(url, extra_headers=duplicate)  # a client that reuses its id is billed twice, not once
    found = {r["request_id"]: r for r in rows(ledger_db, 8)}

    key_id = hashlib.sha256(KEY.encode()).hexdigest()[:12]  # what the team config's key_sha256 starts with
    first = found[plain.headers["x-request-id"]]
    assert {k: first[k] for k in ("team", "key_id", "model", "route", "backend", "endpoint", "status")} == {
        "team": "alpha",
        "key_id": key_id,
        "model": "llama",
        "route": "llama",
        "backend": "vllm-a",
        "endpoint": a.label,
        "status": 200,
    }
    assert (first["prompt_tokens"], first["completion_tokens"], first["cost_usd"]) == (2, 13, cost(2))
    assert (first["attempts"], first["fallback"], first["ttft_ms"]) == (1, False, None)
    assert first["latency_ms"] > 0
    streamed = found[stream.headers["x-request-id"]]
    assert (streamed["prompt_tokens"], streamed["completion_tokens"], streamed["cost_usd"]) == (2, 13, cost(2))
    assert streamed["ttft_ms"] is not None and 0 < streamed["ttft_ms"] <= streamed["latency_ms"]
    moved = found[fallback.headers["x-request-id"]]
    assert (moved["backend"], moved["endpoint"], moved["attempts"], moved["fallback"]) == ("vllm-b", b.label, 2, True)
    assert (moved["prompt_tokens"], moved["cost_usd"]) == (3, cost(3))
    refused = sorted((r for r in found.values() if r["status"] == 404), key=lambda r: r["ts"])
    assert [(r["team"], r["model"], r["backend"], r["cost_usd"]) for r in refused] == [
        ("beta", "nope", "none", Decimal(0)),
        ("alpha", "nope", "none", Decimal(0)),  # the NUL dropped
        ("alpha", "x" * 256, "none", Decimal(0)),  # cut to 256 characters
    ]
    chosen = sorted(r for r in found if r.startswith("client-chosen-id~"))
    assert len(chosen) == 2


def test_spend_report_json_csv_and_admin_only(harness: Harness, ledger_db: str, tmp_path: Path) -> None:
    a, b = harness.upstream("a"), harness.upstream("b")
    _, url = harness.gateway(gateway_config(tmp_path, a, b))
    asked = [
        ("alpha", "llama", "a b c"),
        ("alpha", "llama", "a b c d"),
        ("alpha", "small", "a"),
        ("beta", "llama", "a b"),
        ("beta", "llama", "a b"),
    ]
    for team_name, model, content in asked:
        ask(url, content, model=model, key=KEY if team_name == "alpha" else OTHER_KEY)
    rows(ledger_db, len(asked))
    expected: dict[tuple[str, str], dict[str, Any]] = {}
    for team_name, model, content in asked:
        words = len(content.split())
        figures = expected.setdefault(
            (team_name, model), {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": Decimal(0)}
        )
        figures["requests"] += 1
        figures["prompt_tokens"] += words
        figures["completion_tokens"] += ANSWER_WORDS
        figures["cost"] += cost(words)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    report = httpx.get(url + "/v1/spend", params={"from": today, "to": today, "group_by": "team,model"}, headers=admin)
    assert report.status_code == 200, report.text
    data = report.json()["data"]
    assert [(d["team"], d["model"]) for d in data] == sorted(expected)
    for d in data:
        want = expected[(d["team"], d["model"])]
        assert (d["requests"], d["errors"], d["prompt_tokens"], d["completion_tokens"]) == (
            want["requests"],
            0,
            want["prompt_tokens"],
            want["completion_tokens"],
        )
        assert Decimal(str(d["cost_usd"])) == want["cost"]
    assert Decimal(str(report.json()["total"]["cost_usd"])) == sum(w["cost"] for w in expected.values())

    as_csv = httpx.get(url + "/v1/spend", params={"group_by": "team,day", "format": "csv"}, headers=admin)
    assert as_csv.status_code == 200 and as_csv.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(line["team"], line["day"]) for line in lines] == [("alpha", today), ("beta", today)]
    for line in lines:
        mine = [w for (t, _), w in expected.items() if t == line["team"]]
        assert int(line["requests"]) == sum(w["requests"] for w in mine)
        assert Decimal(line["cost_usd"]) == sum(w["cost"] for w in mine)

    denied = httpx.get(url + "/v1/spend", headers={"Authorization": f"Bearer {KEY}"})
    assert denied.status_code == 403
    assert denied.json()["error"]["type"] == "permission_error" and denied.json()["error"]["code"] == "not_admin"
    assert httpx.get(url + "/v1/spend").status_code == 401
    bad = httpx.get(url + "/v1/spend", params={"group_by": "team,prompt"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"
    backwards = httpx.get(url + "/v1/spend", params={"from": "2026-11-30", "to": "2026-11-01"}, headers=admin)
    assert backwards.status_code == 400 and backwards.json()["error"]["param"] == "to"

    # The CLI prints the same report.
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm_gateway",
            "spend",
            "--from",
            today,
            "--to",
            today,
            "--group-by",
            "team",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    by_team = {d["team"]: Decimal(str(d["cost_usd"])) for d in yaml.safe_load(cli.stdout)["data"]}
    assert by_team == {t: sum(w["cost"] for (n, _), w in expected.items() if n == t) for t in ("alpha", "beta")}


def test_a_restarted_gateway_keeps_month_to_date_spend(harness: Harness, ledger_db: str, tmp_path: Path) -> None:
    a, b = harness.upstream("a"), harness.upstream("b")
    # Each answer costs cost(2) = $0.000028; the budget admits three answers (the third crosses it).
    budget = {"teams": [team("alpha", KEY, monthly_budget_usd=0.00007)]}
    _, url = harness.gateway(gateway_config(tmp_path, a, b, **budget))
    ask(url)
    ask(url)
    first, runner = harness.gateways.pop()
    harness.servers.run(stop_server(first, runner))  # drains, writes the batch
    # A new process: a fresh audit file, so only the ledger can tell it what the month has cost so far.
    restarted = {**gateway_config(tmp_path, a, b, **budget), "audit": {"path": str(tmp_path / "audit-2.jsonl")}}
    _, url = harness.gateway(restarted)
    assert metric(url, "llm_gateway_team_spend_usd", team="alpha") == pytest.approx(0.000056)
    ask(url)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(url)
    assert caught.value.response.json()["error"]["code"] == "monthly_budget_exceeded"


def test_postgres_killed_under_load_every_answer_has_one_row(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = new_pg_server()
    try:
        asyncio.run(migrate(server.dsn))
        monkeypatch.setenv("LEDGER_DSN", server.dsn)
        a, b = harness.upstream("a"), harness.upstream("b")
        gateway, url = harness.gateway(gateway_config(tmp_path, a, b))
        answered: list[str] = []

        async def load() -> None:
            async with httpx.AsyncClient(timeout=20) as http:

                async def worker() -> None:
                    while len(answered) < 300:
                        response = await http.post(
                            url + "/v1/chat/completions",
                            json={"model": "llama", "messages": [{"role": "user", "content": "a b"}]},
                            headers={"Authorization": f"Bearer {KEY}"},
                        )
                        assert response.status_code == 200
                        answered.append(response.headers["x-request-id"])

                async def faults() -> None:
                    while len(answered) < 80:
                        await asyncio.sleep(0.01)
                    await asyncio.to_thread(server.kill)
                    while len(answered) < 200:
                        await asyncio.sleep(0.01)
                    await asyncio.to_thread(server.start)

                await asyncio.gather(faults(), *(worker() for _ in range(6)))

        asyncio.run(load())
        assert gateway.usage_ledger is not None
        assert gateway.usage_ledger.metrics.spooled._value.get() > 0  # the kill did happen under load
        found = rows(server.dsn, len(answered))
        assert sorted(r["request_id"] for r in found) == sorted(answered)
        assert gateway.usage_ledger.metrics.dropped._value.get() == 0
    finally:
        server.close()


def test_sigterm_drains_the_batch_of_a_gateway_process(harness: Harness, ledger_db: str, tmp_path: Path) -> None:
    a, b = harness.upstream("a"), harness.upstream("b")
    port = free_port()
    config = gateway_config(tmp_path, a, b, ledger=ledger_config(tmp_path, batch_max_delay_s=60))
    config["server"] = {"host": "127.0.0.1", "port": port, "shutdown_delay_s": 0, "drain_timeout_s": 5}
    config["audit"] = {"path": str(tmp_path / "audit.jsonl")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    stderr = tmp_path / "gateway.stderr"
    process = subprocess.Popen(
        [sys.executable, "-m", "llm_gateway", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb"),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        ids = [ask(url).headers["x-request-id"] for _ in range(5)]
        assert rows(ledger_db) == []  # a 60 s batch: the rows wait in the process's memory
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, stderr.read_text()
        assert sorted(r["request_id"] for r in rows(ledger_db)) == sorted(ids)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
