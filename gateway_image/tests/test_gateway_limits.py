"""Keys, limits, accounting, metrics and bad input, through the real gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from llm_gateway.config import load_config, parse_config

from conftest import KEY, OTHER_KEY, Harness, backend, client, metric, team

pytestmark = pytest.mark.network


def config(upstream: Any, **extra: Any) -> dict[str, Any]:
    return {
        "backends": [backend("vllm-a", upstream, model="llama-3.1-8b")],
        "routes": [{"model": "llama", "targets": [{"backend": "vllm-a"}]}],
        "pricing": {"llama-3.1-8b": {"input_per_million": 100_000, "output_per_million": 200_000}},
        **extra,
    }


def ask(url: str, key: str = KEY) -> Any:
    return client(url, key).chat.completions.create(model="llama", messages=[{"role": "user", "content": "a b"}])


def test_missing_and_invalid_keys_get_401(harness: Harness) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(config(upstream))
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(url, "sk-wrong")
    error = caught.value.response.json()["error"]
    assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
    assert error["request_id"] == caught.value.response.headers["x-request-id"]
    missing = httpx.post(url + "/v1/chat/completions", json={"model": "llama", "messages": []})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    basic = httpx.post(url + "/v1/chat/completions", json={}, headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    assert httpx.get(url + "/v1/models").status_code == 401
    assert upstream.requests == []
    assert ask(url).choices[0].message.content


def test_rate_limit_gives_429_with_retry_after(harness: Harness) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(
        config(upstream, teams=[team("alpha", KEY, requests_per_minute=3), team("beta", OTHER_KEY)])
    )
    for _ in range(3):
        ask(url)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(url)
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    assert caught.value.response.json()["error"]["code"] == "rate_limit_exceeded"
    ask(url, OTHER_KEY)  # another team is not affected
    assert len(upstream.requests) == 4


def test_budget_and_token_limits(harness: Harness) -> None:
    upstream = harness.upstream("a")
    # One answer costs (2 * 0.1 + 13 * 0.2) USD = 2.8 USD and 15 tokens.
    _, url = harness.gateway(
        config(
            upstream,
            teams=[team("alpha", KEY, monthly_budget_usd=5), team("beta", OTHER_KEY, monthly_token_limit=20)],
        )
    )
    ask(url)
    ask(url)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(url)
    assert caught.value.response.json()["error"]["code"] == "monthly_budget_exceeded"
    assert int(caught.value.response.headers["Retry-After"]) > 0
    ask(url, OTHER_KEY)
    ask(url, OTHER_KEY)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(url, OTHER_KEY)
    assert caught.value.response.json()["error"]["code"] == "monthly_token_limit_exceeded"
    assert metric(url, "llm_gateway_team_spend_usd", team="alpha") == pytest.approx(5.6)
    assert metric(url, "llm_gateway_team_budget_usd", team="alpha") == 5


def test_usage_and_cost_in_audit_and_metrics(harness: Harness) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(config(upstream))
    for _ in range(3):
        ask(url)
    with pytest.raises(openai.NotFoundError):
        client(url).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    lines = harness.audit(4)
    assert len(lines) == 4
    ok = lines[0]
    assert (ok["team"], ok["model"], ok["backend"], ok["status"]) == ("alpha", "llama", "vllm-a", 200)
    assert (ok["prompt_tokens"], ok["completion_tokens"], ok["attempts"]) == (2, 13, 1)
    assert ok["cost_usd"] == pytest.approx(2.8)
    assert ok["endpoint"] == f"127.0.0.1:{upstream.port}"
    assert "messages" not in json.dumps(ok) and "request" not in ok  # no prompts unless include_prompts
    assert (lines[3]["status"], lines[3]["error"], lines[3]["model"]) == (404, "model_not_found", "nope")
    assert len({line["request_id"] for line in lines}) == 4

    labels = {"backend": "vllm-a", "model": "llama", "team": "alpha"}
    assert metric(url, "llm_gateway_requests_total", **labels, status="200") == 3
    assert metric(url, "llm_gateway_input_tokens_total", **labels) == 6
    assert metric(url, "llm_gateway_output_tokens_total", **labels) == 39
    assert metric(url, "llm_gateway_cost_usd_total", **labels) == pytest.approx(8.4)
    # A model name nobody configured never becomes a label value: clients cannot blow up the metrics.
    not_found = {"backend": "none", "model": "unknown", "team": "alpha"}
    assert metric(url, "llm_gateway_request_errors_total", **not_found, reason="model_not_found") == 1
    assert metric(url, "llm_gateway_requests_total", **not_found, status="404") == 1
    assert metric(url, "llm_gateway_request_duration_seconds_count", backend="vllm-a", model="llama") == 3
    assert metric(url, "llm_gateway_requests_in_flight") == 0


def test_include_prompts_logs_the_request(harness: Harness) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(config(upstream, audit={"path": str(harness.audit_path), "include_prompts": True}))
    ask(url)
    line = harness.audit(1)[0]
    assert line["request"]["messages"] == [{"role": "user", "content": "a b"}]


@pytest.mark.parametrize(
    ("content", "headers", "status", "param"),
    [
        (b"{not json", {}, 400, None),
        (b"[1, 2]", {}, 400, None),
        (b'{"model": 5, "messages": []}', {}, 400, "model"),
        (b'{"model": "llama", "messages": "hi"}', {}, 400, "messages"),
        (b'{"model": "llama", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', {}, 400, "stream"),
        (b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}', {}, 404, "model"),
        (b'{"model": "llama"}', {"Content-Type": "text/plain"}, 415, None),
        (b'{"model": "llama", "messages": ["' + b"x" * 5000 + b'"]}', {}, 413, None),
    ],
)
def test_bad_input_gets_openai_errors_and_the_gateway_keeps_serving(
    harness: Harness, content: bytes, headers: dict[str, str], status: int, param: str | None
) -> None:
    upstream = harness.upstream("a")
    _, url = harness.gateway(config(upstream, server={"max_body_bytes": 4096}))
    response = httpx.post(
        url + "/v1/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **headers},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert upstream.requests == []
    assert ask(url).choices[0].message.content


def test_unknown_path_and_upstream_4xx_pass_through(harness: Harness) -> None:
    upstream = harness.upstream("a", status=400)
    _, url = harness.gateway(config(upstream))
    unknown = httpx.get(url + "/v1/assistants", headers={"Authorization": f"Bearer {KEY}"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_url"
    with pytest.raises(openai.BadRequestError) as caught:
        ask(url)
    # The upstream's own error, not retried, with our request id added.
    assert caught.value.response.json()["error"]["message"] == "a fails"
    assert caught.value.response.json()["error"]["request_id"] == caught.value.response.headers["x-request-id"]
    assert len(upstream.requests) == 1


def test_config_errors_name_the_key_and_what_is_accepted() -> None:
    good = {
        "backends": [{"name": "a", "kind": "vllm", "url": "http://127.0.0.1:1/v1"}],
        "routes": [{"model": "m", "targets": [{"backend": "a"}]}],
        "server": {"require_api_key": False},
    }
    assert parse_config(good).backends[0].health_path == "/health"
    cases = [
        ({**good, "backend": []}, "backend: unknown key; accepted keys here: aliases, audit, backends"),
        (
            {**good, "backends": [{"name": "a", "kind": "vlm", "url": "http://x/v1"}]},
            "backends[0].kind: Input should be 'vllm' or 'openai' (got 'vlm')",
        ),
        (
            {**good, "backends": [{"name": "a", "kind": "vllm", "url": "http://x/v1", "helth": {}}]},
            "backends[0].helth: unknown key; accepted keys here: api_key_env, balancing, dns, endpoints, "
            "first_token_timeout_s, health",
        ),
        (
            {**good, "routes": [{"model": "m", "targets": [{"backend": "b"}]}]},
            "routes[0].targets[0].backend: 'b' is not defined; known: a",
        ),
        ({**good, "server": {}}, "server.require_api_key is true but no teams are defined"),
        ({**good, "teams": [{"name": "t", "key_sha256": ["abc"]}]}, "teams[0].key_sha256[0]: String should match"),
        (
            {**good, "backends": [{"name": "a", "kind": "vllm"}]},
            "sets none of url/endpoints/dns; set exactly one of them",
        ),
    ]
    for raw, expected in cases:
        with pytest.raises(ValueError, match="invalid") as caught:
            parse_config(raw)
        assert expected in str(caught.value), str(caught.value)


def test_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "config.example.yaml")
    assert config.backends[0].dns is not None and config.backends[1].health_path == "/v1/models"
    assert [route.model for route in config.routes] == ["llama-3.1-8b", "gpt-4o-mini"]


def test_month_to_date_usage_survives_a_restart(harness: Harness) -> None:
    upstream = harness.upstream("a")
    limits = {"teams": [team("alpha", KEY, monthly_budget_usd=5)]}
    _, url = harness.gateway(config(upstream, **limits))
    ask(url)
    ask(url)
    with harness.audit_path.open("a") as audit:
        audit.write('{"time": 1, "team": "alpha", "prompt_tokens": 9, "completion_tokens": 9, "cost_usd": 99}\n')
        audit.write('{"torn line')
    # A new gateway on the same audit file counts the 5.6 USD of this month, not the old line or the torn one.
    _, url2 = harness.gateway(config(upstream, **limits))
    assert metric(url2, "llm_gateway_team_spend_usd", team="alpha") == pytest.approx(5.6)
    with pytest.raises(openai.RateLimitError):
        ask(url2)


def test_reload_changes_limits_and_keeps_the_spend(harness: Harness) -> None:
    upstream = harness.upstream("a")
    gateway, url = harness.gateway(config(upstream, teams=[team("alpha", KEY, monthly_budget_usd=5)]))
    ask(url)
    ask(url)
    with pytest.raises(openai.RateLimitError):
        ask(url)
    # A bigger budget takes effect at once; the 5.6 USD already spent still count.
    reloaded = config(
        upstream, teams=[team("alpha", KEY, monthly_budget_usd=6)], audit={"path": str(harness.audit_path)}
    )
    assert harness.servers.run(gateway.reload(parse_config(reloaded)))
    ask(url)
    with pytest.raises(openai.RateLimitError):
        ask(url)
    assert metric(url, "llm_gateway_team_budget_usd", team="alpha") == 6
    no_budget = config(upstream, teams=[team("alpha", KEY)], audit={"path": str(harness.audit_path)})
    assert harness.servers.run(gateway.reload(parse_config(no_budget)))
    assert metric(url, "llm_gateway_team_budget_usd", team="alpha") is None
    ask(url)
