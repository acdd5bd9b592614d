"""What shared limits cost the gateway: the same gateway with and without `limit_store`, interleaved.

Run: .venv/bin/python bench/limits.py [--rounds 3] [--duration 3] [--clients hand,glide]

Targets (each a `python -m llm_gateway` proxying to bench/gateway.py's fast fake upstream on 127.0.0.1):
  off   the team's limits counted in the gateway's memory (one replica)
  hand  the same limits in a redis-server on 127.0.0.1 (Debian's package, as in the tests): one Lua script call per
        request (EVALSHA) over the gateway's hand-written auto-pipelined client (llm_gateway/store_client.py), usage
        batched off the path
  glide the same, the check and the usage batches through valkey-glide's client instead, swapped in for the run
        (`llm_gateway.shared_limits.STORE_CLIENT = LimitStore`)
Per round and target: wrk at 1 connection (p50, and the CPU time of the gateway per request) and at 32 connections
(req/s), non-streaming. Rounds rotate the targets so that load from elsewhere hits all alike; the report gives the
median of the rounds, the added p50 (on - off) and the req/s ratio (on / off). Targets of issue 12: added p50 < 0.5 ms
at one connection, req/s at 32 connections >= 85% of the gateway without the store. The first line measures the CPU
of one check in-process, for each client (and redis-py's asyncio client when it is installed) at 1 and 32 at once.
Needs `wrk` and `redis-server` on PATH. Every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as bench

PASSWORD = "bench-store-secret"

# Runs the gateway with glide's client on the hot path (argv: the config).
GLIDE_LAUNCHER = """
import runpy, sys
import llm_gateway.shared_limits as limits
limits.STORE_CLIENT = limits.LimitStore
sys.argv = ["llm_gateway", "--config", sys.argv[1]]
runpy.run_module("llm_gateway", run_name="__main__")
"""


def start_redis(stack: contextlib.ExitStack, tmp: Path) -> str:
    port = bench.free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--requirepass", PASSWORD]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(tmp)]
    stack.enter_context(bench.process("redis", argv, tmp / "redis.log"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def start_gateway(
    stack: contextlib.ExitStack, tmp: Path, name: str, upstream_port: int, store_url: str | None, glide: bool
) -> Any:
    port = bench.free_port()
    folder = tmp / name
    folder.mkdir()
    path = bench.gateway_config(folder, port, upstream_port)
    config = json.loads(path.read_text())
    env = {"PYTHONPATH": str(bench.ROOT / "gateway_image")}
    if store_url is not None:
        config["limit_store"] = {"replicas": 1}
        env["LIMIT_STORE_URL"] = store_url
    path.write_text(json.dumps(config, indent=2))
    log = folder / "gateway.log"
    argv = [sys.executable, "-m", "llm_gateway", "--config", str(path)]
    if glide:
        argv = [sys.executable, "-c", GLIDE_LAUNCHER, str(path)]
    pid = stack.enter_context(bench.process(name, argv, log, env))
    bench.wait_ready(f"http://127.0.0.1:{port}/readyz", log)
    target = bench.Target(name, f"http://127.0.0.1:{port}/v1", {"Authorization": f"Bearer {bench.GATEWAY_KEY}"}, pid)
    bench.check_answers(target)
    return target


def loop_cpu_seconds(pid: int) -> float:
    """CPU time of the process's main thread, the one running the event loop (glide's Rust threads excluded)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(target: Any, duration_s: float, tmp: Path) -> dict[str, float]:
    cpu_before = bench.cpu_seconds(target.pid)
    one = bench.wrk(target, bench.PLAIN_BODY, 1, duration_s, tmp)
    cpu_ms = (bench.cpu_seconds(target.pid) - cpu_before) * 1e3 / max(1.0, one["requests"])
    cpu_before, loop_before = bench.cpu_seconds(target.pid), loop_cpu_seconds(target.pid)
    many = bench.wrk(target, bench.PLAIN_BODY, 32, duration_s, tmp)
    cpu_32_ms = (bench.cpu_seconds(target.pid) - cpu_before) * 1e3 / max(1.0, many["requests"])
    loop_32_ms = (loop_cpu_seconds(target.pid) - loop_before) * 1e3 / max(1.0, many["requests"])
    return {
        "p50_ms": one["p50"] * 1e3,
        "cpu_ms": cpu_ms,
        "rps_32": many["rps"],
        "cpu_32_ms": cpu_32_ms,
        "loop_32_ms": loop_32_ms,
        "errors": one["errors"] + many["errors"],
    }


def check_cost(store_url: str, calls: int = 20_000) -> dict[str, float]:
    """Gateway CPU per limit check, in this process: the in-memory check vs the shared one at 1 and 32 at once.

    process_time counts every thread of the process: glide's Rust runtime threads are in it.
    """
    import asyncio
    import hashlib

    import uvloop

    sys.path.insert(0, str(bench.ROOT / "gateway_image"))
    import llm_gateway.shared_limits as limits
    from llm_gateway.accounting import Ledger
    from llm_gateway.auth import Teams
    from llm_gateway.config import LimitStoreConfig, TeamConfig
    from llm_gateway.metrics import Metrics

    team = TeamConfig(
        name="bench",
        key_sha256=[hashlib.sha256(b"k").hexdigest()],
        requests_per_minute=10**9,
        monthly_token_limit=10**15,
        monthly_budget_usd=10**9,
    )
    default = limits.STORE_CLIENT
    clients: dict[str, Any] = {"hand": limits.pipelined_store, "glide": limits.LimitStore}
    # redis-py is no dependency of the gateway: measured when the venv has it.
    with contextlib.suppress(ImportError):
        import redis.asyncio as redis_asyncio

        clients["redis-py"] = lambda url, timeout: RedisPyScripts(redis_asyncio.from_url(url, max_connections=256))
    results: dict[str, float] = {}

    async def timed(check: Any, concurrency: int) -> float:
        async def worker(count: int) -> None:
            for _ in range(count):
                await check("bench")

        started = time.process_time()
        await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
        return (time.process_time() - started) / calls * 1e6

    async def run() -> None:
        teams = Teams([team], True, Ledger(), {})
        started = time.process_time()
        for _ in range(calls):
            teams.check_limits("bench")
        results["memory"] = (time.process_time() - started) / calls * 1e6
        for name, client in clients.items():
            limits.STORE_CLIENT = client
            shared = limits.SharedLimits(LimitStoreConfig(timeout_s=1), [team], Metrics(), Ledger(), url=store_url)
            await shared.check("bench")
            for concurrency in (1, 32):
                results[f"{name}_{concurrency}"] = await timed(shared.check, concurrency)
            assert shared.up, f"the store failed during the {name} run"
            await shared.close()
        limits.STORE_CLIENT = default

    uvloop.run(run())
    return results


class RedisPyScripts:
    """redis-py's asyncio client behind the hot path's interface (EVALSHA through its Script helper)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.scripts: dict[str, Any] = {}

    async def evalsha(self, source: str, keys: list[str], args: list[Any]) -> Any:
        script = self.scripts.get(source) or self.scripts.setdefault(source, self.client.register_script(source))
        return await script(keys=keys, args=args)

    def reset(self) -> None:
        pass

    async def close(self) -> None:
        await self.client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--clients", default="hand,glide", help="store clients to run the gateway with: hand,glide")
    args = parser.parse_args()
    clients = [name for name in args.clients.split(",") if name]
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on PATH (scripts/install-valkey.sh; apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        upstream_port = bench.free_port()
        argv = [sys.executable, str(bench.ROOT / "bench" / "gateway.py"), "upstream", "--port", str(upstream_port)]
        stack.enter_context(bench.process("upstream", argv, tmp / "upstream.log"))
        bench.wait_ready(f"http://127.0.0.1:{upstream_port}/health", tmp / "upstream.log")
        store_url = start_redis(stack, tmp)
        cost = check_cost(store_url)
        line = ", ".join(f"{name} {value:.1f}" for name, value in cost.items())
        print(f"CPU per limit check (us; <client>_<checks at once>): {line}", flush=True)
        targets = {"off": start_gateway(stack, tmp, "off", upstream_port, None, False)}
        for name in clients:
            targets[name] = start_gateway(stack, tmp, name, upstream_port, store_url, name == "glide")
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for index in range(args.rounds):
            names = list(targets)
            order = names[index % len(names) :] + names[: index % len(names)]
            for target_name in order:
                rounds[target_name].append(measure(targets[target_name], args.duration, tmp))
            print(f"round {index + 1}: " + json.dumps({k: v[-1] for k, v in rounds.items()}), flush=True)
        report(rounds)
    return 0


def report(rounds: dict[str, list[dict[str, float]]]) -> None:
    median = {
        name: {key: statistics.median(row[key] for row in rows) for key in rows[0]} for name, rows in rounds.items()
    }
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    header = f"{'target':<6} {'p50 c=1 (ms)':>13} {'CPU/req c=1':>12} {'req/s c=32':>11} {'CPU/req c=32':>13}"
    print(f"{header} {'loop CPU/req c=32':>18} {'non-2xx':>8}")
    for name, row in median.items():
        print(
            f"{name:<6} {row['p50_ms']:>13.3f} {row['cpu_ms']:>12.3f} {row['rps_32']:>11.0f} "
            f"{row['cpu_32_ms']:>13.3f} {row['loop_32_ms']:>18.3f} {row['errors']:>8.0f}"
        )
    off = median["off"]
    for name, on in median.items():
        if name == "off":
            continue
        print(f"{name}: added p50 at 1 connection: {on['p50_ms'] - off['p50_ms']:.3f} ms (target < 0.5 ms)")
        print(f"{name}: req/s at 32 connections, on / off: {on['rps_32'] / off['rps_32']:.1%} (target >= 85%)")
        added_1, added_32 = on["cpu_ms"] - off["cpu_ms"], on["cpu_32_ms"] - off["cpu_32_ms"]
        print(f"{name}: added CPU per request: {added_1:.3f} ms at c=1, {added_32:.3f} ms at c=32")
        # The gateway is CPU-bound at 32 connections: its capacity ratio is the inverse ratio of CPU per request, a
        # figure less swayed than req/s by what else runs on the machine.
        capacity = off["cpu_32_ms"] / on["cpu_32_ms"]
        print(f"{name}: capacity at 32 connections from CPU per request, on / off: {capacity:.1%}")
        # One event loop serves every request; a client's own threads (glide's Rust core) run beside it while the
        # pod has CPU to spare (the gateway's limit is 2 CPUs): then the loop's CPU per request sets the capacity.
        loop_capacity = off["loop_32_ms"] / on["loop_32_ms"]
        print(f"{name}: capacity of the event loop at 32 connections, on / off: {loop_capacity:.1%}")


if __name__ == "__main__":
    sys.exit(main())
