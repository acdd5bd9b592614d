"""Forwarding one request upstream: attempts along the fallback chain, streaming relay, stream recovery."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from .backends import Backend
from .balancing import Endpoint, pick_endpoint
from .errors import GatewayError, error_body
from .routing import Route
from .runtime import Runtime
from .sse import SseRelay, error_event

# Endpoints of one backend tried for a request before its fallbacks get their turn.
ENDPOINT_TRIES_PER_BACKEND = 2


class Exchange:
    """What the audit line and the metrics say about one request."""

    __slots__ = (
        "attempts",
        "backend",
        "completion_tokens",
        "cost_usd",
        "endpoint",
        "model",
        "prompt_tokens",
        "reason",
        "request_id",
        "requested_model",
        "route",
        "started",
        "status",
        "stream",
        "team",
        "ttft_s",
    )

    def __init__(self, request_id: str, started: float) -> None:
        self.request_id = request_id
        self.started = started
        self.team = "unknown"
        self.model = "unknown"  # a metrics label: only names from the config, so its cardinality stays bounded
        self.requested_model = ""
        self.route = ""
        self.backend = "none"
        self.endpoint = ""
        self.attempts = 0
        self.status = 500
        self.reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.ttft_s: float | None = None
        self.stream = False

    def add_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage.get("completion_tokens") or 0)


class RetryableFailure(Exception):
    """An attempt failed before anything reached the client: the next backend may try."""

    def __init__(
        self, status: int, reason: str, message: str, *, endpoint_only: bool, retry_after: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        # True: a sibling endpoint of the same backend may do better (a refused connection, a 5xx, a 429);
        # False: the whole backend would answer the same (it refused the gateway's credentials).
        self.endpoint_only = endpoint_only
        self.retry_after = retry_after

    def as_gateway_error(self) -> GatewayError:
        retry_after = int(self.retry_after) if self.retry_after and self.retry_after.isdigit() else None
        return GatewayError(self.status, self.message, self.reason, retry_after_s=retry_after)


class StreamBroken(Exception):
    """The upstream stream failed after events had been sent to the client."""

    def __init__(self, reason: str, message: str, *, recoverable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.recoverable = recoverable


class ClientGone(Exception):
    """The client closed its connection while we were writing to it."""


class Forwarder:
    """Sends one parsed client request upstream and builds the client's response."""

    def __init__(
        self,
        request: web.Request,
        runtime: Runtime,
        exchange: Exchange,
        path: str,
        body: dict[str, Any],
        raw_body: bytes,
        stream: bool,
    ) -> None:
        self.request = request
        self.runtime = runtime
        self.exchange = exchange
        self.path = path
        self.body = body
        self.raw_body = raw_body
        self.stream = stream
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + runtime.config.server.request_timeout_s
        self.response: web.StreamResponse | None = None
        self.route_model = body["model"]
        options = body.get("stream_options")
        self.client_wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.recovery = (
            stream and runtime.config.stream_recovery and path == "/chat/completions" and body.get("n", 1) in (1, None)
        )
        self.tried: set[Endpoint] = set()

    async def run(self, route: Route) -> web.StreamResponse:
        chain = route.chain()
        max_attempts = self.runtime.config.server.max_attempts
        last: RetryableFailure | None = None
        previous: Backend | None = None
        index = 0
        on_backend = 0  # attempts on chain[index]
        while index < len(chain) and self.exchange.attempts < max_attempts:
            backend = chain[index]
            now = time.monotonic()  # the clock of the endpoints' ejections
            endpoint = pick_endpoint(
                backend.endpoints,
                self.tried,
                panic_threshold=backend.config.health.panic_threshold,
                # A backend whose endpoints are all ejected panics only if no later backend has one available.
                panic_when_none=index == len(chain) - 1
                or not any(later.has_available_endpoint(now) for later in chain[index + 1 :]),
            )
            if endpoint is None:
                index, on_backend = index + 1, 0
                continue
            if previous is not None and previous is not backend:
                self.runtime.metrics.child(
                    self.runtime.metrics.fallbacks, self.exchange.model, previous.name, backend.name
                ).inc()
            self.exchange.attempts += 1
            self.exchange.backend = backend.name
            self.exchange.endpoint = endpoint.label
            try:
                if self.stream:
                    return await self._stream(chain, backend, endpoint)
                return await self._plain(backend, endpoint)
            except RetryableFailure as failure:
                last = failure
                self.tried.add(endpoint)
                previous = backend
                on_backend += 1
                # A refused connection, a 5xx or a 429 may be one endpoint's problem: try a sibling (Envoy's retry
                # on 5xx with host selection), but leave attempts for the fallbacks.
                last_backend = index == len(chain) - 1
                if not failure.endpoint_only or (on_backend >= ENDPOINT_TRIES_PER_BACKEND and not last_backend):
                    index, on_backend = index + 1, 0
        if last is None:
            raise GatewayError(503, f"No healthy upstream for model {self.route_model!r}.", "no_healthy_upstream")
        raise last.as_gateway_error()

    def _payload(self, backend: Backend, body: dict[str, Any] | None = None) -> bytes:
        changes: dict[str, Any] = {}
        source = body if body is not None else self.body
        if backend.upstream_model is not None and source.get("model") != backend.upstream_model:
            changes["model"] = backend.upstream_model
        if self.stream and not self.client_wants_usage:
            # Ask for the usage chunk to count tokens; it is stripped again before the client sees it.
            options = source.get("stream_options")
            changes["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        if not changes and body is None:
            return self.raw_body
        return orjson.dumps({**source, **changes})

    def _headers(self, backend: Backend) -> dict[str, str]:
        return {**backend.headers, "x-request-id": self.exchange.request_id}

    def _timed_out(self) -> bool:
        return self.loop.time() >= self.deadline

    def _deadline_error(self) -> GatewayError:
        timeout = self.runtime.config.server.request_timeout_s
        return GatewayError(
            504,
            f"The request did not finish within its deadline of {timeout:g} s.",
            "timeout",
            code="timeout",
        )

    def _check_status(self, status: int, data: bytes, endpoint: Endpoint, headers: Any) -> web.Response | None:
        """None for a 200; a response to pass on for other final statuses; raise for retryable ones."""
        if 200 <= status < 300:
            return None
        if status >= 500 or status == 429:
            if status >= 500:
                endpoint.record_failure()
            raise RetryableFailure(
                status if status in (429, 503, 504) else 502,
                "upstream_rate_limited" if status == 429 else "upstream_error",
                f"Upstream answered {status}: {_upstream_message(data)}",
                endpoint_only=True,
                retry_after=headers.get("Retry-After"),
            )
        if status in (401, 403):
            # The backend refused the gateway's own key: a configuration fault, not the client's; others may work.
            raise RetryableFailure(
                502,
                "upstream_auth",
                f"Upstream refused the gateway's credentials ({status}); check its api_key_env.",
                endpoint_only=False,
            )
        self.exchange.reason = "bad_request"  # the backend refused the request itself, e.g. a prompt too long
        return web.Response(
            status=status,
            body=_with_request_id(data, status, self.exchange.request_id),
            content_type="application/json",
            headers={"x-request-id": self.exchange.request_id},
        )

    async def _plain(self, backend: Backend, endpoint: Endpoint) -> web.Response:
        url = endpoint.base_url + self.path
        endpoint.outstanding += 1
        attempt_end = self.loop.time() + backend.timeout_s
        deadline_first = self.deadline <= attempt_end
        timer = asyncio.timeout_at(self.deadline if deadline_first else attempt_end)
        try:
            async with (
                timer,
                backend.session.post(
                    url,
                    data=self._payload(backend),
                    headers=self._headers(backend),
                    timeout=backend.plain_timeout,
                ) as upstream,
            ):
                data = await upstream.read()
                status = upstream.status
                # The raw header, passed on as is: parsing it here and building it again there costs ~2 us.
                content_type = upstream.headers.get("Content-Type", "application/octet-stream")
                headers = upstream.headers
        except TimeoutError as exc:
            # expired(), not the clock: the loop may run the timer a hair before its time.
            if deadline_first and timer.expired():
                raise self._deadline_error() from exc
            endpoint.record_failure()
            raise RetryableFailure(504, "timeout", f"Upstream {backend.name} timed out.", endpoint_only=True) from exc
        except aiohttp.ClientError as exc:
            endpoint.record_failure()
            raise RetryableFailure(
                502,
                "upstream_error",
                f"Upstream {backend.name} failed: {exc.__class__.__name__}",
                endpoint_only=True,
            ) from exc
        finally:
            endpoint.outstanding -= 1
        passed_on = self._check_status(status, data, endpoint, headers)
        endpoint.record_success()
        self.exchange.status = status
        if passed_on is not None:
            return passed_on
        if b'"usage"' in data:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                self.exchange.add_usage(orjson.loads(data).get("usage"))
        return web.Response(
            status=status,
            body=data,
            headers={"Content-Type": content_type, "x-request-id": self.exchange.request_id},
        )

    async def _stream(self, chain: list[Backend], backend: Backend, endpoint: Endpoint) -> web.StreamResponse:
        relay = SseRelay(strip_usage_chunk=not self.client_wants_usage, collect_text=self.recovery)
        try:
            try:
                passed_on = await self._relay(backend, endpoint, self._payload(backend), relay)
                if passed_on is not None:
                    return passed_on
            except StreamBroken as broken:
                self.tried.add(endpoint)
                if broken.recoverable and self.recovery:
                    await self._recover(chain, relay.text, relay.content_events, broken)
                else:
                    await self.end_with_error(broken)
        except ClientGone:
            self.exchange.status, self.exchange.reason = 499, "client_closed"
        # 499 (nginx's "client closed request") only reaches the audit: nobody is left to read it.
        return self.response if self.response is not None else web.Response(status=499)

    async def _begin_stream(self) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "x-request-id": self.exchange.request_id,
            },
        )
        await response.prepare(self.request)
        self.response = response
        self.exchange.status = 200
        self.exchange.ttft_s = time.perf_counter() - self.exchange.started
        return response

    async def _send(self, data: bytes) -> None:
        # A client that left is not the upstream's fault: keep it apart from upstream errors (no ejection).
        try:
            response = self.response or await self._begin_stream()
            await response.write(data)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
            raise ClientGone from exc

    async def _relay(
        self, backend: Backend, endpoint: Endpoint, payload: bytes, relay: SseRelay
    ) -> web.Response | None:
        """Relay one upstream stream to the client.

        Raises RetryableFailure when it fails before anything was sent, StreamBroken when it fails after.
        """
        url = endpoint.base_url + self.path
        endpoint.outstanding += 1
        deadline = asyncio.timeout_at(self.deadline)
        try:
            async with (
                deadline,
                backend.session.post(
                    url, data=payload, headers=self._headers(backend), timeout=backend.client_timeout
                ) as upstream,
            ):
                if not 200 <= upstream.status < 300:
                    passed_on = self._check_status(upstream.status, await upstream.read(), endpoint, upstream.headers)
                    self.exchange.status = upstream.status
                    return passed_on
                last = b""
                async for chunk in upstream.content.iter_any():
                    out = relay.feed(chunk)
                    if relay.done:
                        # Held back to leave with the end of the chunked body: one socket write per stream fewer.
                        last += out
                    elif out:
                        await self._send(out)
            if not relay.done:
                raise aiohttp.ClientPayloadError("the upstream ended the stream without [DONE]")
        except TimeoutError as exc:
            # expired(), not the clock: the loop may run the deadline's timer a hair before its time.
            if deadline.expired():
                if self.response is None:
                    raise self._deadline_error() from exc
                raise StreamBroken("timeout", self._deadline_error().message, recoverable=False) from exc
            endpoint.record_failure()
            self._fail(backend, "timeout", f"Upstream {backend.name} timed out.", exc)
        except aiohttp.ClientError as exc:
            endpoint.record_failure()
            self._fail(backend, "upstream_error", f"Upstream {backend.name} failed: {exc.__class__.__name__}", exc)
        finally:
            endpoint.outstanding -= 1
        endpoint.record_success()
        self.exchange.add_usage(relay.usage)
        try:
            response = self.response or await self._begin_stream()
            await response.write_eof(last)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
            raise ClientGone from exc
        return None

    def _fail(self, backend: Backend, reason: str, message: str, exc: Exception) -> None:
        if self.response is None:
            raise RetryableFailure(504 if reason == "timeout" else 502, reason, message, endpoint_only=True) from exc
        raise StreamBroken(reason, f"{message} The stream was interrupted.", recoverable=True) from exc

    async def end_with_error(self, broken: StreamBroken) -> None:
        # An error event and no [DONE]: the client can tell a broken answer from a finished one.
        self.exchange.status = 504 if broken.reason == "timeout" else 502
        self.exchange.reason = "stream_interrupted" if broken.reason != "timeout" else "timeout"
        payload = error_body(self.exchange.status, broken.message, self.exchange.request_id, code=broken.reason)
        try:
            await self._send(error_event(payload))
            assert self.response is not None
            await self.response.write_eof()
        except (ClientGone, ConnectionResetError):
            pass

    async def _recover(self, chain: list[Backend], text: str, events: int, broken: StreamBroken) -> None:
        """Continue a broken chat answer on another vLLM endpoint, after what the client already has."""
        max_attempts = self.runtime.config.server.max_attempts
        for backend in chain:
            if backend.kind != "vllm":
                continue  # continue_final_message is a vLLM extension
            while self.exchange.attempts < max_attempts and not self._timed_out():
                endpoint = pick_endpoint(
                    backend.endpoints, self.tried, panic_threshold=backend.config.health.panic_threshold
                )
                if endpoint is None:
                    break
                self.exchange.attempts += 1
                self.exchange.backend, self.exchange.endpoint = backend.name, endpoint.label
                relay = SseRelay(strip_usage_chunk=not self.client_wants_usage, collect_text=True)
                try:
                    refused = await self._relay(
                        backend, endpoint, self._payload(backend, self._continuation(text, events)), relay
                    )
                    if refused is None:
                        return
                    # A 4xx for the continuation: the client already has a 200 stream, so try elsewhere.
                    self.tried.add(endpoint)
                    message = f"Upstream {backend.name} refused the continuation ({refused.status})."
                    broken = StreamBroken("upstream_error", message, recoverable=True)
                except StreamBroken as again:
                    self.tried.add(endpoint)
                    text, events, broken = text + relay.text, events + relay.content_events, again
                    if not again.recoverable:
                        break
                except RetryableFailure:
                    self.tried.add(endpoint)
        await self.end_with_error(broken)

    def _continuation(self, text: str, events: int) -> dict[str, Any]:
        body = {
            **self.body,
            "messages": [*self.body["messages"], {"role": "assistant", "content": text}],
            "continue_final_message": True,
            "add_generation_prompt": False,
        }
        # Each content event carries about one token: keep the whole answer within the client's limit.
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(key), int):
                body[key] = max(1, body[key] - events)
        return body


def _upstream_message(data: bytes) -> str:
    try:
        parsed = orjson.loads(data)
        message = parsed["error"]["message"]
        return str(message)[:500]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return data[:200].decode(errors="replace") or "(empty body)"


def _with_request_id(data: bytes, status: int, request_id: str) -> bytes:
    """The upstream's error, in OpenAI's format, carrying our request id."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        parsed["error"]["request_id"] = request_id
        return orjson.dumps(parsed)
    return orjson.dumps(error_body(status, _upstream_message(data), request_id, code="upstream_error"))
