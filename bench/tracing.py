"""What tracing adds to one request on the gateway's event loop: off (propagation only) and on (spans recorded).

Run: PYTHONPATH=gateway_image .venv/bin/python bench/tracing.py [--requests 20000] [--rounds 7]

The calls are the ones the server and proxy make for a plain request with one upstream attempt (Runtime.tracing
.start, the attempt's span around the upstream call, finish at the audit line), plus the share of the batched pipe
writes to the exporter process (one write per 100 requests here; the gateway writes every 50 ms). The exporter
process itself (SDK spans, protobuf, HTTP to the sink) runs beside the loop and is not counted: on a pod it is
another core's work; on a saturated 2-core machine it competes for CPU, which bench/gateway.py's `traced` target
shows. `none` is the same bookkeeping without any tracing call (the gateway before tracing). Per request: the CPU
time of the loop's thread, minimum over rounds of the mean of `--requests` requests (the figure least disturbed by
other load on a shared machine), and the median for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "gateway_image"))

from llm_gateway.backends import Backend  # noqa: E402
from llm_gateway.config import BackendConfig, TracingConfig  # noqa: E402
from llm_gateway.metrics import Metrics  # noqa: E402
from llm_gateway.proxy import Exchange  # noqa: E402
from llm_gateway.tracing import PROPAGATION, SpanExport, Tracing  # noqa: E402

SINK = """
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
server.serve_forever()
"""
TRACEPARENT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def no_tracing(tracing: Tracing, backend: Backend) -> None:
    """The same request's bookkeeping without a trace: the gateway before tracing (the baseline of `off`)."""
    exchange = Exchange("bench-request", 0.0)
    exchange.requested_model, exchange.team, exchange.status = "bench-model", "bench", 200
    exchange.prompt_tokens, exchange.completion_tokens = 12, 16


def one_request(tracing: Tracing, backend: Backend) -> None:
    exchange = Exchange("bench-request", 0.0)
    exchange.requested_model, exchange.team, exchange.status = "bench-model", "bench", 200
    trace = tracing.start(TRACEPARENT, exchange, "/chat/completions")
    with trace.attempt(backend, backend.endpoints[0]):
        exchange.prompt_tokens, exchange.completion_tokens = 12, 16
    trace.finish()


def measure(tracing: Tracing | None, backend: Backend, requests: int, rounds: int) -> list[float]:
    per_request = []
    request = no_tracing if tracing is None else one_request
    for _ in range(rounds):
        # CPU time of this thread, not the wall clock: on a shared machine the wall clock also counts the time other
        # processes held the CPU.
        start = time.thread_time()
        for index in range(requests):
            request(tracing or PROPAGATION, backend)
            if index % 100 == 99 and isinstance(tracing, SpanExport):
                tracing.flush()
        per_request.append((time.thread_time() - start) / requests * 1e6)
    return per_request


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        config = TracingConfig(enabled=True, endpoint=f"http://127.0.0.1:{port}/v1/traces", max_queue_size=100_000)
        exporter = SpanExport(config)
        backend = Backend(BackendConfig(name="bench", kind="vllm", url="http://127.0.0.1:9/v1"), Metrics())
        results = {}
        variants: list[tuple[str, Tracing | None]] = [("none", None), ("off", PROPAGATION), ("on", exporter)]
        for name, tracing in variants:
            measure(tracing, backend, 2_000, 1)  # warm-up
            results[name] = measure(tracing, backend, args.requests, args.rounds)
        await exporter.close()
        # The exporter process has been waited for: its CPU time is the children's (the sink still runs).
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu_s = child.ru_utime + child.ru_stime
        print(f"{'tracing':<8} {'min us/req':>11} {'median':>8}")
        for name, values in results.items():
            print(f"{name:<8} {min(values):>11.2f} {statistics.median(values):>8.2f}")
        off = min(results["off"]) - min(results["none"])
        on = min(results["on"]) - min(results["none"])
        print(
            f"added per request (minimum of rounds): off {off:.2f} us, on {on:.2f} us; dropped spans {exporter.dropped}"
        )
        sent = 2 * (2_000 + args.requests * args.rounds) - exporter.dropped  # two spans per request
        print(f"exporter process: {child_cpu_s:.1f} s CPU for {sent} spans, {child_cpu_s / sent * 1e6:.0f} us per span")
    finally:
        sink.terminate()
        sink.wait(5)


if __name__ == "__main__":
    asyncio.run(main())
