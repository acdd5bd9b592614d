"""The gateway in front of a real vLLM server (CPU build, tiny random Llama): usage, streams, stream recovery.

Uses the project's vLLM harness (tests/vllm_server.py); skipped where vLLM or that harness is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Harness, backend, client

pytestmark = [pytest.mark.vllm, pytest.mark.network]


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("vllm", reason="needs the vLLM CPU build")
    harness = pytest.importorskip("tests.vllm_server", reason="needs the project's vLLM test harness")
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
