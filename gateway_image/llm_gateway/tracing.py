"""Request tracing: W3C trace context always, OpenTelemetry spans over OTLP when the config enables them.

Off (the default) the gateway is a plain participant of the caller's trace: it takes the incoming `traceparent`
(or starts a trace), and gives every upstream attempt its own parent id, so a backend's spans can be told apart per
attempt. No OpenTelemetry object exists then, and no exporter.

On, each request is a server span with one client span per attempt (backend, endpoint, status, tokens), an event at
the stream's first token, and a span for any wait for capacity. They are recorded here as plain values and exported
by the OpenTelemetry SDK (BatchSpanProcessor, OTLP/HTTP protobuf exporter) in a child process
(llm_gateway/trace_export.py): the event loop never builds SDK spans, encodes protobuf or waits on the collector.

Trace context format: https://www.w3.org/TR/trace-context/#traceparent-header. Attribute names: OpenTelemetry's
semantic conventions for GenAI client spans (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/) and
HTTP server spans (https://opentelemetry.io/docs/specs/semconv/http/http-spans/).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import orjson

from .config import TracingConfig

if TYPE_CHECKING:
    from .backends import Backend
    from .balancing import Endpoint
    from .proxy import Exchange

# version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex. A later version may append fields after a
# "-"; version ff is invalid (W3C Trace Context, section 3.2.2 and 3.2.4).
TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
ZERO_TRACE_ID = "0" * 32
ZERO_SPAN_ID = "0" * 16
# The child process reads its TracingConfig (JSON) from this variable (llm_gateway/trace_export.py).
EXPORT_CONFIG_ENV = "LLM_GATEWAY_TRACE_EXPORT"
FLUSH_INTERVAL_S = 0.05  # spans reach the child at most this late: one pipe write per interval, not per request
# What the pipe did not take yet (~1,700 spans); beyond it spans are dropped rather than copied again every flush.
MAX_PENDING_BYTES = 1024 * 1024
log = logging.getLogger("llm_gateway.tracing")
# gen_ai.operation.name by OpenAI path (GenAI semantic conventions' well-known values).
OPERATIONS = {"/chat/completions": "chat", "/completions": "text_completion", "/embeddings": "embeddings"}


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """(trace id, parent id, flags) of a valid W3C traceparent header, else None (the header is then ignored)."""
    if not value:
        return None
    match = TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == ZERO_TRACE_ID or parent_id == ZERO_SPAN_ID:
        return None
    return trace_id, parent_id, flags


class Trace(Protocol):
    """One request's trace, as the proxy sees it."""

    outgoing: dict[str, str]  # the trace headers of the current attempt, to send upstream

    def attempt(self, backend: Backend, endpoint: Endpoint) -> contextlib.AbstractContextManager[Any]: ...

    def waiting(self, backend: str) -> contextlib.AbstractContextManager[Any]: ...

    def first_token(self) -> None: ...

    def finish(self) -> None: ...


class Tracing(Protocol):
    """Built once per config; starts each request's trace."""

    def start(self, headers: Mapping[str, str], exchange: Exchange, path: str) -> Trace: ...

    async def close(self) -> None: ...


def build_tracing(config: TracingConfig) -> Tracing:
    if not config.enabled:
        return PROPAGATION
    return SpanExport(config)


# ---- off: propagation only


class PropagatedTrace:
    """The caller's trace (or a new one) passed on, with a fresh parent id per attempt; records nothing."""

    __slots__ = ("flags", "outgoing", "trace_id", "tracestate")

    def __init__(self, headers: Mapping[str, str]) -> None:
        parsed = parse_traceparent(headers.get("traceparent"))
        self.tracestate: str | None = None
        if parsed is None:
            # A trace started here that nobody records: not sampled, so backends need not record their part alone.
            self.trace_id, self.flags = os.urandom(16).hex(), "00"
        else:
            self.trace_id, _, self.flags = parsed
            # Passed on unchanged; only a valid traceparent makes it meaningful (W3C Trace Context, 3.3).
            self.tracestate = headers.get("tracestate")
        self.outgoing: dict[str, str] = {}

    def attempt(self, backend: Backend, endpoint: Endpoint) -> PropagatedTrace:
        return self

    def __enter__(self) -> PropagatedTrace:
        self.outgoing = {"traceparent": f"00-{self.trace_id}-{os.urandom(8).hex()}-{self.flags}"}
        if self.tracestate:
            self.outgoing["tracestate"] = self.tracestate
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def waiting(self, backend: str) -> contextlib.nullcontext[None]:
        return NO_WAIT

    def first_token(self) -> None:
        return None

    def finish(self) -> None:
        return None


NO_WAIT: contextlib.nullcontext[None] = contextlib.nullcontext()
# An Exchange's trace until the server starts the request's own (and for requests refused before any handler).
UNTRACED = PropagatedTrace({})


class Propagation:
    def start(self, headers: Mapping[str, str], exchange: Exchange, path: str) -> Trace:
        return PropagatedTrace(headers)

    async def close(self) -> None:
        return None


PROPAGATION = Propagation()


# ---- on: spans recorded here, exported by the OpenTelemetry SDK in a process of its own


class SpanExport:
    """Records each request's spans as plain data and hands them to `python -m llm_gateway.trace_export`.

    That child process builds the SDK's spans and exports them with a BatchSpanProcessor and the OTLP/HTTP exporter.
    The SDK's own span objects cost ~100 us per request here (attribute checks, locks) and its protobuf encoding
    as much again per span, and the encoding would hold the GIL on the exporter thread while requests wait: in the
    child process neither touches the event loop. What is left on the path is a few microseconds per request: ids,
    timestamps, one JSON line. Bounded: when the child falls behind, spans are dropped and counted, never waited on.
    """

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        # TraceIdRatioBased's rule (opentelemetry-sdk 1.45 sdk/trace/sampling.py): sampled when the trace id's lower
        # 64 bits are below round(ratio x 2^64); a caller's sampled flag wins (ParentBased).
        self.bound = round(config.sample_ratio * (1 << 64))
        self.max_buffered = config.max_queue_size
        self.buffered: list[bytes] = []
        self.dropped = 0
        self.closing = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway.trace_export"],
            stdin=subprocess.PIPE,
            env=_child_env(config),
        )
        assert self.process.stdin is not None
        self.pipe = self.process.stdin.fileno()
        os.set_blocking(self.pipe, False)
        with contextlib.suppress(OSError, AttributeError):
            # Linux: a 1 MiB pipe (the default 64 KiB is ~100 spans) absorbs the child's pauses (pipe(7)).
            fcntl.fcntl(self.pipe, fcntl.F_SETPIPE_SZ, 1024 * 1024)
        self.pending = b""  # the part of a write the pipe did not take

    def start(self, headers: Mapping[str, str], exchange: Exchange, path: str) -> Trace:
        return RecordedTrace(self, headers, exchange, path)

    def emit(self, lines: list[bytes]) -> None:
        """Queue a finished request's spans; written to the child on the next flush (after the response is sent)."""
        if self.closing:
            return
        if len(self.buffered) >= self.max_buffered:
            self._drop(len(lines))
            return
        self.buffered += lines
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        if self.process.stdin is None or self.process.stdin.closed:
            return
        data = self.pending + b"".join(self.buffered)
        spans = len(self.buffered)
        self.buffered = []
        try:
            written = os.write(self.pipe, data) if data else 0
        except BlockingIOError:
            written = 0
        except (BrokenPipeError, OSError):
            self._drop(spans)
            self.pending = b""
            return
        self.pending = data[written:]
        if len(self.pending) > MAX_PENDING_BYTES:
            # Whole lines only: the child may hold the start of the first one already.
            cut = self.pending.find(b"\n") + 1
            self._drop(self.pending.count(b"\n", cut))
            self.pending = self.pending[:cut]
        if self.pending:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self.flush)

    def _drop(self, spans: int) -> None:
        if self.dropped == 0 or (self.dropped + spans) // 10_000 > self.dropped // 10_000:
            log.warning(
                "tracing: %d spans dropped so far (the exporter process is behind or gone)", self.dropped + spans
            )
        self.dropped += spans

    async def close(self) -> None:
        self.flush()
        self.closing = True
        # No later flush may write while the rest goes out from a thread: the child would get interleaved bytes.
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        rest, self.pending = self.pending, b""
        self.buffered = []  # closing: what comes now is not exported
        if rest:
            os.set_blocking(self.pipe, True)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(_write_all, self.pipe, rest)
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        # The child exports what it holds (its BatchSpanProcessor's shutdown) when its input ends.
        try:
            await asyncio.to_thread(self.process.wait, self.config.export_timeout_s + 5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _child_env(config: TracingConfig) -> dict[str, str]:
    # The child imports this very llm_gateway package, wherever it was imported from (a checkout, the image).
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, EXPORT_CONFIG_ENV: config.model_dump_json()}


def _new_id(hex_digits: int) -> str:
    """A random trace id (32 hex digits) or span id (16), never the invalid all-zero id (W3C Trace Context 3.2.2)."""
    value = os.urandom(hex_digits // 2).hex()
    while not value.strip("0"):
        value = os.urandom(hex_digits // 2).hex()
    return value


class RecordedTrace:
    """One request: its server span, and one client span per attempt, as plain values until the request ends."""

    __slots__ = (
        "_attempt",
        "_exchange",
        "_export",
        "_operation",
        "_route",
        "_spans",
        "flags",
        "outgoing",
        "parent_id",
        "sampled",
        "span_id",
        "start_ns",
        "trace_id",
        "tracestate",
    )

    def __init__(self, export: SpanExport, headers: Mapping[str, str], exchange: Exchange, path: str) -> None:
        self._export, self._exchange = export, exchange
        self._operation = OPERATIONS.get(path, path.strip("/"))
        self._route = "/v1" + path
        parsed = parse_traceparent(headers.get("traceparent"))
        self.tracestate: str | None = None
        if parsed is None:
            self.trace_id = _new_id(32)
            self.parent_id = ""
            self.sampled = int(self.trace_id[16:], 16) < export.bound
        else:
            self.trace_id, self.parent_id, flags = parsed
            self.sampled = bool(int(flags, 16) & 1)
            self.tracestate = headers.get("tracestate")
        self.flags = "01" if self.sampled else "00"
        self.span_id = _new_id(16)
        self.start_ns = time.time_ns()
        self.outgoing: dict[str, str] = {}
        self._spans: list[list[Any]] = []
        self._attempt: AttemptSpan | None = None

    def attempt(self, backend: Backend, endpoint: Endpoint) -> AttemptSpan:
        return AttemptSpan(self, backend, endpoint)

    def waiting(self, backend: str) -> contextlib.AbstractContextManager[Any]:
        """A span around a wait for capacity (a backend waking from zero, a full queue)."""
        return WaitSpan(self, backend)

    def first_token(self) -> None:
        if self._attempt is not None:
            self._attempt.first_token_ns = time.time_ns()

    def record(
        self, span_id: str, name: str, kind: int, start_ns: int, attributes: dict[str, Any], **more: Any
    ) -> None:
        if self.sampled:
            self._spans.append([span_id, self.span_id, name, kind, start_ns, time.time_ns(), attributes, more])

    def finish(self) -> None:
        if not self.sampled:
            return
        exchange = self._exchange
        attributes: dict[str, Any] = {
            "http.request.method": "POST",
            "http.route": self._route,
            "http.response.status_code": exchange.status,
            "gen_ai.operation.name": self._operation,
            "gen_ai.request.model": exchange.requested_model,
            "gen_ai.usage.input_tokens": exchange.prompt_tokens,
            "gen_ai.usage.output_tokens": exchange.completion_tokens,
            "llm_gateway.request_id": exchange.request_id,
            "llm_gateway.team": exchange.team,
            "llm_gateway.route": exchange.route,
            "llm_gateway.backend": exchange.backend,
            "llm_gateway.attempts": exchange.attempts,
            "llm_gateway.stream": exchange.stream,
        }
        if exchange.ttft_s is not None:
            attributes["llm_gateway.time_to_first_token_s"] = exchange.ttft_s
        more: dict[str, Any] = {}
        if exchange.status >= 400:
            attributes["error.type"] = exchange.reason or str(exchange.status)
        if exchange.status >= 500:
            # HTTP server spans: a 4xx is the client's error, not the server's (HTTP semantic conventions).
            more["error"] = exchange.reason or str(exchange.status)
        head = [self.trace_id, self.tracestate or ""]
        server = [self.span_id, self.parent_id, f"POST {self._route}", SERVER, self.start_ns, time.time_ns()]
        lines = [orjson.dumps([*head, *server, attributes, more]) + b"\n"]
        lines += [orjson.dumps([*head, *span]) + b"\n" for span in self._spans]
        self._export.emit(lines)


# opentelemetry.trace.SpanKind values (the OTLP proto's are these plus one).
INTERNAL, SERVER, CLIENT = 0, 1, 2


class AttemptSpan:
    """One upstream attempt: a client span whose id is the parent id the backend receives."""

    __slots__ = ("_backend", "_endpoint", "_start_ns", "_tokens", "_trace", "first_token_ns", "span_id")

    def __init__(self, trace: RecordedTrace, backend: Backend, endpoint: Endpoint) -> None:
        self._trace, self._backend, self._endpoint = trace, backend, endpoint
        self.span_id = ""
        self._start_ns = 0
        self._tokens = (0, 0)
        self.first_token_ns = 0

    def __enter__(self) -> AttemptSpan:
        trace = self._trace
        self.span_id = _new_id(16)
        trace.outgoing = {"traceparent": f"00-{trace.trace_id}-{self.span_id}-{trace.flags}"}
        if trace.tracestate:
            trace.outgoing["tracestate"] = trace.tracestate
        trace._attempt = self
        exchange = trace._exchange
        self._tokens = (exchange.prompt_tokens, exchange.completion_tokens)
        self._start_ns = time.time_ns()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        trace, backend = self._trace, self._backend
        trace._attempt = None
        if not trace.sampled:
            return
        exchange = trace._exchange
        model = backend.upstream_model or exchange.requested_model
        address, port = _server(self._endpoint.base_url)
        status, reason = _outcome(exc, exchange.status)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": trace._operation,
            "gen_ai.request.model": model,
            # gen_ai.system is the older name of gen_ai.provider.name; trace backends still read either.
            "gen_ai.provider.name": backend.kind,
            "gen_ai.system": backend.kind,
            "server.address": address,
            "server.port": port,
            "http.response.status_code": status,
            "llm_gateway.backend": backend.name,
            "llm_gateway.endpoint": self._endpoint.label,
            "llm_gateway.attempt": exchange.attempts,
        }
        more: dict[str, Any] = {}
        if reason is None:
            # The backend answers under the model name it was sent (vLLM's served model name).
            attributes["gen_ai.response.model"] = model
            attributes["gen_ai.usage.input_tokens"] = exchange.prompt_tokens - self._tokens[0]
            attributes["gen_ai.usage.output_tokens"] = exchange.completion_tokens - self._tokens[1]
        else:
            attributes["error.type"] = reason
            more["error"] = reason
        if self.first_token_ns:
            more["events"] = [["llm_gateway.first_token", self.first_token_ns]]
        trace.record(self.span_id, f"{trace._operation} {model}", CLIENT, self._start_ns, attributes, **more)


class WaitSpan:
    __slots__ = ("_backend", "_start_ns", "_trace")

    def __init__(self, trace: RecordedTrace, backend: str) -> None:
        self._trace, self._backend, self._start_ns = trace, backend, 0

    def __enter__(self) -> WaitSpan:
        self._start_ns = time.time_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        span_id = _new_id(16)
        attributes = {"llm_gateway.backend": self._backend}
        self._trace.record(span_id, f"wait {self._backend}", INTERNAL, self._start_ns, attributes)


@functools.lru_cache(maxsize=1024)
def _server(base_url: str) -> tuple[str, int]:
    """server.address and server.port of an endpoint (parsed once per URL: ~10 us a time)."""
    url = urlsplit(base_url)
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def _outcome(exc: BaseException | None, status: int) -> tuple[int, str | None]:
    """The attempt's status and error type, from the proxy's exceptions (RetryableFailure, StreamBroken, ...)."""
    if exc is None:
        return status, None if status < 400 else str(status)  # error.type: the status code, as a string
    response = getattr(exc, "response", None)  # ContextTooLong: the backend's own 400
    if response is not None and isinstance(getattr(response, "status", None), int):
        return response.status, "context_length_exceeded"
    reason = getattr(exc, "reason", None)
    return getattr(exc, "status", status), reason if isinstance(reason, str) else type(exc).__name__
