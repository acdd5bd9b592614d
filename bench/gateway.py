"""Our gateway beside nginx and LiteLLM, in one run, against the same fast fake upstream on 127.0.0.1.

Run: .venv/bin/python bench/gateway.py [--duration 3] [--targets direct,gateway,nginx,litellm]

Targets, each proxying to one fake OpenAI server (aiohttp + uvloop, started here as a subprocess):
  direct   the upstream itself: the baseline every "added" figure subtracts
  gateway  python -m llm_gateway with a team key, a route, pricing and limits, metrics, audit log to a file
  gateway-ledger  the same plus the usage ledger (issue 12) on a local PostgreSQL started here (pg_server.py)
  gateway-stores  the same plus the ledger and the shared limits (`limit_store`, a local redis-server started here):
           issue 12's targets compare it with `gateway` (added p50 at 1 connection, req/s at 32)
  traced   the same gateway with tracing.enabled (sample ratio 1: every request's spans exported over OTLP/HTTP
           to a sink in the upstream process); beside `gateway` it shows what tracing costs:
           --targets direct,gateway,traced
  aiohttp  a bare aiohttp pass-through (defined below): the floor for any aiohttp proxy, for reference
  nginx    nginx (Debian package) as a plain reverse proxy: one worker, upstream keep-alive, no buffering
  litellm  LiteLLM's proxy (/work/main/.venv-litellm, 'litellm[proxy]<1.110'), one worker, a master key

For each target and for 1 and 32 connections: requests/s and latency p50/p99 from wrk (a Lua script POSTs the
body), non-streaming and streaming (16 chunks 1 ms apart, then a usage chunk and [DONE]). An aiohttp client adds
exact percentiles at one connection, and for streams the time to first token and the gap between chunks. For the
single-process proxies (gateway, aiohttp) the CPU time per request is measured too: at 32 connections streams are
capped by their own pace (~20 ms each), so req/s cannot show a cheaper relay, CPU time can.
Needs `wrk` and `nginx` on PATH (apt-get install -y nginx wrk). Every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
MODEL = "bench-model"
STREAM_CHUNKS = 16
CHUNK_GAP_S = 0.001  # so that chunks arrive one by one and a per-chunk gap means something
GATEWAY_KEY = "sk-bench-gateway-team"
LITELLM_KEY = "sk-bench-litellm-master"

MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]
PLAIN_BODY = {"model": MODEL, "messages": MESSAGES, "max_tokens": 16}
STREAM_BODY = {**PLAIN_BODY, "stream": True, "stream_options": {"include_usage": True}}


# ----- the fake upstream (runs as `bench/gateway.py upstream --port N`) --------------------------------------


def run_upstream(port: int) -> None:
    import uvloop
    from aiohttp import web

    usage = {"prompt_tokens": 12, "completion_tokens": STREAM_CHUNKS, "total_tokens": 12 + STREAM_CHUNKS}
    completion = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello, benchmark! " * 4},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    ).encode()

    def sse(delta: dict[str, Any] | None, finish: str | None = None, with_usage: bool = False) -> bytes:
        chunk: dict[str, Any] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if with_usage:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    first = sse({"role": "assistant", "content": ""})
    tokens = [sse({"content": f"tok{i} "}) for i in range(STREAM_CHUNKS)]
    last = sse({}, finish="stop")
    usage_chunk = sse(None, with_usage=True)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=completion, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(first)
        for token in tokens:
            await asyncio.sleep(CHUNK_GAP_S)
            await response.write(token)
        await response.write(last)
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(usage_chunk)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    # The OTLP/HTTP sink of the `traced` gateway: an empty 200 is a successful export (OTLP spec, "Success").
    app.router.add_post("/v1/traces", health)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def run_passthrough(port: int, upstream_port: int) -> None:
    """The floor for an aiohttp proxy: forward the body, relay the answer; no auth, routing or accounting."""
    import aiohttp
    import uvloop
    from aiohttp import web

    upstream = f"http://127.0.0.1:{upstream_port}"

    async def session_context(app: web.Application) -> Any:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
        yield
        await app["session"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Content-Type": "application/json"}
        async with request.app["session"].post(upstream + request.path, data=body, headers=headers) as reply:
            if reply.content_type != "text/event-stream":
                return web.Response(body=await reply.read(), status=reply.status, content_type=reply.content_type)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            async for chunk in reply.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application()
    app.cleanup_ctx.append(session_context)
    app.router.add_post("/v1/chat/completions", forward)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# ----- processes --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def process(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    """Start a process in its own session and give its pid; on exit, SIGTERM its group, then SIGKILL after 10 s."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
        try:
            yield proc.pid
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)


def wait_ready(url: str, log: Path, timeout_s: float = 90.0, body: dict[str, Any] | None = None) -> None:
    """Poll until `url` answers 200 (a POST of `body` when given)."""
    data = json.dumps(body).encode() if body else None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s; log tail:\n{tail}")


@dataclass
class Target:
    name: str
    base_url: str  # up to and including /v1
    headers: dict[str, str] = field(default_factory=dict)
    # A proxy that does all its work in one process: its CPU time per request is measured too.
    pid: int | None = None


def gateway_config(
    tmp: Path, port: int, upstream_port: int, ledger: bool = False, traced: bool = False, limits: bool = False
) -> Path:
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "require_api_key": True},
        "backends": [
            {
                "name": "fake",
                "kind": "openai",
                "url": f"http://127.0.0.1:{upstream_port}/v1",
                # Default ejection threshold: wrk cutting in-flight streams at the end of a run must not eject the
                # endpoint (a client that left is audited 499, not an upstream failure).
                "health": {"interval_s": 5},
            }
        ],
        "routes": [{"model": MODEL, "targets": [{"backend": "fake"}]}],
        "teams": [
            {
                "name": "bench",
                "key_sha256": [hashlib.sha256(GATEWAY_KEY.encode()).hexdigest()],
                # Limits far above what the run can reach: their bookkeeping runs, they never refuse.
                "requests_per_minute": 1_000_000_000,
                "monthly_token_limit": 10**15,
                "monthly_budget_usd": 10**9,
            }
        ],
        "pricing": {MODEL: {"input_per_million": 0.5, "output_per_million": 1.5}},
        "audit": {"path": str(tmp / f"audit{'-traced' if traced else ''}.jsonl")},
    }
    if ledger:  # defaults but the spool folder: batches of 500 rows or 1 s
        config["ledger"] = {"spool_path": str(tmp / "spool")}
        config["audit"] = {"path": str(tmp / "audit-ledger.jsonl")}
    if limits:  # issue 12's combination: the ledger and the shared limits together
        config["limit_store"] = {}
        config["ledger"] = {"spool_path": str(tmp / "spool-stores")}
        config["audit"] = {"path": str(tmp / "audit-stores.jsonl")}
    if traced:
        config["tracing"] = {"enabled": True, "endpoint": f"http://127.0.0.1:{upstream_port}/v1/traces"}
    name = "gateway-stores" if limits else "gateway-ledger" if ledger else "gateway-traced" if traced else "gateway"
    path = tmp / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def nginx_config(tmp: Path, port: int, upstream_port: int) -> Path:
    path = tmp / "nginx.conf"
    path.write_text(
        f"""
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    upstream fake {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""
    )
    return path


def litellm_config(tmp: Path, upstream_port: int) -> Path:
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                    "api_key": "unused",
                },
            }
        ],
        "general_settings": {"master_key": LITELLM_KEY},
        "litellm_settings": {"telemetry": False},
    }
    path = tmp / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def start_target(
    name: str, stack: contextlib.ExitStack, tmp: Path, upstream_port: int, profile: Path | None = None
) -> Target:
    port = free_port()
    log = tmp / f"{name}.log"
    if name in ("gateway", "gateway-ledger", "gateway-stores", "traced"):
        env = {"PYTHONPATH": str(ROOT / "gateway_image")}
        if name in ("gateway-ledger", "gateway-stores"):
            env["LEDGER_DSN"] = start_postgres(stack)
        if name == "gateway-stores":
            env["LIMIT_STORE_URL"] = start_redis(stack, tmp)
        config = gateway_config(
            tmp,
            port,
            upstream_port,
            ledger=name == "gateway-ledger",
            traced=name == "traced",
            limits=name == "gateway-stores",
        )
        profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
        argv = [sys.executable, *profiler, "-m", "llm_gateway", "--config", str(config)]
        pid = stack.enter_context(process(name, argv, log, env))
        wait_ready(f"http://127.0.0.1:{port}/readyz", log)
        return Target(name, f"http://127.0.0.1:{port}/v1", {"Authorization": f"Bearer {GATEWAY_KEY}"}, pid)
    if name == "aiohttp":
        argv = [sys.executable, __file__, "passthrough", "--port", str(port), "--upstream-port", str(upstream_port)]
        pid = stack.enter_context(process(name, argv, log))
        wait_ready(f"http://127.0.0.1:{port}/v1/chat/completions", log, body=PLAIN_BODY)
        return Target(name, f"http://127.0.0.1:{port}/v1", pid=pid)
    if name == "nginx":
        config = nginx_config(tmp, port, upstream_port)
        stack.enter_context(process(name, ["nginx", "-p", str(tmp), "-c", str(config)], log))
        wait_ready(f"http://127.0.0.1:{port}/health", log)
        return Target(name, f"http://127.0.0.1:{port}/v1")
    if name == "litellm":
        config = litellm_config(tmp, upstream_port)
        argv = [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--num_workers", "1"]
        # Offline: the bundled price map instead of a download; no telemetry.
        env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"}
        stack.enter_context(process(name, argv, log, env))
        wait_ready(f"http://127.0.0.1:{port}/health/liveliness", log, timeout_s=180)
        return Target(name, f"http://127.0.0.1:{port}/v1", {"Authorization": f"Bearer {LITELLM_KEY}"})
    raise ValueError(f"unknown target {name!r}")


def start_postgres(stack: contextlib.ExitStack) -> str:
    """A migrated PostgreSQL for the ledger, stopped with the stack; returns its DSN."""
    sys.path.insert(0, str(ROOT / "gateway_image" / "tests"))
    sys.path.insert(0, str(ROOT / "gateway_image"))
    from llm_gateway.ledger_migrations import migrate
    from pg_server import PgServer, postgres_bin_dir

    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        sys.exit("gateway-ledger needs PostgreSQL: bash scripts/install-postgres.sh")
    server = PgServer(bin_dir)
    stack.callback(server.close)
    server.start()
    asyncio.run(migrate(server.dsn))
    return server.dsn


def start_redis(stack: contextlib.ExitStack, tmp: Path) -> str:
    """A password-protected redis-server for the shared limits, stopped with the stack; returns its URL."""
    sys.path.insert(0, str(ROOT / "gateway_image" / "tests"))
    from redis_server import RedisServer

    directory = tmp / "redis"
    directory.mkdir(exist_ok=True)
    server = RedisServer(directory)
    stack.callback(server.stop)
    server.start()
    return server.url


# ----- load: wrk for throughput, aiohttp for exact latency and streams ---------------------------------------


def wrk(target: Target, body: dict[str, Any], connections: int, duration_s: float, tmp: Path) -> dict[str, float]:
    script = tmp / f"wrk-{target.name}.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    headers = {"Content-Type": "application/json", **target.headers}
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--latency", "-s", str(script)]
    argv.append(f"{target.base_url}/chat/completions")
    output = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30, check=True).stdout
    percentiles = {p: _seconds(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\b", output, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    for problem in (errors, socket_errors):
        if problem:
            print(f"    wrk {target.name} c={connections}: {problem.group(0)}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50": percentiles["50"],
        "p99": percentiles["99"],
        "errors": float(errors.group(1)) if errors else 0.0,
        "requests": float(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def client_latency(target: Target, connections: int, duration_s: float) -> dict[str, float]:
    """Per-request latency (non-streaming) and TTFT / chunk gaps (streaming) with `connections` workers."""
    import aiohttp

    url = f"{target.base_url}/chat/completions"
    totals: list[float] = []
    ttfts: list[float] = []
    gaps: list[float] = []
    stream_totals: list[float] = []
    failures = 0
    first_error = ""
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=target.headers) as session:

        async def plain_worker(deadline: float) -> None:
            nonlocal failures, first_error
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                async with session.post(url, json=PLAIN_BODY) as reply:
                    answer = await reply.read()
                if reply.status != 200:
                    failures += 1
                    first_error = first_error or f"{reply.status} {answer[:300]!r}"
                    continue
                totals.append(time.perf_counter() - start)

        async def stream_worker(deadline: float) -> None:
            nonlocal failures, first_error
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                previous = None
                done = False
                async with session.post(url, json=STREAM_BODY) as reply:
                    if reply.status != 200:
                        failures += 1
                        first_error = first_error or f"{reply.status} {(await reply.read())[:300]!r}"
                        continue
                    async for line in reply.content:
                        if not line.startswith(b"data: "):
                            continue
                        now = time.perf_counter()
                        if b'"content"' in line:
                            if previous is None:
                                ttfts.append(now - start)
                            else:
                                gaps.append(now - previous)
                            previous = now
                        done = line.startswith(b"data: [DONE]")
                failures += not done
                stream_totals.append(time.perf_counter() - start)

        for worker, length in ((plain_worker, duration_s), (stream_worker, duration_s)):
            deadline = time.perf_counter() + length
            await asyncio.gather(*(worker(deadline) for _ in range(connections)))
    if not (totals and ttfts and gaps):
        raise RuntimeError(f"{target.name}: no successful requests; first error: {first_error}")
    return {
        "p50": statistics.median(totals),
        "p99": percentile(totals, 0.99),
        "ttft_p50": statistics.median(ttfts),
        "ttft_p99": percentile(ttfts, 0.99),
        "gap_p50": statistics.median(gaps),
        "gap_p99": percentile(gaps, 0.99),
        "requests": float(len(totals) + len(stream_totals)),
        "failures": float(failures),
    }


def check_answers(target: Target) -> None:
    """One plain and one streamed request must come back whole before any timing counts."""
    url = f"{target.base_url}/chat/completions"
    headers = {"Content-Type": "application/json", **target.headers}
    for body in (PLAIN_BODY, STREAM_BODY):
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=30) as reply:
            text = reply.read().decode()
        if body.get("stream"):
            if '"usage"' not in text or not text.rstrip().endswith("data: [DONE]"):
                raise RuntimeError(f"{target.name}: streamed answer lacks the usage chunk or [DONE]: {text[-300:]}")
        elif json.loads(text)["choices"][0]["message"]["content"] is None:
            raise RuntimeError(f"{target.name}: answer without content: {text[:300]}")


# ----- report -----------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def report(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    base = results.get("direct")
    for mode in ("plain", "stream"):
        title = (
            "non-streaming" if mode == "plain" else f"streaming ({STREAM_CHUNKS} chunks {CHUNK_GAP_S * 1e3:g} ms apart)"
        )
        print(f"\n## {title}: wrk, requests/s and latency (ms); 'added' = minus direct")
        header = f"{'target':<8} {'conns':>5} {'req/s':>9} {'(min-max)':>13} {'p50':>8} {'p99':>8}"
        print(f"{header} {'added p50':>10} {'added p99':>10}")
        for name in names:
            for conns in (1, 32):
                row = results[name][f"wrk_{mode}_{conns}"]
                ref = base[f"wrk_{mode}_{conns}"] if base else None
                added = (ms(row["p50"] - ref["p50"]), ms(row["p99"] - ref["p99"])) if ref else ("-", "-")
                spread = f"{row['rps_min']:.0f}-{row['rps_max']:.0f}"
                print(
                    f"{name:<8} {conns:>5} {row['rps']:>9.0f} {spread:>13} "
                    f"{ms(row['p50']):>8} {ms(row['p99']):>8} "
                    f"{added[0]:>10} {added[1]:>10}"
                )
    print("\n## aiohttp client, 1 connection: latency, TTFT and chunk gap (ms); 'added' = minus direct")
    columns = ["p50", "+p50", "+p99", "ttft50", "+ttft50", "+ttft99", "gap50", "+gap50", "+gap99"]
    print(f"{'target':<8} " + " ".join(f"{column:>8}" for column in columns))
    for name in names:
        row = results[name]["client_1"]
        ref = base["client_1"] if base else row
        values = [row["p50"], row["p50"] - ref["p50"], row["p99"] - ref["p99"], row["ttft_p50"]]
        values += [row["ttft_p50"] - ref["ttft_p50"], row["ttft_p99"] - ref["ttft_p99"], row["gap_p50"]]
        values += [row["gap_p50"] - ref["gap_p50"], row["gap_p99"] - ref["gap_p99"]]
        print(f"{name:<8} " + " ".join(f"{ms(value):>8}" for value in values))
    measured = [name for name in names if "cpu_ms" in results[name]["wrk_plain_1"]]
    if measured:
        print("\n## CPU time per request of single-process proxies (ms, median of rounds)")
        print(
            f"{'target':<8} "
            + " ".join(f"{mode + ' c=' + str(conns):>11}" for mode in ("plain", "stream") for conns in (1, 32))
        )
        for name in measured:
            cells = [
                results[name][f"wrk_{mode}_{conns}"]["cpu_ms"] for mode in ("plain", "stream") for conns in (1, 32)
            ]
            print(f"{name:<8} " + " ".join(f"{value:>11.3f}" for value in cells))
    print("\n## ratios at 32 connections (wrk req/s)")
    for mode in ("plain", "stream"):
        gateway = results.get("gateway", {}).get(f"wrk_{mode}_32")
        for peer in ("litellm", "nginx", "aiohttp"):
            other = results.get(peer, {}).get(f"wrk_{mode}_32")
            if gateway and other:
                print(f"{mode:<6} gateway / {peer:<7} = {gateway['rps'] / other['rps']:.2f}x")
        if gateway and "cpu_ms" in gateway and "cpu_ms" in results.get("aiohttp", {}).get(f"wrk_{mode}_32", {}):
            ratio = gateway["cpu_ms"] / results["aiohttp"][f"wrk_{mode}_32"]["cpu_ms"]
            print(f"{mode:<6} gateway / aiohttp CPU per request = {ratio:.2f}x")


def median_of(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def measure_rounds(targets: list[Target], rounds: int, duration_s: float, tmp: Path) -> dict[str, dict[str, Any]]:
    """Every cell measured for every target back to back, `rounds` times; the median of the rounds is kept.

    Interleaving keeps a burst of background load on this shared machine from landing on one target only.
    """
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_number in range(1, rounds + 1):
        for mode, body in (("plain", PLAIN_BODY), ("stream", STREAM_BODY)):
            for conns in (1, 32):
                for target in targets:
                    cpu_before = cpu_seconds(target.pid) if target.pid else 0.0
                    sample = wrk(target, body, conns, duration_s, tmp)
                    if target.pid:
                        # Unlike req/s, not capped by the stream's own pace: what one request costs the proxy.
                        sample["cpu_ms"] = 1e3 * (cpu_seconds(target.pid) - cpu_before) / max(1.0, sample["requests"])
                    samples.setdefault((target.name, f"wrk_{mode}_{conns}"), []).append(sample)
                    print(f"  round {round_number} {target.name:<8} {mode:<6} c={conns:<2} {sample['rps']:>8.0f} req/s")
        for target in targets:
            sample = asyncio.run(client_latency(target, 1, duration_s))
            samples.setdefault((target.name, "client_1"), []).append(sample)
            if sample["failures"]:
                print(f"  round {round_number} {target.name}: {sample['failures']:.0f} failed client requests")
    results: dict[str, dict[str, Any]] = {target.name: {} for target in targets}
    for (name, cell), rows in samples.items():
        results[name][cell] = median_of(rows)
        results[name][cell]["rps_min"] = min(row.get("rps", 0.0) for row in rows)
        results[name][cell]["rps_max"] = max(row.get("rps", 0.0) for row in rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    upstream = sub.add_parser("upstream", help="serve the fake OpenAI upstream (used by the benchmark itself)")
    upstream.add_argument("--port", type=int, required=True)
    passthrough = sub.add_parser("passthrough", help="serve the bare aiohttp pass-through (a reference target)")
    passthrough.add_argument("--port", type=int, required=True)
    passthrough.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of each wrk and client run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument(
        "--profile-gateway", type=Path, help="run the gateway under cProfile, write the stats here, print the top"
    )
    parser.add_argument(
        "--targets", default="direct,gateway,aiohttp,nginx,litellm", help="comma-separated subset, in order"
    )
    args = parser.parse_args()
    if args.command == "upstream":
        run_upstream(args.port)
        return
    if args.command == "passthrough":
        run_passthrough(args.port, args.upstream_port)
        return

    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found on PATH: apt-get install -y nginx wrk")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if "litellm" in targets and not LITELLM.exists():
        sys.exit(
            f"{LITELLM} missing: python3 -m venv .venv-litellm && .venv-litellm/bin/pip install 'litellm[proxy]<1.110'"
        )
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)  # nginx workers run as nobody when started by root
        upstream_port = free_port()
        upstream_log = tmp / "upstream.log"
        stack.enter_context(
            process("upstream", [sys.executable, __file__, "upstream", "--port", str(upstream_port)], upstream_log)
        )
        wait_ready(f"http://127.0.0.1:{upstream_port}/health", upstream_log)
        started: list[Target] = []
        for name in targets:
            print(f"[{name}] starting", flush=True)
            if name == "direct":
                started.append(Target("direct", f"http://127.0.0.1:{upstream_port}/v1"))
            else:
                started.append(start_target(name, stack, tmp, upstream_port, args.profile_gateway))
        for target in started:
            check_answers(target)
            wrk(target, PLAIN_BODY, 32, 1.0, tmp)  # warm-up: connection pools, lazy imports
        results = measure_rounds(started, args.rounds, args.duration, tmp)
        audit = tmp / "audit.jsonl"
        if "gateway" in targets:
            lines = audit.read_text().count("\n") if audit.exists() else 0
            print(f"gateway audit log: {lines} lines")
    report(results)
    if args.profile_gateway and args.profile_gateway.exists():
        print(f"\n## gateway profile ({args.profile_gateway}), top 30 by own time")
        pstats.Stats(str(args.profile_gateway)).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
