"""The gateway in front of a real vLLM server (CPU build, tiny random Llama): usage, streams, stream recovery.

Uses the project's vLLM harness (tests/vllm_server.py); skipped where vLLM or that harness is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from otlp_receiver import OtlpReceiver

from conftest import KEY, Harness, LoopThread, backend, client

pytestmark = [pytest.mark.vllm, pytest.mark.network]


@pytest.fixture(scope="module")
def otlp(servers: LoopThread) -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    servers.run(receiver.start())
    yield receiver
    servers.run(receiver.stop())


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[Any]:
    pytest.importorskip("vllm", reason="needs the vLLM CPU build")
    harness = pytest.importorskip("tests.vllm_server", reason="needs the project's vLLM test harness")
    serve_args, serve_env = harness.local_serve_args, harness.local_serve_env
    with pytest.MonkeyPatch.context() as patch:
        # Tracing as the traced stacks start vLLM (components/vllm_deployment.py tracing_args, tracing_env), to the
        # test's receiver; batches every 0.1 s (OTEL_BSP_SCHEDULE_DELAY, ms) instead of the SDK's 5 s. vLLM records
        # only what the gateway sampled (its ParentBased default): the other tests here send no sampled trace.
        patch.setattr(
            harness, "local_serve_args", lambda *a: [*serve_args(*a), "--otlp-traces-endpoint", otlp.endpoint]
        )
        tracing_env = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": "vllm"}
        patch.setattr(
            harness, "local_serve_env", lambda *a: {**serve_env(*a), **tracing_env, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        )
        with harness.running_vllm(tmp_path_factory.mktemp("vllm")) as server:
            yield server


def vllm_backend(server: Any) -> dict[str, Any]:
    return {
        "name": "vllm",
        "kind": "vllm",
        "url": server.base_url,
        "api_key_env": "GATEWAY_TEST_VLLM_KEY",
        "model": server.model,
        "health": {"interval_s": 1},
    }


def test_plain_and_streamed_chat_through_the_gateway(
    harness: Harness, vllm: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_VLLM_KEY", vllm.api_key)
    _, url = harness.gateway(
        {
            "backends": [vllm_backend(vllm)],
            "routes": [{"model": "tiny", "targets": [{"backend": "vllm"}]}],
            "pricing": {vllm.model: {"input_per_million": 1, "output_per_million": 2}},
        }
    )
    c = client(url)
    reply = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8)
    assert reply.usage is not None and reply.usage.completion_tokens >= 1
    chunks = list(
        c.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8, stream=True
        )
    )
    assert chunks and all(chunk.usage is None for chunk in chunks)  # the usage chunk we asked for was stripped
    plain, streamed = harness.audit(2)
    assert (plain["prompt_tokens"], plain["completion_tokens"]) == (reply.usage.prompt_tokens, 8)
    assert streamed["stream"] and streamed["completion_tokens"] == 8 and streamed["cost_usd"] > 0


def test_stream_recovery_continues_on_real_vllm(harness: Harness, vllm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_VLLM_KEY", vllm.api_key)
    cutter = harness.upstream("cutter", cut_after_chunks=3)
    _, url = harness.gateway(
        {
            "backends": [backend("cutter", cutter), vllm_backend(vllm)],
            "routes": [{"model": "tiny", "targets": [{"backend": "cutter"}], "fallbacks": ["vllm"]}],
            "stream_recovery": True,
        }
    )
    stream = client(url).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=10, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    # The first three words came from the upstream that died; vLLM accepted the continuation and finished.
    assert text.startswith("the quick brown")
    audit = harness.audit(1)[0]
    assert (audit["status"], audit["attempts"], audit["backend"]) == (200, 2, "vllm")
    # vLLM counted the partial answer as prompt and generated the rest within the client's limit (10 - 3); the
    # audit bills what the client received from both attempts (issue 16): 3 words from the cutter + 7 from vLLM.
    assert audit["completion_tokens"] == 3 + 7


def test_one_trace_id_from_the_client_through_the_gateway_to_vllms_own_span(
    harness: Harness, vllm: Any, otlp: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_VLLM_KEY", vllm.api_key)
    config: dict[str, Any] = {
        "backends": [vllm_backend(vllm)],
        "routes": [{"model": "tiny", "targets": [{"backend": "vllm"}]}],
        "tracing": {"enabled": True, "endpoint": otlp.endpoint, "service_name": "llm-gateway", "schedule_delay_s": 0.1},
    }
    _, url = harness.gateway(config)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"  # W3C Trace Context's example ids
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    reply = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4},
        headers={"Authorization": f"Bearer {KEY}", "traceparent": traceparent},
        timeout=60,
    )
    assert reply.status_code == 200
    # The gateway's server and attempt spans, and vLLM's llm_request span (vllm/v1/engine/output_processor.py).
    spans = otlp.wait_for_trace(trace_id, 3)
    by_service = {service: [s for s in spans if s.service == service] for service in ("llm-gateway", "vllm")}
    (attempt,) = [span for span in by_service["llm-gateway"] if span.kind == 3]
    (engine,) = by_service["vllm"]
    # vLLM's span is a child of the gateway's attempt: one trace from the client to the model server.
    assert engine.parent_span_id == attempt.span_id
    assert engine.attributes["gen_ai.usage.completion_tokens"] == 4
