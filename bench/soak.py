"""Soak the real gateway under faults: steady load while upstreams die, hang, slow down, fail, and the config reloads.

    .venv/bin/python bench/soak.py --seconds 120            # report as text
    .venv/bin/python bench/soak.py --seconds 120 --json     # report as JSON

Everything runs as separate processes on 127.0.0.1: `python -m llm_gateway --config FILE` and N fake upstreams
(gateway_image/tests/fake_upstream.py, plus a `/_control` route to change their behaviour while they run). The load
is C concurrent clients (aiohttp), half streaming. Each request ends as one of:
  ok     a 200 with a complete answer (JSON with choices, or a stream ending in `data: [DONE]`)
  error  a clear error: a 4xx/5xx in OpenAI's error format, or a stream that ends with an error event
  lost   anything else: connection dropped, no answer in time, a stream cut without an error event and without [DONE]
The gateway's resident memory (VmRSS) is read after warm-up and at the end. With --ledger the gateway writes its
usage ledger to a PostgreSQL the soak starts (gateway_image/tests/pg_server.py) and SIGKILLs now and then
(`postgres_kill`); the report then says whether every ok answer has exactly one ledger row ("ledger rows == ok").
gateway_image/tests/test_soak.py runs
this for ~30 s and asserts lost == 0 and bounded RSS growth; docs/reliability.md holds the figures of longer runs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
FAKE_UPSTREAM_DIR = ROOT / "gateway_image" / "tests"
API_KEY = "sk-soak-team-key"
MODEL = "llama"


# ---- the upstream process: a FakeUpstream with a control route -------------------------------------------------


def serve_upstream(name: str, port: int, chunk_delay_s: float) -> None:
    """Entry point of one upstream process (`soak.py upstream ...`)."""
    sys.path.insert(0, str(FAKE_UPSTREAM_DIR))
    import uvloop
    from aiohttp import web
    from fake_upstream import Behaviour, FakeUpstream

    defaults = Behaviour(chunk_delay_s=chunk_delay_s)

    class ControlledUpstream(FakeUpstream):
        """FakeUpstream plus POST /_control {field: value}; fields not given go back to their defaults."""

        def app(self) -> web.Application:
            app = super().app()  # the router freezes at start(), so the route is added here
            app.router.add_post("/_control", self.control)
            return app

        async def control(self, request: web.Request) -> web.Response:
            changes = await request.json()
            for key, value in {**defaults.__dict__, **changes}.items():
                if key in {
                    "latency_s",
                    "chunk_delay_s",
                    "status",
                    "cut_after_chunks",
                    "malformed_after_chunks",
                    "omit_done",
                }:
                    setattr(self.behaviour, key, value)
            return web.json_response(self.behaviour.__dict__ | {"release": None})

    upstream = ControlledUpstream(name, Behaviour(chunk_delay_s=chunk_delay_s), port=port)
    # FakeUpstream keeps every request for tests to inspect; a soak would grow without bound, so keep none.
    upstream.requests = _Discard()
    upstream.headers = _Discard()

    async def run() -> None:
        await upstream.start(port)
        await asyncio.Event().wait()

    uvloop.run(run())


class _Discard(list[Any]):
    def append(self, item: Any) -> None:
        pass


# ---- processes ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Upstream:
    name: str
    port: int
    chunk_delay_s: float
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # SIGSTOP'ed

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, __file__, "upstream", "--name", self.name, "--port", str(self.port)]
        command += ["--chunk-delay-s", str(self.chunk_delay_s)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.stopped = False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            if self.stopped:
                self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
        self.process = None


@dataclass
class LimitStore:
    """redis-server (Debian's, scripts/install-valkey.sh) as the gateway's shared-limits store; killed as a fault."""

    workdir: Path
    port: int = field(default_factory=lambda: free_port())
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:soak-store-secret@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # No persistence: a restarted store comes back empty, and the gateway must rebuild its counters.
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--requirepass"]
        command += ["soak-store-secret", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@dataclass
class Fleet:
    """Every process the soak starts; `close()` stops all of them (called from a finally)."""

    workdir: Path
    upstreams: list[Upstream] = field(default_factory=list)
    gateway: subprocess.Popen[bytes] | None = None
    gateway_port: int = 0
    ledger_dsn: str | None = None  # --ledger: the PostgreSQL the gateway writes its usage ledger to
    store: LimitStore | None = None

    def _env(self) -> dict[str, str] | None:
        extra = {}
        if self.ledger_dsn:
            extra["LEDGER_DSN"] = self.ledger_dsn
        if self.store is not None:
            extra["LIMIT_STORE_URL"] = self.store.url
        return {**os.environ, **extra} if extra else None

    def config(self, endpoints: list[Upstream]) -> dict[str, Any]:
        config = self._config(endpoints)
        if self.store is not None:
            # Fail open: a store fault must cost no answer; the rate limit is far above the load, so it is checked
            # on every request without refusing any.
            config["limit_store"] = {"on_failure": "open", "timeout_s": 0.05}
            config["teams"][0]["requests_per_minute"] = 10**9
        return config

    def _config(self, endpoints: list[Upstream]) -> dict[str, Any]:
        return {
            "server": {
                "host": "127.0.0.1",
                "port": self.gateway_port,
                "request_timeout_s": 15,
                "max_attempts": 3,
                "drain_timeout_s": 5,
            },
            "backends": [
                {
                    "name": MODEL,
                    "kind": "vllm",
                    "endpoints": [f"{upstream.origin}/v1" for upstream in endpoints],
                    "timeout_s": 3,
                    "health": {"interval_s": 0.5, "timeout_s": 0.5, "failures_to_eject": 2, "cooldown_s": 1},
                }
            ],
            "routes": [{"model": MODEL, "targets": [{"backend": MODEL}]}],
            "teams": [{"name": "soak", "key_sha256": [hashlib.sha256(API_KEY.encode()).hexdigest()]}],
            "audit": {"path": str(self.workdir / "audit.jsonl")},
            "stream_recovery": True,
            **(
                {"ledger": {"spool_path": str(self.workdir / "spool"), "write_timeout_s": 1}} if self.ledger_dsn else {}
            ),
        }

    def write_config(self, endpoints: list[Upstream]) -> Path:
        path = self.workdir / "gateway.yaml"
        path.write_text(yaml.safe_dump(self.config(endpoints)))
        return path

    def start_gateway(self) -> None:
        self.gateway_port = free_port()
        path = self.write_config(self.upstreams)
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "gateway.stderr").open("wb"),
            cwd=ROOT / "gateway_image",
            env=self._env(),
        )

    def reload(self, endpoints: list[Upstream]) -> None:
        self.write_config(endpoints)
        assert self.gateway is not None
        self.gateway.send_signal(signal.SIGHUP)

    def close(self) -> None:
        for upstream in self.upstreams:
            upstream.kill()
        if self.store is not None:
            self.store.kill()
        if self.gateway is not None and self.gateway.poll() is None:
            self.gateway.send_signal(signal.SIGTERM)
            try:
                self.gateway.wait(10)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
                self.gateway.wait(5)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def wait_until_up(session: aiohttp.ClientSession, url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                if response.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


# ---- load -----------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    error: int = 0
    lost: int = 0
    ok_stream: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lost_examples: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    phase: str = "warm-up"  # the fault going on now, so that errors can be put down to it
    errors_by_phase: Counter[str] = field(default_factory=Counter)
    ok_ids: list[str] = field(default_factory=list)  # x-request-id of each ok answer: its ledger row's id

    def fail(self, kind: str) -> None:
        self.error += 1
        self.errors[kind] += 1
        self.errors_by_phase[f"{self.phase}: {kind}"] += 1

    def lose(self, what: str) -> None:
        self.lost += 1
        if len(self.lost_examples) < 20:
            self.lost_examples.append(what)


async def one_request(session: aiohttp.ClientSession, url: str, stream: bool, tally: Tally, n: int) -> None:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"soak request {n}: tell me about foxes"}],
        "max_tokens": 32,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    tally.sent += 1
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        async with session.post(url, json=body, headers=headers) as response:
            if response.status != 200:
                payload = await response.json(content_type=None)
                error = payload["error"]
                assert isinstance(error["message"], str) and error["type"], payload
                tally.fail(f"{response.status} {error.get('code')}")
                return
            if not stream:
                payload = await response.json()
                assert payload["choices"][0]["message"]["content"], payload
                tally.ok += 1
                tally.ok_ids.append(response.headers.get("x-request-id", ""))
                tally.latencies_s.append(time.perf_counter() - started)
                return
            done, error_event = False, None
            async for line in response.content:
                if line.startswith(b"data: [DONE]"):
                    done = True
                elif line.startswith(b"data: {") and b'"error"' in line[:20]:
                    error_event = json.loads(line[6:])["error"]
            if error_event is not None and not done:
                tally.fail(f"stream {error_event.get('code')}")
            elif done and error_event is None:
                tally.ok += 1
                tally.ok_ids.append(response.headers.get("x-request-id", ""))
                tally.ok_stream += 1
                tally.latencies_s.append(time.perf_counter() - started)
            else:
                tally.lose(f"stream n={n}: done={done} error_event={error_event}")
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, AssertionError) as exc:
        tally.lose(f"n={n} stream={stream}: {type(exc).__name__}: {exc}")


async def client_loop(session: aiohttp.ClientSession, url: str, tally: Tally, stop: asyncio.Event, seed: int) -> None:
    rng = random.Random(seed)
    n = seed * 1_000_000
    while not stop.is_set():
        n += 1
        await one_request(session, url, rng.random() < 0.5, tally, n)


# ---- faults ---------------------------------------------------------------------------------------------------


async def control(session: aiohttp.ClientSession, upstream: Upstream, **changes: Any) -> None:
    try:
        async with session.post(f"{upstream.origin}/_control", json=changes) as response:
            await response.read()
    except (aiohttp.ClientError, TimeoutError):
        pass  # the upstream may be dead or stopped right now; the fault still happens or has already ended


async def fault_loop(
    session: aiohttp.ClientSession, fleet: Fleet, stop: asyncio.Event, tally: Tally, faults: Counter[str], step_s: float
) -> None:
    """Round-robin over upstreams, one fault at a time, each lasting `step_s`, then a pause of `step_s`."""
    kinds = [
        "kill",
        "error500",
        "slow",
        "hang",
        "cut_streams",
        "reload_drop",
        "error503",
        "slow_chunks",
        "malformed",
        "no_done",
    ]
    if fleet.store is not None:
        kinds.append("store_kill")
    index = 0
    while not stop.is_set():
        upstream = fleet.upstreams[index % len(fleet.upstreams)]
        kind = kinds[index % len(kinds)]
        index += 1
        faults[kind] += 1
        tally.phase = kind
        if kind == "kill":
            upstream.kill()
            await _sleep(stop, step_s)
            upstream.start()
        elif kind in ("error500", "error503"):
            await control(session, upstream, status=int(kind[-3:]))
            await _sleep(stop, step_s)
            await control(session, upstream)
        elif kind == "slow":
            await control(session, upstream, latency_s=4.0)  # beyond the backend's 3 s timeout
            await _sleep(stop, step_s)
            await control(session, upstream)
        elif kind == "slow_chunks":
            await control(session, upstream, chunk_delay_s=0.3)
            await _sleep(stop, step_s)
            await control(session, upstream)
        elif kind == "cut_streams":
            await control(session, upstream, cut_after_chunks=3)
            await _sleep(stop, step_s)
            await control(session, upstream)
        elif kind == "malformed":
            await control(session, upstream, malformed_after_chunks=3)  # an event that is not JSON, mid-stream
            await _sleep(stop, step_s)
            await control(session, upstream)
        elif kind == "no_done":
            await control(session, upstream, omit_done=True)  # complete streams without `data: [DONE]`
            await _sleep(stop, step_s)
            await control(session, upstream)
        elif kind == "hang":
            assert upstream.process is not None
            upstream.process.send_signal(signal.SIGSTOP)
            upstream.stopped = True
            await _sleep(stop, step_s)
            upstream.process.send_signal(signal.SIGCONT)
            upstream.stopped = False
        elif kind == "store_kill" and fleet.store is not None:
            fleet.store.kill()
            await _sleep(stop, step_s)
            fleet.store.start()  # empty
        elif kind == "reload_drop":
            fleet.reload([other for other in fleet.upstreams if other is not upstream])
            await _sleep(stop, step_s)
            fleet.reload(fleet.upstreams)
        tally.phase = f"after {kind}"
        await _sleep(stop, step_s)


async def postgres_fault_loop(server: Any, stop: asyncio.Event, faults: Counter[str], step_s: float) -> None:
    """Beside the upstream faults: SIGKILL the ledger's PostgreSQL (postmaster and backends), restart it on the same
    data dir (crash recovery), twice a cycle of the upstream faults. It is always up again when this returns."""
    while not stop.is_set():
        await _sleep(stop, 3 * step_s)
        faults["postgres_kill"] += 1
        await asyncio.to_thread(server.kill)
        await _sleep(stop, 2 * step_s)
        await asyncio.to_thread(server.start)


async def ledger_rows_of(dsn: str, request_ids: list[str]) -> int:
    """How many of these request ids have a ledger row (request_id is the primary key: at most one each)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM usage_ledger WHERE request_id = ANY($1)", request_ids))
    finally:
        await conn.close()


def start_postgres() -> Any:
    """A PostgreSQL with the ledger's schema, from the test fixture's module (the same binaries, as the same user)."""
    sys.path.insert(0, str(FAKE_UPSTREAM_DIR))
    from pg_server import PgServer, postgres_bin_dir

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise SystemExit("--ledger needs PostgreSQL: run scripts/install-postgres.sh")
    server = PgServer(bin_dir)
    server.start()
    return server


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    # Faults end on time even when the run stops meanwhile, so the last one is always undone.
    del stop
    await asyncio.sleep(seconds)


# ---- the run --------------------------------------------------------------------------------------------------


@dataclass
class SoakReport:
    seconds: float
    clients: int
    upstreams: int
    sent: int
    ok: int
    ok_stream: int
    error: int
    lost: int
    errors: dict[str, int]
    errors_by_phase: dict[str, int]
    lost_examples: list[str]
    faults: dict[str, int]
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    rss_warm_kib: int
    rss_end_kib: int
    rss_max_kib: int
    gateway_exit_code: int | None
    ledger_rows_of_ok: int | None = None  # --ledger: ok answers that have their ledger row

    @property
    def rss_growth_ratio(self) -> float:
        return (self.rss_end_kib - self.rss_warm_kib) / self.rss_warm_kib

    def text(self) -> str:
        return "\n".join(
            [
                f"soak: {self.seconds:.0f} s, {self.clients} clients, {self.upstreams} upstreams",
                f"requests: sent {self.sent}, ok {self.ok} ({self.ok_stream} streamed), clear errors {self.error}, "
                f"lost {self.lost}",
                f"throughput {self.requests_per_s:.0f} requests/s; ok latency p50 {self.p50_ms:.1f} ms, "
                f"p99 {self.p99_ms:.1f} ms",
                f"errors by kind: {dict(sorted(self.errors.items()))}",
                f"errors by fault (during it, or in the pause after it): {dict(sorted(self.errors_by_phase.items()))}",
                f"faults: {dict(sorted(self.faults.items()))}",
                f"gateway RSS: {self.rss_warm_kib / 1024:.1f} MiB after warm-up, {self.rss_end_kib / 1024:.1f} MiB "
                f"at the end ({self.rss_growth_ratio:+.1%}), max {self.rss_max_kib / 1024:.1f} MiB",
                f"gateway exit code after SIGTERM: {self.gateway_exit_code}",
                *(
                    [
                        f"ledger rows == ok answers: {self.ledger_rows_of_ok == self.ok} ({self.ledger_rows_of_ok} of "
                        f"{self.ok} ok answers have their one row)"
                    ]
                    if self.ledger_rows_of_ok is not None
                    else []
                ),
                *(f"lost: {example}" for example in self.lost_examples),
            ]
        )


async def soak(
    workdir: Path,
    seconds: float,
    clients: int = 16,
    upstreams: int = 3,
    warmup_s: float = 5.0,
    step_s: float = 1.5,
    ledger: bool = False,
    limit_store: bool = False,
) -> SoakReport:
    fleet = Fleet(workdir)
    if limit_store:
        fleet.store = LimitStore(workdir)
        fleet.store.start()
    tally, faults = Tally(), Counter[str]()
    rss_samples: list[int] = []
    postgres = await asyncio.to_thread(start_postgres) if ledger else None
    try:
        if postgres is not None:
            from llm_gateway.ledger_migrations import migrate

            await migrate(postgres.dsn)
            fleet.ledger_dsn = postgres.dsn
        for index in range(upstreams):
            upstream = Upstream(f"upstream-{index}", free_port(), chunk_delay_s=0.01)
            upstream.start()
            fleet.upstreams.append(upstream)
        fleet.start_gateway()
        assert fleet.gateway is not None
        base = f"http://127.0.0.1:{fleet.gateway_port}"
        connector = aiohttp.TCPConnector(limit=clients * 2)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for upstream in fleet.upstreams:
                assert upstream.process is not None
                await wait_until_up(session, f"{upstream.origin}/health", upstream.process)
            await wait_until_up(session, f"{base}/healthz", fleet.gateway)
            stop = asyncio.Event()
            url = f"{base}/v1/chat/completions"
            loops = [asyncio.create_task(client_loop(session, url, tally, stop, seed)) for seed in range(clients)]
            await asyncio.sleep(warmup_s)  # warm-up: pools, caches, allocator arenas settle without faults
            rss_warm = rss_kib(fleet.gateway.pid)
            started, sent_at_start = time.perf_counter(), tally.sent
            chaos = asyncio.create_task(fault_loop(session, fleet, stop, tally, faults, step_s))
            chaos_db = asyncio.create_task(postgres_fault_loop(postgres, stop, faults, step_s)) if postgres else None
            while time.perf_counter() - started < seconds:
                await asyncio.sleep(1)
                rss_samples.append(rss_kib(fleet.gateway.pid))
            stop.set()
            await chaos
            if chaos_db is not None:
                await chaos_db
            await asyncio.gather(*loops)
            elapsed = time.perf_counter() - started
            rss_end = rss_kib(fleet.gateway.pid)
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200, "the gateway stopped answering /healthz"
    finally:
        fleet.close()  # SIGTERM: the gateway writes its last batch (or spools it) before it exits
        ledger_rows_of_ok = None
        if postgres is not None:
            try:
                ledger_rows_of_ok = await ledger_rows_of(postgres.dsn, tally.ok_ids)
            finally:
                await asyncio.to_thread(postgres.close)
    latencies = sorted(tally.latencies_s) or [0.0]
    return SoakReport(
        seconds=elapsed,
        clients=clients,
        upstreams=upstreams,
        sent=tally.sent,
        ok=tally.ok,
        ok_stream=tally.ok_stream,
        error=tally.error,
        lost=tally.lost,
        errors=dict(tally.errors),
        errors_by_phase=dict(tally.errors_by_phase),
        lost_examples=tally.lost_examples,
        faults=dict(faults),
        requests_per_s=(tally.sent - sent_at_start) / elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
        rss_warm_kib=rss_warm,
        rss_end_kib=rss_end,
        rss_max_kib=max([rss_warm, rss_end, *rss_samples]),
        gateway_exit_code=fleet.gateway.returncode if fleet.gateway else None,
        ledger_rows_of_ok=ledger_rows_of_ok,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    upstream = sub.add_parser("upstream", help="(internal) run one fake upstream with a /_control route")
    upstream.add_argument("--name", required=True)
    upstream.add_argument("--port", type=int, required=True)
    upstream.add_argument("--chunk-delay-s", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=60, help="duration of the faulty phase, after warm-up")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--upstreams", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--ledger", action="store_true", help="usage ledger on a local PostgreSQL, killed now and then")
    parser.add_argument(
        "--limit-store", action="store_true", help="shared limits on a redis-server, killed and restarted as a fault"
    )
    args = parser.parse_args(argv)
    if args.command == "upstream":
        serve_upstream(args.name, args.port, args.chunk_delay_s)
        return 0
    import tempfile

    import uvloop

    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        report = uvloop.run(
            soak(
                Path(workdir),
                args.seconds,
                args.clients,
                args.upstreams,
                ledger=args.ledger,
                limit_store=args.limit_store,
            )
        )
    if args.json:
        print(json.dumps(report.__dict__ | {"rss_growth_ratio": report.rss_growth_ratio}, indent=2))
    else:
        print(report.text())
    ledger_ok = report.ledger_rows_of_ok is None or report.ledger_rows_of_ok == report.ok
    return 0 if report.lost == 0 and ledger_ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
