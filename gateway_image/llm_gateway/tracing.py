"""Request tracing: W3C trace context always, OpenTelemetry spans over OTLP when the config enables them.

Off (the default) the gateway is a plain participant of the caller's trace: it takes the incoming `traceparent`
(or starts a trace), and gives every upstream attempt its own parent id, so a backend's spans can be told apart per
attempt. No OpenTelemetry object exists then; the SDK is not even imported.

On, each request is a server span with one client span per attempt (backend, endpoint, status, tokens), an event at
the stream's first token, and a span for any wait for capacity. Spans are queued for a BatchSpanProcessor, whose
own thread exports them over OTLP/HTTP: the event loop never waits on the collector, and a full queue drops spans
rather than holding requests.

Trace context format: https://www.w3.org/TR/trace-context/#traceparent-header. Attribute names: OpenTelemetry's
semantic conventions for GenAI client spans (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/) and
HTTP server spans (https://opentelemetry.io/docs/specs/semconv/http/http-spans/).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .config import TracingConfig

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from .backends import Backend
    from .balancing import Endpoint
    from .proxy import Exchange

# version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex. A later version may append fields after a
# "-"; version ff is invalid (W3C Trace Context, section 3.2.2 and 3.2.4).
TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
ZERO_TRACE_ID = "0" * 32
ZERO_SPAN_ID = "0" * 16
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


# ---- on: OpenTelemetry spans


class SpanExport:
    """A TracerProvider of our own (not the global one), exporting in batches over OTLP/HTTP protobuf."""

    def __init__(self, config: TracingConfig) -> None:
        # Imported here: with tracing off the gateway never loads the SDK.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES, so a pod can add k8s.pod.name and the like.
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            # A caller's sampled flag wins; a trace started here is sampled by its id at the configured ratio.
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        exporter = OTLPSpanExporter(endpoint=config.endpoint, timeout=config.export_timeout_s)
        self.provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=config.max_queue_size,
                schedule_delay_millis=config.schedule_delay_s * 1000,
                max_export_batch_size=config.max_export_batch_size,
                export_timeout_millis=config.export_timeout_s * 1000,
            )
        )
        self.tracer: Tracer = self.provider.get_tracer("llm_gateway")

    def start(self, headers: Mapping[str, str], exchange: Exchange, path: str) -> Trace:
        return SpanTrace(self.tracer, headers, exchange, path)

    async def close(self) -> None:
        # shutdown() exports what is queued and joins the exporter's thread: blocking, so off the event loop.
        await asyncio.to_thread(self.provider.shutdown)


def _parent_context(headers: Mapping[str, str]) -> Context:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    parsed = parse_traceparent(headers.get("traceparent"))
    if parsed is None:
        return Context()  # a new root, whatever the ambient context holds
    trace_id, parent_id, flags = parsed
    state = headers.get("tracestate")
    parent = SpanContext(
        int(trace_id, 16),
        int(parent_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16)),
        trace_state=TraceState.from_header([state]) if state else None,
    )
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


class SpanTrace:
    """The request's server span, and the attempt span that is open, if any."""

    __slots__ = ("_attempt", "_context", "_exchange", "_operation", "_tracer", "outgoing", "span")

    def __init__(self, tracer: Tracer, headers: Mapping[str, str], exchange: Exchange, path: str) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        self._tracer = tracer
        self._exchange = exchange
        self._operation = OPERATIONS.get(path, path.strip("/"))
        parent = _parent_context(headers)
        self.span: Span = tracer.start_span(
            f"POST /v1{path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "POST", "http.route": f"/v1{path}", "url.path": f"/v1{path}"},
        )
        self._context = trace.set_span_in_context(self.span, parent)
        self._attempt: Span | None = None
        self.outgoing: dict[str, str] = {}

    def attempt(self, backend: Backend, endpoint: Endpoint) -> AttemptSpan:
        return AttemptSpan(self, backend, endpoint)

    def waiting(self, backend: str) -> contextlib.AbstractContextManager[Any]:
        """A span around a wait for capacity (a backend waking from zero, a full queue)."""
        return self._tracer.start_as_current_span(
            f"wait {backend}", context=self._context, attributes={"llm_gateway.backend": backend}
        )

    def first_token(self) -> None:
        if self._attempt is not None:
            self._attempt.add_event("llm_gateway.first_token")

    def finish(self) -> None:
        span, exchange = self.span, self._exchange
        if span.is_recording():
            span.set_attributes(
                {
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
            )
            if exchange.ttft_s is not None:
                span.set_attribute("llm_gateway.time_to_first_token_s", exchange.ttft_s)
            if exchange.status >= 400:
                span.set_attribute("error.type", exchange.reason or str(exchange.status))
            if exchange.status >= 500:
                # HTTP server spans: a 4xx is the client's error, not the server's (HTTP semantic conventions).
                _set_error(span, exchange.reason or str(exchange.status))
        span.end()


class AttemptSpan:
    """One upstream attempt: a client span whose id is the parent id the backend receives."""

    __slots__ = ("_backend", "_endpoint", "_span", "_tokens", "_trace")

    def __init__(self, trace: SpanTrace, backend: Backend, endpoint: Endpoint) -> None:
        self._trace, self._backend, self._endpoint = trace, backend, endpoint
        self._span: Span | None = None
        self._tokens = (0, 0)

    def __enter__(self) -> AttemptSpan:
        from opentelemetry.trace import SpanKind

        trace, backend, exchange = self._trace, self._backend, self._trace._exchange
        model = backend.upstream_model or exchange.requested_model
        url = urlsplit(self._endpoint.base_url)
        span = trace._tracer.start_span(
            f"{trace._operation} {model}",
            context=trace._context,
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": trace._operation,
                "gen_ai.request.model": model,
                # gen_ai.system is the older name of gen_ai.provider.name; trace backends still read either.
                "gen_ai.provider.name": backend.kind,
                "gen_ai.system": backend.kind,
                "server.address": url.hostname or "",
                "server.port": url.port or (443 if url.scheme == "https" else 80),
                "llm_gateway.backend": backend.name,
                "llm_gateway.endpoint": self._endpoint.label,
                "llm_gateway.attempt": exchange.attempts,
            },
        )
        context = span.get_span_context()
        trace.outgoing = {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"}
        state = context.trace_state.to_header() if context.trace_state else ""
        if state:
            trace.outgoing["tracestate"] = state
        self._span, trace._attempt = span, span
        self._tokens = (exchange.prompt_tokens, exchange.completion_tokens)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        span, exchange = self._span, self._trace._exchange
        self._trace._attempt = None
        assert span is not None
        if span.is_recording():
            status, reason = _outcome(exc, exchange.status)
            span.set_attribute("http.response.status_code", status)
            if exc is None and status < 400:
                span.set_attributes(
                    {
                        # The backend answers under the model name it was sent (vLLM's served model name).
                        "gen_ai.response.model": self._backend.upstream_model or exchange.requested_model,
                        "gen_ai.usage.input_tokens": exchange.prompt_tokens - self._tokens[0],
                        "gen_ai.usage.output_tokens": exchange.completion_tokens - self._tokens[1],
                    }
                )
            if reason is not None:
                span.set_attribute("error.type", reason)
                _set_error(span, reason)
        span.end()


def _outcome(exc: BaseException | None, status: int) -> tuple[int, str | None]:
    """The attempt's status and error type, from the proxy's exceptions (RetryableFailure, StreamBroken, ...)."""
    if exc is None:
        return status, None if status < 400 else str(status)  # error.type: the status code, as a string
    response = getattr(exc, "response", None)  # ContextTooLong: the backend's own 400
    if response is not None and isinstance(getattr(response, "status", None), int):
        return response.status, "context_length_exceeded"
    reason = getattr(exc, "reason", None)
    return getattr(exc, "status", status), reason if isinstance(reason, str) else type(exc).__name__


def _set_error(span: Span, description: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description))
