"""An OpenAI-compatible server for tests, shaped like vLLM's answers, with knobs for failure modes.

Run on its own: python gateway_image/tests/fake_upstream.py --port 9000 [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

ANSWER = "the quick brown fox jumps over the lazy dog and runs far away"


@dataclass
class Behaviour:
    """What the server does; tests change these fields while it runs."""

    latency_s: float = 0.0  # before the response headers
    chunk_delay_s: float = 0.0  # between streamed chunks
    status: int = 200  # anything else: answer this status with an OpenAI-style error
    health_status: int = 200  # of /health alone: a failing check on a server that answers requests
    retry_after: str | None = None
    cut_after_chunks: int | None = None  # close the connection after this many content chunks
    hold_after_chunks: int | None = None  # wait for `release` after this many content chunks
    release: asyncio.Event | None = None
    answer: str = ANSWER
    fail_count: int | None = None  # with `status`: fail only this many requests, then answer normally
    omit_done: bool = False  # end a complete stream (finish_reason, usage) without `data: [DONE]`
    malformed_after_chunks: int | None = None  # send an event that is not JSON after this many content chunks
    first_token_delay_s: float = 0.0  # headers and the role chunk at once, then this wait before the first token
    max_model_len: int | None = None  # answer 400 as vLLM 0.32 does when the prompt's words exceed it


@dataclass
class FakeUpstream:
    name: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    health_checks: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def label(self) -> str:
        """The endpoint label the gateway's metrics give this server."""
        return f"127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        return app

    async def start(self, port: int = 0) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port or 0, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def health(self, request: web.Request) -> web.Response:
        self.health_checks += 1
        return web.Response(text="", status=self.behaviour.health_status)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.name, "object": "model"}]})

    async def _begin(self, request: web.Request) -> dict[str, Any] | web.Response:
        body = orjson.loads(await request.read())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.behaviour.latency_s:
            await asyncio.sleep(self.behaviour.latency_s)
        if self.behaviour.max_model_len is not None:
            words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            if words > self.behaviour.max_model_len:
                # vLLM 0.32's wording (vllm/renderers/params.py, _token_len_check), its 400 and error type.
                message = (
                    f"This model's maximum context length is {self.behaviour.max_model_len} tokens. However, your "
                    f"prompt contains {words} input tokens, which exceeds this limit even without any output tokens. "
                    "Please reduce the length of the input prompt."
                )
                error = {"message": message, "type": "BadRequestError", "param": "input_tokens", "code": 400}
                return web.json_response({"error": error}, status=400)
        failing = self.behaviour.status != 200
        if failing and self.behaviour.fail_count is not None:
            failing = self.behaviour.fail_count > 0
            self.behaviour.fail_count -= 1
        if failing:
            headers = {"Retry-After": self.behaviour.retry_after} if self.behaviour.retry_after else None
            return web.json_response(
                {"error": {"message": f"{self.name} fails", "type": "server_error", "param": None, "code": None}},
                status=self.behaviour.status,
                headers=headers,
            )
        return body

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await self._begin(request)
            if isinstance(body, web.Response):
                return body
            messages = body["messages"]
            words = self.behaviour.answer.split(" ")
            if body.get("continue_final_message"):
                # vLLM continues the last assistant message: answer only the words not yet written.
                written = messages[-1]["content"]
                rest = self.behaviour.answer[len(written) :]
                words = rest.split(" ")
                prefix_space = rest.startswith(" ")
                words = words[1:] if prefix_space else words
            else:
                prefix_space = False
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
            if body.get("stream"):
                return await self._stream(request, body, words, prompt_tokens, prefix_space)
            text = " ".join(words)
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(words),
                        "total_tokens": prompt_tokens + len(words),
                    },
                }
            )
        finally:
            self.in_flight -= 1

    async def _stream(
        self, request: web.Request, body: dict[str, Any], words: list[str], prompt_tokens: int, prefix_space: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}

        async def send(payload: dict[str, Any]) -> None:
            await response.write(b"data: " + orjson.dumps(payload) + b"\n\n")

        await send({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        if self.behaviour.first_token_delay_s:
            await asyncio.sleep(self.behaviour.first_token_delay_s)
        for i, word in enumerate(words):
            behaviour = self.behaviour
            if behaviour.malformed_after_chunks is not None and i == behaviour.malformed_after_chunks:
                await response.write(b'data: {"choices": [{"index": 0, "delta": {"content": "trunc\n\n')
            if behaviour.cut_after_chunks is not None and i == behaviour.cut_after_chunks:
                assert request.transport is not None
                request.transport.abort()  # the upstream dies mid-answer
                return response
            if behaviour.hold_after_chunks is not None and i == behaviour.hold_after_chunks:
                assert behaviour.release is not None
                await asyncio.wait_for(behaviour.release.wait(), 10)
            if behaviour.chunk_delay_s:
                await asyncio.sleep(behaviour.chunk_delay_s)
            content = word if i == 0 and not prefix_space else " " + word
            await send({**base, "choices": [{"index": 0, "delta": {"content": content}}]})
        await send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words)}
            await send({**base, "choices": [], "usage": {**usage, "total_tokens": sum(usage.values())}})
        if not self.behaviour.omit_done:
            await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._begin(request)
        if isinstance(body, web.Response):
            return body
        prompt_tokens = len(str(body.get("prompt", "")).split())
        if body.get("stream"):
            return await self._stream_completion(request, body, prompt_tokens)
        return web.json_response(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "text": self.behaviour.answer, "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 13, "total_tokens": prompt_tokens + 13},
            }
        )

    async def _stream_completion(
        self, request: web.Request, body: dict[str, Any], prompt_tokens: int
    ) -> web.StreamResponse:
        # As vLLM streams /v1/completions: text_completion chunks, an optional usage chunk, then [DONE].
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": body["model"]}
        words = self.behaviour.answer.split(" ")
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": None}
            await response.write(b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n")
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words)}
            chunk = {**base, "choices": [], "usage": {**usage, "total_tokens": sum(usage.values())}}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._begin(request)
        if isinstance(body, web.Response):
            return body
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = sum(len(str(text).split()) for text in inputs)
        return web.json_response(
            {
                "object": "list",
                "model": body["model"],
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    upstream = FakeUpstream("fake", Behaviour(latency_s=args.latency_ms / 1000))
    web.run_app(upstream.app(), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
