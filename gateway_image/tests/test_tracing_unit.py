"""W3C traceparent parsing and the tracing config, against the examples of the specification."""

from __future__ import annotations

import orjson
import pytest
from llm_gateway.config import ConfigError, parse_config
from llm_gateway.proxy import Exchange
from llm_gateway.tracing import RecordedTrace, parse_traceparent

# W3C Trace Context (https://www.w3.org/TR/trace-context/), section 3.2.2 and its examples.
VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_specification_example_parses() -> None:
    assert parse_traceparent(VALID) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")


def test_a_later_version_may_carry_more_fields_and_its_known_prefix_is_used() -> None:
    # Section 4.3 (versioning): a higher version is parsed as version 00 when the first fields fit.
    parsed = parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like")
    assert parsed == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        VALID.upper(),  # hex must be lower case
        "ff" + VALID[2:],  # version ff is invalid
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        VALID + "-extra",  # version 00 has exactly four fields
        VALID[:-1],  # short flags
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    ],
)
def test_invalid_headers_are_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def base(**tracing: object) -> dict[str, object]:
    return {
        "server": {"require_api_key": False},
        "backends": [{"name": "a", "kind": "vllm", "url": "http://127.0.0.1:9/v1"}],
        "routes": [{"model": "m", "targets": [{"backend": "a"}]}],
        "tracing": tracing,
    }


def test_tracing_is_off_by_default() -> None:
    config = parse_config({key: value for key, value in base().items() if key != "tracing"})
    assert config.tracing.enabled is False


def test_a_batch_larger_than_the_queue_is_refused_with_its_key_path() -> None:
    # The SDK's BatchSpanProcessor raises on the same combination only when the gateway starts.
    with pytest.raises(ConfigError, match=r"tracing: max_export_batch_size 600 exceeds max_queue_size 500"):
        parse_config(base(enabled=True, max_queue_size=500, max_export_batch_size=600))


def test_an_endpoint_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"tracing\.endpoint: .*got 'collector:4318'"):
        parse_config(base(enabled=True, endpoint="collector:4318"))


def test_a_sample_ratio_above_one_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"tracing\.sample_ratio: "):
        parse_config(base(sample_ratio=1.5))


class CapturingExport:
    """What RecordedTrace needs of SpanExport: the sampling bound and where finished lines go."""

    def __init__(self, ratio: float) -> None:
        self.bound = round(ratio * (1 << 64))
        self.lines: list[list[object]] = []

    def emit(self, lines: list[bytes]) -> None:
        self.lines += [orjson.loads(line) for line in lines]


def test_a_wait_for_capacity_is_a_span_under_the_request() -> None:
    export = CapturingExport(1.0)
    exchange = Exchange("req-1", 0.0)
    trace = RecordedTrace(export, {"traceparent": VALID}, exchange, "/chat/completions")  # type: ignore[arg-type]
    with trace.waiting("llama"):
        pass
    trace.finish()
    server, wait = export.lines
    # [trace id, tracestate, span id, parent id, name, kind, start, end, attributes, extra] (trace_export.py)
    assert server[0] == wait[0] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (server[3], server[4]) == ("00f067aa0ba902b7", "POST /v1/chat/completions")
    assert (wait[3], wait[4], wait[5]) == (server[2], "wait llama", 0)  # opentelemetry SpanKind.INTERNAL = 0
    assert wait[8] == {"llm_gateway.backend": "llama"}


def test_new_traces_are_sampled_by_trace_id_at_the_ratio() -> None:
    # TraceIdRatioBased: sampled when the trace id's lower 64 bits are below ratio x 2^64; over 2,000 new traces at
    # 0.25 about 500 are sampled (binomial: standard deviation ~19, so 400-600 is over 5 of them).
    export = CapturingExport(0.25)
    sampled = sum(RecordedTrace(export, {}, Exchange("r", 0.0), "/completions").sampled for _ in range(2000))  # type: ignore[arg-type]
    assert 400 <= sampled <= 600
    never = CapturingExport(0.0)
    assert not any(RecordedTrace(never, {}, Exchange("r", 0.0), "/completions").sampled for _ in range(200))  # type: ignore[arg-type]
