"""The gateway's span exporter, a child process: JSON lines of spans in, OTLP/HTTP out, with the OpenTelemetry SDK.

Started by llm_gateway.tracing.SpanExport with its TracingConfig in the environment; one line per span:
[trace id, tracestate, span id, parent span id, name, kind, start ns, end ns, attributes, extra], where extra may
hold "error" (the status description) and "events" ([[name, time ns], ...]). Spans go to a BatchSpanProcessor and
the SDK's OTLP/HTTP protobuf exporter; at the end of the input the processor exports what it holds and the process
exits. Run on its own only by the gateway.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import orjson
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from .config import TracingConfig
from .tracing import EXPORT_CONFIG_ENV, SERVER

log = logging.getLogger("llm_gateway.trace_export")
SAMPLED = TraceFlags(TraceFlags.SAMPLED)  # only sampled spans are sent here
KINDS = {kind.value: kind for kind in SpanKind}
UNSET = Status(StatusCode.UNSET)


def build_span(line: list[Any], resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    trace_id_hex, tracestate, span_id, parent_id, name, kind, start_ns, end_ns, attributes, extra = line
    trace_id = int(trace_id_hex, 16)
    state = TraceState.from_header([tracestate]) if tracestate else None
    context = SpanContext(trace_id, int(span_id, 16), is_remote=False, trace_flags=SAMPLED, trace_state=state)
    parent = None
    if parent_id:
        # A server span's parent is the caller's (from its traceparent); every other span's is the server span.
        remote = kind == SERVER
        parent = SpanContext(trace_id, int(parent_id, 16), is_remote=remote, trace_flags=SAMPLED, trace_state=state)
    error = extra.get("error")
    return ReadableSpan(
        name=name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        events=[Event(event, timestamp=at) for event, at in extra.get("events", ())],
        kind=KINDS[kind],
        status=Status(StatusCode.ERROR, error) if error else UNSET,
        start_time=start_ns,
        end_time=end_ns,
        instrumentation_scope=scope,
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="llm-gateway trace export: %(message)s")
    config = TracingConfig.model_validate_json(os.environ[EXPORT_CONFIG_ENV])
    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES, so a pod can add k8s.pod.name and the like.
    resource = Resource.create({"service.name": config.service_name})
    scope = InstrumentationScope("llm_gateway")
    processor = BatchSpanProcessor(
        OTLPSpanExporter(endpoint=config.endpoint, timeout=config.export_timeout_s),
        max_queue_size=config.max_queue_size,
        schedule_delay_millis=config.schedule_delay_s * 1000,
        max_export_batch_size=config.max_export_batch_size,
        export_timeout_millis=config.export_timeout_s * 1000,
    )
    try:
        for raw in sys.stdin.buffer:
            try:
                processor.on_end(build_span(orjson.loads(raw), resource, scope))
            except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
                log.warning("skipped a malformed span record: %s", exc)
    except KeyboardInterrupt:
        pass
    finally:
        processor.shutdown()


if __name__ == "__main__":
    main()
