"""Shared limits (llm_gateway/shared_limits.py) against a real redis-server: three gateway processes, one store."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from llm_gateway import shared_limits
from llm_gateway.accounting import Ledger
from llm_gateway.config import ConfigError, LimitStoreConfig, TeamConfig
from llm_gateway.errors import GatewayError
from llm_gateway.ledger_migrations import migrate
from llm_gateway.metrics import Metrics
from llm_gateway.shared_limits import (
    LimitStore,
    SharedLimits,
    glide_configuration,
    month_keys,
    pipelined_store,
    rate_retry_after,
)
from redis_server import RedisServer, redis_server

from conftest import KEY, Harness, backend, free_port, metric, sha256, team

__all__ = ["redis_server"]  # the fixture, imported for the tests below

pytestmark = pytest.mark.network

# The fake upstream answers 2 prompt + 13 completion tokens; at these prices one answer costs
# 2 * 0.1 + 13 * 0.2 = 2.8 USD (worked by hand, as in test_gateway_limits.py).
PRICING = {"llama-3.1-8b": {"input_per_million": 100_000, "output_per_million": 200_000}}
BODY = {"model": "llama", "messages": [{"role": "user", "content": "a b"}]}


def test_rate_retry_after_hand_worked() -> None:
    # Limit 50; previous window 60, current 20, half-way: 60 * 0.5 + 20 + 1 = 51 > 50, refused. The previous window
    # must weigh at most (50 - 1 - 20) / 60 = 0.4833, i.e. 51.67% of the window elapsed: 1.0 s more (ceil of 1.0).
    assert rate_retry_after(50, 60, 20, 0.5) == 1
    # Limit 60, current window full (60) at 10%: 54 s to the next window, where 60 must weigh <= 59 / 60, i.e.
    # 1/60 of it elapsed (1 s): 55 s.
    assert rate_retry_after(60, 0, 60, 0.1) == 55
    # Limit 100, previous 100, current 40, 30% in: 70 + 40 + 1 > 100; the previous must weigh <= 59 / 100, i.e.
    # 41% elapsed: 11% of 60 s = 6.6 s -> 7.
    assert rate_retry_after(100, 100, 40, 0.3) == 7


def test_glide_configuration_from_the_store_url() -> None:
    # redis[s]://[user[:password]@]host[:port][/db] (IANA, https://www.iana.org/assignments/uri-schemes/prov/rediss):
    # rediss is TLS; userinfo is percent-encoded ("%40" is "@", as infra's store URL builder writes an auth token).
    config = glide_configuration("rediss://gateway:t%40ken%2F1@cache.example.internal:6380/2", 0.25)
    address = config.addresses[0]
    assert (address.host, address.port, config.use_tls, config.database_id) == ("cache.example.internal", 6380, True, 2)
    assert config.credentials is not None
    assert (config.credentials.username, config.credentials.password) == ("gateway", "t@ken/1")
    assert config.request_timeout == 250  # milliseconds (glide's unit) from timeout_s
    assert config.advanced_config is not None and config.advanced_config.connection_timeout == 250
    # Defaults of the scheme: port 6379, database 0; no userinfo, no AUTH; redis:// is plain TCP.
    plain = glide_configuration("redis://10.0.3.7", 1)
    assert (plain.addresses[0].port, plain.use_tls, plain.database_id, plain.credentials) == (6379, False, 0, None)
    # ElastiCache's auth token alone (no user): AUTH <token>, i.e. the default user.
    token_only = glide_configuration("rediss://:secret@primary.cache:6379/0", 1)
    assert token_only.credentials is not None
    assert (token_only.credentials.username, token_only.credentials.password) == (None, "secret")
    with pytest.raises(ValueError, match="redis:// or rediss://"):
        glide_configuration("http://cache:6379", 1)


# ---- one store, three real gateway processes


class Fleet:
    """Gateway processes sharing one limit store; each is stopped at the end of the test."""

    def __init__(self, tmp_path: Path, store: RedisServer) -> None:
        self.tmp_path = tmp_path
        self.store = store
        self.processes: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []

    def start(self, config: dict[str, Any], count: int = 3) -> list[str]:
        self.urls = []
        for index in range(count):
            port = free_port()
            path = self.tmp_path / f"gateway-{index}.yaml"
            full = {
                **config,
                "server": {"host": "127.0.0.1", "port": port, "drain_timeout_s": 2, "shutdown_delay_s": 0},
                "audit": {"path": str(self.tmp_path / f"audit-{index}.jsonl")},
            }
            path.write_text(yaml.safe_dump(full))
            log = (self.tmp_path / f"gateway-{index}.stderr").open("ab")
            env = {**os.environ, "LIMIT_STORE_URL": self.store.url}
            process = subprocess.Popen(
                [sys.executable, "-m", "llm_gateway", "--config", str(path)], stderr=log, stdout=log, env=env
            )
            self.processes.append(process)
            self.urls.append(f"http://127.0.0.1:{port}")
        for index, url in enumerate(self.urls):
            self._wait_ready(url, index)
        return self.urls

    def _wait_ready(self, url: str, index: int) -> None:
        for _ in range(150):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError((self.tmp_path / f"gateway-{index}.stderr").read_text())

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes = []


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer) -> Iterator[Fleet]:
    group = Fleet(tmp_path, redis_server)
    try:
        yield group
    finally:
        group.stop()


def fleet_config(upstream: Any, on_failure: str = "open", **limits: Any) -> dict[str, Any]:
    return {
        "backends": [backend("vllm-a", upstream, model="llama-3.1-8b")],
        "routes": [{"model": "llama", "targets": [{"backend": "vllm-a"}]}],
        "pricing": PRICING,
        "teams": [team("alpha", KEY, **limits)],
        "limit_store": {"replicas": 3, "on_failure": on_failure, "timeout_s": 0.2},
    }


async def _send(urls: list[str], total: int, concurrency: int) -> list[int]:
    statuses: list[int] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    queue = list(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            index = queue.pop()
            reply = await client.post(urls[index % len(urls)] + "/v1/chat/completions", json=BODY, headers=headers)
            statuses.append(reply.status_code)

    async with httpx.AsyncClient(timeout=20) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return statuses


def send(urls: list[str], total: int, concurrency: int = 12) -> list[int]:
    return asyncio.run(_send(urls, total, concurrency))


def month_to_date(store: RedisServer, name: str = "alpha") -> tuple[int, float]:
    tokens_key, spend_key = month_keys(name, dt.datetime.now(dt.UTC))
    return int(store.command("GET", tokens_key) or 0), float(store.command("GET", spend_key) or 0)


def test_three_gateways_hold_one_rate_limit(harness: Harness, fleet: Fleet) -> None:
    upstream = harness.upstream("a")
    urls = fleet.start(fleet_config(upstream, requests_per_minute=60))
    statuses = send(urls, 200)
    assert set(statuses) <= {200, 429}, statuses
    # 60 a minute for the team across the fleet: within 5% (57..63); alone, each replica would admit 60 (180).
    assert 57 <= statuses.count(200) <= 63, statuses.count(200)
    assert len(upstream.requests) == statuses.count(200)
    for url in urls:  # decided by the store, not by each replica's fail-open share (which also sums to 60)
        assert metric(url, "llm_gateway_limit_store_up") == 1
        assert metric(url, "llm_gateway_limit_store_errors_total", operation="check") is None


def wait_for_spend(store: RedisServer, spend: float) -> None:
    for _ in range(200):
        if month_to_date(store)[1] >= spend - 1e-6:
            return
        time.sleep(0.01)
    raise AssertionError(f"spend never reached {spend}: {month_to_date(store)}")


def test_three_gateways_stop_a_team_at_its_budget_and_restarts_keep_it(harness: Harness, fleet: Fleet) -> None:
    upstream = harness.upstream("a")
    config = fleet_config(upstream, monthly_budget_usd=10)
    urls = fleet.start(config)
    # Each answer costs 2.8 USD: 4 answers reach 11.2 >= 10, the fifth is refused by whichever gateway gets it.
    for index in range(4):
        reply = httpx.post(
            urls[index % 3] + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert reply.status_code == 200, reply.text
        wait_for_spend(fleet.store, 2.8 * (index + 1))
    assert month_to_date(fleet.store) == (60, pytest.approx(11.2))
    for url in urls:  # each replica reports the fleet's month-to-date (dashboards take the max over replicas)
        assert metric(url, "llm_gateway_team_spend_usd", team="alpha") == pytest.approx(11.2)
    for url in urls:
        reply = httpx.post(url + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {KEY}"})
        assert reply.status_code == 429
        assert reply.json()["error"]["code"] == "monthly_budget_exceeded"
    # Every gateway restarted (new processes, empty memory): the month-to-date is in the store.
    fleet.stop()
    urls = fleet.start(config)
    for url in urls:
        reply = httpx.post(url + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {KEY}"})
        assert reply.status_code == 429 and reply.json()["error"]["code"] == "monthly_budget_exceeded"
    assert len(upstream.requests) == 4


def wait_for_metric(url: str, name: str, value: float, **labels: str) -> None:
    for _ in range(100):
        if metric(url, name, **labels) == value:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} never became {value}: {metric(url, name, **labels)}")


def test_store_killed_fails_open_with_each_replicas_share_then_recovers(harness: Harness, fleet: Fleet) -> None:
    upstream = harness.upstream("a")
    urls = fleet.start(fleet_config(upstream, requests_per_minute=30, monthly_budget_usd=1000))
    assert send(urls[:2], 2, concurrency=1) == [200, 200]
    wait_for_spend(fleet.store, 5.6)
    fleet.store.kill()
    statuses = send(urls, 60, concurrency=6)
    # No 5xx; each of the 3 replicas admits its share of 30 a minute: 10 each (a bucket of one minute's share,
    # refilling 1/6 a second, so a second or two of test adds at most a request or two).
    assert set(statuses) <= {200, 429}, statuses
    assert 30 <= statuses.count(200) <= 33, statuses.count(200)
    for url in urls:
        assert metric(url, "llm_gateway_limit_store_up") == 0
        assert (metric(url, "llm_gateway_limit_store_errors_total", operation="check") or 0) >= 1
    served_while_down = statuses.count(200)
    fleet.store.start()  # back, empty
    for url in urls:
        wait_for_metric(url, "llm_gateway_limit_store_up", 1)
    assert send(urls, 3, concurrency=1) == [200, 200, 200]
    # Without a ledger the month is seeded from what the replicas saw and held: at least the usage served while the
    # store was down (15 tokens an answer) and the three answers since reach the store, none is lost.
    tokens = 0
    for _ in range(100):
        tokens = month_to_date(fleet.store)[0]
        if tokens >= (served_while_down + 3) * 15:
            break
        time.sleep(0.05)
    assert tokens >= (served_while_down + 3) * 15


def test_store_killed_fails_closed_with_503_in_openai_format(harness: Harness, fleet: Fleet) -> None:
    upstream = harness.upstream("a")
    (url,) = fleet.start(fleet_config(upstream, on_failure="closed", requests_per_minute=1000), count=1)
    assert send([url], 1) == [200]
    fleet.store.kill()
    statuses = send([url], 10, concurrency=2)
    assert statuses == [503] * 10
    reply = httpx.post(url + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {KEY}"})
    error = reply.json()["error"]
    assert (reply.status_code, error["type"], error["code"]) == (503, "api_error", "limit_store_unavailable")
    assert reply.headers["Retry-After"] == "1" and error["request_id"] == reply.headers["x-request-id"]
    assert len(upstream.requests) == 1
    fleet.store.start()
    wait_for_metric(url, "llm_gateway_limit_store_up", 1)
    assert send([url], 2, concurrency=1) == [200, 200]
    # A store that hangs (SIGSTOP) rather than dies: the gateway answers 503 after timeout_s (0.2 s), well before the
    # test client's own 20 s timeout would turn the wait into an exception.
    assert fleet.store.process is not None
    fleet.store.process.send_signal(signal.SIGSTOP)
    try:
        assert send([url], 3, concurrency=3) == [503, 503, 503]
    finally:
        fleet.store.process.send_signal(signal.SIGCONT)
    wait_for_metric(url, "llm_gateway_limit_store_up", 1)
    assert send([url], 1) == [200]


# ---- the rebuild from the ledger, through the MonthToDate seam (llm_gateway.ledger.month_to_date once merged)


# The check through both clients: the hand-written one (the gateway's) and glide's (bench/limits.py compares them).
@pytest.mark.parametrize("client", ["hand", "glide"])
def test_two_replicas_rebuild_an_emptied_store_once(
    servers: Any, redis_server: RedisServer, client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared_limits, "STORE_CLIENT", {"hand": pipelined_store, "glide": LimitStore}[client])
    calls: list[str] = []

    async def from_ledger(team_name: str, now: dt.datetime) -> tuple[int, float]:
        calls.append(team_name)
        await asyncio.sleep(0.01)  # both replicas read the ledger before either writes
        return 1000, 12.5

    teams = [TeamConfig(name="alpha", key_sha256=[sha256(KEY)], monthly_budget_usd=20)]
    config = LimitStoreConfig(replicas=2, timeout_s=1)

    async def scenario() -> tuple[list[bool], tuple[int, float], str | None]:
        replicas = [
            SharedLimits(config, teams, Metrics(), Ledger(), from_ledger, url=redis_server.url) for _ in range(2)
        ]
        try:
            await asyncio.gather(*(replica.check("alpha") for replica in replicas))  # keys missing: rebuild
            for _ in range(100):
                if len(calls) == 2 and not any(replica._rebuilding for replica in replicas):
                    break
                await asyncio.sleep(0.01)
            replicas[0].record("alpha", 15, 9.0)  # 12.5 + 9 = 21.5 >= 20: over the budget
            await replicas[0].flush()
            # A late rebuild (a replica that saw the keys missing a moment ago) must not overwrite the count.
            written = [await replica.rebuild("alpha", dt.datetime.now(dt.UTC)) for replica in replicas]
            code = None
            try:
                await replicas[1].check("alpha")
            except GatewayError as error:
                code = error.code
            assert all(replica.up for replica in replicas)
            return written, month_to_date(redis_server), code
        finally:
            for replica in replicas:
                await replica.close()

    written, stored, code = servers.run(scenario())
    # Each replica read the ledger once when it found the keys missing, and once more when called again here.
    assert calls == ["alpha"] * 4
    assert written == [False, False]  # the keys exist by then: SET NX leaves them alone
    assert stored == (1015, pytest.approx(21.5))  # the ledger's figures once, not twice, plus the new usage
    assert code == "monthly_budget_exceeded"


def test_a_missing_store_url_fails_with_the_key_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIMIT_STORE_URL", raising=False)
    with pytest.raises(ConfigError) as caught:
        SharedLimits(LimitStoreConfig(), [], Metrics(), Ledger())
    assert str(caught.value).startswith("limit_store.url_env: environment variable LIMIT_STORE_URL is not set")


# ---- both real stores: the month-to-date rebuilt from the ledger (PostgreSQL) when the store (redis) loses it


def ledger_spend(dsn: str, count: int) -> tuple[int, float]:
    """The ledger's (rows, sum of cost_usd), once it holds `count` rows (batches are written every 50 ms here)."""

    async def read() -> tuple[int, float]:
        conn = await asyncpg.connect(dsn)
        try:
            found = await conn.fetchrow("SELECT count(*) AS n, coalesce(sum(cost_usd), 0) AS usd FROM usage_ledger")
            return int(found["n"]), float(found["usd"])
        finally:
            await conn.close()

    for _ in range(200):
        rows, spend = asyncio.run(read())
        if rows >= count:
            return rows, spend
        time.sleep(0.02)
    raise AssertionError(f"the ledger never held {count} rows: {rows}")


def test_an_emptied_store_is_rebuilt_from_the_ledger(
    harness: Harness, fleet: Fleet, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(migrate(pg_dsn))
    monkeypatch.setenv("LEDGER_DSN", pg_dsn)  # the gateway process inherits it (Fleet passes os.environ)
    upstream = harness.upstream("a")
    config = {
        **fleet_config(upstream, monthly_budget_usd=10),
        "limit_store": {"replicas": 1, "timeout_s": 0.5},
        "ledger": {"spool_path": str(fleet.tmp_path / "spool"), "batch_max_delay_s": 0.05},
    }
    (url,) = fleet.start(config, count=1)
    # Each answer costs 2.8 USD (PRICING): three answers spend 8.4 of the budget of 10, the fourth crosses it.
    assert send([url], 3, concurrency=1) == [200, 200, 200]
    assert ledger_spend(pg_dsn, 3) == (3, pytest.approx(8.4))
    wait_for_spend(fleet.store, 8.4)
    assert fleet.store.command("FLUSHALL") == "OK"
    assert month_to_date(fleet.store) == (0, 0.0)
    # The next request's check finds the month keys gone and rebuilds them from the ledger. This one asks for an
    # unknown model (404, nothing spent) so that no answer of its own is in flight while the ledger is read: an
    # answer that finishes within the ledger's batch delay of the rebuild is the documented gap (gateway README).
    gone = httpx.post(
        url + "/v1/chat/completions", json={**BODY, "model": "nope"}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert gone.status_code == 404
    # The month keys come back only through the rebuild (usage alone never creates them): the ledger's 8.4.
    wait_for_spend(fleet.store, 8.4)
    assert month_to_date(fleet.store) == (45, pytest.approx(8.4))
    # As if nothing had happened: the fourth answer is still admitted (8.4 < 10), the fifth refused at the budget.
    assert send([url], 1) == [200]
    wait_for_spend(fleet.store, 11.2)
    assert month_to_date(fleet.store) == (60, pytest.approx(11.2))
    reply = httpx.post(url + "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 429 and reply.json()["error"]["code"] == "monthly_budget_exceeded"
    assert len(upstream.requests) == 4
    # /metrics reports the fleet's month-to-date from the store: equal to the ledger's sum.
    _, ledger_sum = ledger_spend(pg_dsn, 6)  # the 404 and the refusal have rows too, at no cost
    assert metric(url, "llm_gateway_team_spend_usd", team="alpha") == pytest.approx(ledger_sum)
    assert ledger_sum == pytest.approx(11.2)
