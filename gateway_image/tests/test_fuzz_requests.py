"""Request fuzzing: random bodies, headers, content types and paths sent to the real gateway on 127.0.0.1 in front
of a fake upstream. Every answer is a 2xx or a 4xx in OpenAI's error format; never a 5xx of the gateway's own; and
the gateway still answers /healthz afterwards.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import KEY, Harness, backend

pytestmark = pytest.mark.network

MAX_BODY = 64 * 1024  # small, so that "too large" is cheap to reach
PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]


def dumps(value: Any) -> bytes:
    # The standard library, not orjson: it writes integers beyond 64 bits, which the gateway must refuse cleanly.
    return json.dumps(value, ensure_ascii=False).encode()


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=25,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "", "x"]), "content": json_value},
    optional={"name": json_value, "tool_calls": json_value},
)
# Bodies close to real requests, where most of the gateway's code runs, with any field possibly wrong.
good_messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]), "content": st.text(max_size=40)}),
    min_size=1,
    max_size=3,
)
near_valid = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just("llama"), st.just("llama"), st.just("llama"), json_value),
        "messages": st.one_of(good_messages, good_messages, st.lists(message, max_size=4), json_value),
        "stream": st.one_of(st.booleans(), st.booleans(), json_value),
    },
    optional={
        "prompt": st.one_of(st.text(max_size=50), st.lists(st.text(max_size=10), max_size=3), json_value),
        "input": st.one_of(st.text(max_size=50), json_value),
        "stream_options": st.one_of(st.just({"include_usage": True}), json_value),
        "max_tokens": st.one_of(st.integers(-5, 10**12), json_value),
        "temperature": json_value,
        "n": json_value,
        "extra": json_value,
    },
)
bodies = st.one_of(
    near_valid.map(dumps),
    near_valid.map(dumps),
    near_valid.map(dumps),
    json_value.map(dumps),
    st.binary(max_size=200),  # mostly invalid JSON, invalid UTF-8 too
    st.text(max_size=200).map(str.encode),
    st.sampled_from([b"", b"{", b'{"model": "llama", "messages": [', b"null", b"[]", b'"str"', b"1e999999"]),
    st.integers(MAX_BODY - 64, MAX_BODY * 2).map(
        lambda size: dumps({"model": "llama", "messages": [{"role": "user", "content": "x" * size}]})
    ),
    st.integers(0, 300).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
authorization = st.one_of(
    st.just(f"Bearer {KEY}"),
    st.just(f"Bearer {KEY}"),
    st.just(f"Bearer {KEY}"),
    st.just(f"Bearer {KEY}"),
    st.none(),
    st.sampled_from(
        ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", f"bearer {KEY}", f"Bearer {KEY} extra", "Bearer wrong"]
    ),
    header_text,
    st.integers(1000, 7000).map(lambda size: "Bearer " + "k" * size),  # large, under aiohttp's 8190-byte line limit
)
content_types = st.one_of(
    st.none(),
    st.just("application/json"),
    st.just("application/json"),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
            "application/JSON",
        ]
    ),
    header_text,
)
request_ids = st.one_of(st.none(), header_text, st.text(max_size=200).map(lambda t: t.encode().hex()[:300]))


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class RawClient:
    """http.client, not httpx: h11 refuses header values real clients do send (trailing spaces, odd bytes)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
        try:
            return self._send(method, path, body, headers or {})
        except (http.client.HTTPException, ConnectionError):
            # The server may close a keep-alive connection after an error (as after a 413); retry once on a new one.
            self.connection.close()
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            return self._send(method, path, body, headers or {})

    def _send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        answer = Answer(response.status, response.headers, response.read())
        if response.will_close:
            self.connection.close()
        return answer

    def close(self) -> None:
        self.connection.close()


@pytest.fixture(scope="module")
def fuzz_target(servers: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawClient]:
    harness = Harness(servers, tmp_path_factory.mktemp("fuzz"))
    try:
        upstream = harness.upstream("llama")
        _, url = harness.gateway(
            {
                "server": {"max_body_bytes": MAX_BODY},
                "backends": [backend("llama", upstream)],
                "routes": [{"model": "llama", "targets": [{"backend": "llama"}]}],
            }
        )
        client = RawClient(url)
        yield client
        client.close()
    finally:
        harness.close()


def check_answer(response: Answer, sent: str) -> None:
    status = response.status
    assert status < 500, f"gateway answered {status} to {sent}: {response.body[:500]!r}"
    if status >= 400:
        assert response.headers.get("content-type", "").startswith("application/json"), (sent, response.body[:300])
        error = orjson.loads(response.body)["error"]
        assert isinstance(error["message"], str) and error["message"], (sent, error)
        assert isinstance(error["type"], str) and error["type"], (sent, error)
        assert error.get("request_id") and response.headers.get("x-request-id") == error["request_id"], (sent, error)
    elif "text/event-stream" in response.headers.get("content-type", ""):
        assert response.body.rstrip().endswith(b"data: [DONE]"), (sent, response.body[-300:])
    else:
        orjson.loads(response.body)  # a 2xx answer is JSON


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.one_of(
        st.just(PATHS[0]), st.just(PATHS[0]), st.sampled_from(PATHS), header_text.map(lambda t: "/v1/" + t.strip("/"))
    ),
    body=bodies,
    auth=authorization,
    content_type=content_types,
    request_id=request_ids,
    method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE"]),
)
def test_random_requests_get_clean_answers(
    fuzz_target: RawClient,
    path: str,
    body: bytes,
    auth: str | None,
    content_type: str | None,
    request_id: str | None,
    method: str,
) -> None:
    client = fuzz_target
    given_headers = {"Authorization": auth, "Content-Type": content_type, "x-request-id": request_id}
    headers = {name: value for name, value in given_headers.items() if value is not None}
    path = quote(path, safe="/?&=")
    sent = f"{method} {path} headers={ {k: v[:80] for k, v in headers.items()} } body={body[:200]!r}"
    response = client.request(method, path, body, headers)
    check_answer(response, sent)


def test_gateway_still_healthy_after_the_fuzzing(fuzz_target: RawClient) -> None:
    client = fuzz_target
    assert client.request("GET", "/healthz").status == 200
    response = client.request(
        "POST",
        "/v1/chat/completions",
        dumps({"model": "llama", "messages": [{"role": "user", "content": "still there?"}]}),
        {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert response.status == 200, response.body
    assert orjson.loads(response.body)["choices"][0]["message"]["content"]


OVERSIZED = {
    "authorization-9kb": {"Authorization": "Bearer " + "k" * 9000},
    "authorization-64kb": {"Authorization": "Bearer " + "k" * 65536},
    "200-headers": {f"x-junk-{i}": "v" for i in range(200)},
}


@pytest.mark.parametrize("headers", OVERSIZED.values(), ids=OVERSIZED.keys())
def test_oversized_headers_get_a_4xx_and_the_gateway_keeps_serving(
    fuzz_target: RawClient, headers: dict[str, str]
) -> None:
    """Beyond aiohttp's limits (8190-byte lines, 128 headers) the answer is a 4xx, never a 5xx or a dead server."""
    body = dumps({"model": "llama", "messages": [{"role": "user", "content": "hi"}]})
    response = fuzz_target.request("POST", "/v1/chat/completions", body, headers)
    assert 400 <= response.status < 500, (response.status, response.body[:200])
    assert fuzz_target.request("GET", "/healthz").status == 200


@pytest.mark.parametrize("headers", OVERSIZED.values(), ids=OVERSIZED.keys())
def test_oversized_headers_get_an_openai_error(fuzz_target: RawClient, headers: dict[str, str]) -> None:
    """aiohttp's parser refuses them before any handler; the gateway still answers 431 in OpenAI's format."""
    body = dumps({"model": "llama", "messages": [{"role": "user", "content": "hi"}]})
    response = fuzz_target.request("POST", "/v1/chat/completions", body, headers)
    check_answer(response, f"oversized headers {list(headers)[:3]}")
    assert response.status == 431, response.body[:300]
    assert orjson.loads(response.body)["error"]["code"] == "headers_too_large"
    assert b"kkkk" not in response.body, "the answer must not echo the header value (the start of a key)"
