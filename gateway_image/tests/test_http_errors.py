"""Requests aiohttp's parser refuses (oversized headers, not HTTP) still get OpenAI's error format, an audit line,
and no traceback in the log; the header limits come from the `server` config."""

from __future__ import annotations

import http.client
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from conftest import KEY, Harness, backend, chat

pytestmark = pytest.mark.network


def small_limits_gateway(harness: Harness) -> tuple[str, int]:
    upstream = harness.upstream("llama")
    _, url = harness.gateway(
        {
            "server": {"max_header_bytes": 2048, "max_headers": 16, "max_request_line_bytes": 1024},
            "backends": [backend("llama", upstream)],
            "routes": [{"model": "llama", "targets": [{"backend": "llama"}]}],
        }
    )
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def post(address: tuple[str, int], headers: dict[str, str], path: str = "/v1/chat/completions") -> tuple[int, Any]:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request("POST", path, body=orjson.dumps(chat()), headers=headers)
        response = connection.getresponse()
        body = response.read()
        assert response.headers.get("content-type", "").startswith("application/json"), body[:200]
        error = orjson.loads(body).get("error")
        if error is not None:
            assert error["request_id"] == response.headers["x-request-id"]
        return response.status, orjson.loads(body)
    finally:
        connection.close()


def test_limits_from_config_give_431_in_openai_format_audited_without_traceback(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    address = small_limits_gateway(harness)
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    caplog.set_level(logging.DEBUG, logger="aiohttp")

    # 3 KB is within aiohttp's default 8190 bytes: the configured 2048 is what refuses it.
    status, body = post(address, {**auth, "Authorization": "Bearer " + "k" * 3000})
    assert status == 431
    error = body["error"]
    assert error["code"] == "headers_too_large" and error["type"] == "invalid_request_error"
    assert "2048" in error["message"] and "16 headers" in error["message"], error["message"]
    assert "kkkk" not in orjson.dumps(body).decode(), "the start of the key must not be echoed"
    too_long_id = error["request_id"]

    status, body = post(address, {**auth, **{f"x-junk-{i}": "v" for i in range(20)}})
    assert status == 431 and body["error"]["code"] == "headers_too_large"

    status, body = post(address, auth, path="/v1/chat/completions?" + "q" * 2000)
    assert status == 431 and body["error"]["code"] == "headers_too_large"

    # Within the limits the same gateway answers normally.
    status, body = post(address, {**auth, **{f"x-ok-{i}": "v" for i in range(8)}})
    assert status == 200 and body["choices"][0]["message"]["content"]

    audit = harness.audit(4)
    assert [(line["status"], line["error"]) for line in audit] == [(431, "headers_too_large")] * 3 + [(200, None)]
    assert audit[0]["request_id"] == too_long_id
    noisy = [r for r in caplog.records if r.name.startswith("aiohttp") and (r.exc_info or r.levelno >= logging.ERROR)]
    assert not noisy, [r.getMessage() for r in noisy]


def test_a_request_that_is_not_http_gets_a_400_in_openai_format(harness: Harness) -> None:
    address = small_limits_gateway(harness)
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nBad Header: \x01\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"400", head
    assert b"application/json" in head.lower(), head
    error = orjson.loads(body)["error"]
    assert error["code"] == "bad_http_request" and error["request_id"], error
    assert b"Bad Header" not in body
