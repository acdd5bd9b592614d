"""A real vLLM server (CPU build), started with the arguments and env the `local` stack renders, answers what the
gateway and monitoring rely on: health, auth, chat (plain and streamed with usage), and the metrics we alert on."""

from __future__ import annotations

import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from components.vllm_deployment import RUN_AS_USER
from tests.vllm_server import VllmServer, can_confine, running_vllm, vllm_server

pytestmark = pytest.mark.vllm
__all__ = ["vllm_server"]  # the fixture, imported for pytest

METRICS_WE_USE = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:num_preemptions_total",
)


def _get(url: str, api_key: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if api_key is not None:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _client(server: VllmServer, api_key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=api_key or server.api_key, timeout=30, max_retries=0)


def test_health_needs_no_key(vllm_server: VllmServer) -> None:
    status, _ = _get(f"{vllm_server.root_url}/health")
    assert status == 200


def test_models_requires_the_key(vllm_server: VllmServer) -> None:
    status, _ = _get(f"{vllm_server.base_url}/models")
    assert status == 401
    status, _ = _get(f"{vllm_server.base_url}/models", api_key="wrong-key")
    assert status == 401
    models = _client(vllm_server).models.list()
    assert [model.id for model in models.data] == [vllm_server.model] == ["qwen2-5-0-5b"]


def test_wrong_key_is_refused_by_the_official_client(vllm_server: VllmServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        _client(vllm_server, api_key="wrong-key").models.list()


def test_chat_completion(vllm_server: VllmServer) -> None:
    response = _client(vllm_server).chat.completions.create(
        model=vllm_server.model,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
    )
    assert response.model == vllm_server.model
    assert response.choices[0].finish_reason in {"stop", "length"}
    assert response.usage is not None
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= 8


def test_streamed_chat_completion_reports_usage(vllm_server: VllmServer) -> None:
    stream = _client(vllm_server).chat.completions.create(
        model=vllm_server.model,
        messages=[{"role": "user", "content": "Count to three."}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content_chunks = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    usage_chunks = [chunk for chunk in chunks if chunk.usage is not None]
    assert content_chunks, "no content was streamed"
    # OpenAI's contract: usage comes once, in a final chunk with no choices.
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert chunks[-1].choices == []
    usage = usage_chunks[0].usage
    assert usage is not None and 0 < usage.completion_tokens <= 8


def test_unknown_model_is_404(vllm_server: VllmServer) -> None:
    with pytest.raises(openai.NotFoundError):
        _client(vllm_server).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )


def test_metrics_expose_what_we_alert_and_scale_on(vllm_server: VllmServer) -> None:
    # At least one request has gone through, so histograms and counters carry samples.
    _client(vllm_server).completions.create(model=vllm_server.model, prompt="Hello", max_tokens=4)
    status, text = _get(f"{vllm_server.root_url}/metrics")
    assert status == 200
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    families = {name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for name in names}
    missing = [metric for metric in METRICS_WE_USE if metric not in families]
    assert not missing, f"vLLM {vllm_server.base_url} does not expose {missing}"
    generated = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:generation_tokens_total{") and f'model_name="{vllm_server.model}"' in line
    ]
    assert generated and sum(generated) > 0


def _processes_of_group(process_group: int) -> list[Path]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the command name (which may hold spaces): state, ppid, pgrp.
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == process_group:
                found.append(stat.parent)
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
    return found


def _identity(proc: Path) -> tuple[int, int]:
    """(uid, effective capabilities) of a process as it sees itself, in its own user namespace.

    /proc shows the uid as this test's namespace sees it, and uid_map how the process's namespace maps onto ours
    (proc(5), user_namespaces(7)): a server confined by a runner that is not root is uid 10001 in its namespace and
    the runner's uid out here; one confined by root is 10001 in both (the map is the identity).
    """
    status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines())
    outer_uid = int(status["Uid"].split()[0])
    for line in (proc / "uid_map").read_text().splitlines():
        inside, outside, count = map(int, line.split())
        if outside <= outer_uid < outside + count:
            return inside + outer_uid - outside, int(status["CapEff"], 16)
    raise AssertionError(f"{proc}: uid {outer_uid} is not in its own uid_map")


def test_serves_as_the_pod_user_on_a_read_only_root() -> None:
    """The pod's securityContext (non-root uid, read-only root) with only its volumes writable: vLLM still starts
    and answers, so every path it writes to is one the Deployment mounts."""
    pytest.importorskip("vllm", reason="needs the vLLM CPU build: scripts/install-vllm.sh")
    if (reason := can_confine()) is not None:
        pytest.skip(reason)
    # Not pytest's tmp_path: its parents are private to root, and the pod's user must read the model folder.
    with tempfile.TemporaryDirectory(prefix="vllm-pod-user-") as folder:
        work_dir = Path(folder)
        work_dir.chmod(0o755)
        with running_vllm(work_dir, run_as=RUN_AS_USER) as server:
            response = _client(server).chat.completions.create(
                model=server.model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=4
            )
            assert response.usage is not None and response.usage.completion_tokens > 0
            identities = {_identity(proc) for proc in _processes_of_group(server.process.pid)}
            # The pod's uid, and no capability (the container drops them all; a non-root uid has none anyway).
            assert identities == {(RUN_AS_USER, 0)}, f"vLLM ran as (uid, capabilities) {identities}"
        written = {path.relative_to(work_dir / "volumes").parts[0] for path in (work_dir / "volumes").rglob("*")}
        assert {"home", "tmp"} <= written, f"vLLM wrote to {written} only"
