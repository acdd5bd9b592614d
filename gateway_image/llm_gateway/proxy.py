"""Forwarding one request upstream: attempts along the fallback chain, streaming relay, stream recovery.

The decisions (retry where, wait how long, is the prompt too long) are pure functions in failover.py; this module
does the I/O around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from .accounting import cost_usd
from .activator import at_zero, end_stream
from .backends import Backend
from .balancing import Endpoint
from .config import PriceConfig
from .errors import GatewayError, error_body
from .failover import (
    ENDPOINT_TRIES_PER_BACKEND,
    after_failure,
    clearly_exceeds,
    estimate_tokens,
    is_context_length_error,
    prompt_chars,
    retry_after_seconds,
)
from .routing import Route
from .runtime import Runtime
from .sse import SseRelay, error_event
from .tracing import UNTRACED, Trace

__all__ = ["ENDPOINT_TRIES_PER_BACKEND", "ClientGone", "Exchange", "Forwarder", "RetryableFailure", "StreamBroken"]


class Exchange:
    """What the audit line and the metrics say about one request."""

    __slots__ = (
        "attempts",
        "backend",
        "completion_tokens",
        "cost_usd",
        "endpoint",
        "key_id",
        "ledger_id",
        "model",
        "prompt_tokens",
        "reason",
        "recovery",
        "request_id",
        "requested_model",
        "route",
        "started",
        "status",
        "stream",
        "team",
        "trace",
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
        self.recovery: str | None = None  # why stream recovery failed, when it did: the audit keeps both causes
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.ttft_s: float | None = None
        self.stream = False
        self.key_id: str | None = None  # for the usage ledger: a prefix of the key's SHA-256, never the key
        self.ledger_id: str | None = None  # the ledger's unique id when the client chose the request id
        self.trace: Trace = UNTRACED  # the server sets the request's own (tracing.py)

    def add_usage(self, usage: Any, price: PriceConfig | None = None) -> None:
        """Add one attempt's usage, at its backend's price: a recovered stream bills every attempt."""
        if isinstance(usage, dict):
            self.add_tokens(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), price)

    def add_tokens(self, prompt_tokens: int, completion_tokens: int, price: PriceConfig | None) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost_usd(price, prompt_tokens, completion_tokens)


class RetryableFailure(Exception):
    """An attempt failed before anything reached the client: the next backend may try."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        endpoint_only: bool,
        retry_after: str | None = None,
        answered: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        # True: a sibling endpoint of the same backend may do better (a refused connection, a 5xx, a 429);
        # False: the whole backend would answer the same (it refused the gateway's credentials).
        self.endpoint_only = endpoint_only
        self.retry_after = retry_after
        # True: the backend answered a 5xx or a 429, a transient error worth a retry on the same backend.
        self.answered = answered

    def as_gateway_error(self) -> GatewayError:
        retry_after = int(self.retry_after) if self.retry_after and self.retry_after.isdigit() else None
        return GatewayError(self.status, self.message, self.reason, retry_after_s=retry_after)


class ContextTooLong(Exception):
    """A backend answered that the request exceeds its context; the route has context fallbacks to try."""

    def __init__(self, response: web.Response) -> None:
        super().__init__("context length exceeded")
        self.response = response


class StreamBroken(Exception):
    """The upstream stream failed after events had been sent to the client."""

    def __init__(self, reason: str, message: str, *, recoverable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.recoverable = recoverable


class ClientGone(Exception):
    """The client closed its connection while we were writing to it."""


class MalformedStream(Exception):
    """The upstream sent a stream event that is not JSON: it is not relayed, and the stream counts as broken."""


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
        choices = body.get("n", 1)
        self.choices = choices if isinstance(choices, int) and choices > 0 else 1
        self.recovery = stream and runtime.config.stream_recovery and path == "/chat/completions" and self.choices == 1
        self.tried: set[Endpoint] = set()
        self.context_switch = False  # True while a context_length_exceeded answer may move the request along
        self.only_keepalives = False  # the stream has its 200, but nothing from upstream yet (activator.py)

    async def run(self, route: Route) -> web.StreamResponse:
        chain = self._first_chain(route)
        max_attempts = self.runtime.config.server.max_attempts
        last: RetryableFailure | None = None
        previous: Backend | None = None
        retry_on: Endpoint | None = None  # the endpoint to try again after a transient error
        index = on_backend = retries = 0  # attempts and same-backend retries on chain[index]
        while index < len(chain) and self.exchange.attempts < max_attempts:
            backend = chain[index]
            endpoint = retry_on or self._pick(chain, index)
            retry_on = None
            if endpoint is None and at_zero(backend):
                outcome = await self._wake(route, chain, index)
                if outcome == "ended":
                    return self.response or web.Response(status=499)
                if outcome == "woken":
                    continue
            if endpoint is None:
                index, on_backend, retries = index + 1, 0, 0
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
            except ContextTooLong as too_long:
                previous, self.context_switch = backend, False
                chain, index, on_backend, retries = self._context_chain(route, [backend]), 0, 0, 0
                if not chain:
                    return too_long.response
                continue
            except RetryableFailure as failure:
                last = failure
                self.tried.add(endpoint)
                previous = backend
                on_backend += 1
                step = after_failure(
                    answered=failure.answered,
                    endpoint_only=failure.endpoint_only,
                    retry_after_s=retry_after_seconds(failure.retry_after),
                    tries_on_backend=on_backend,
                    retries_used=retries,
                    sibling_left=any(e not in self.tried for e in backend.endpoints),
                    endpoint_available=endpoint.available(time.monotonic()),
                    last_backend=index == len(chain) - 1,
                    time_left_s=self.deadline - self.loop.time(),
                    policy=backend.retry,
                    random=random.random,
                )
                if step.action == "next":
                    index, on_backend, retries = index + 1, 0, 0
                    continue
                if step.retry:
                    retries += 1
                    retry_on = endpoint if step.action == "same" else None
                    await asyncio.sleep(step.delay_s)
        if last is None:
            raise GatewayError(503, f"No healthy upstream for model {self.route_model!r}.", "no_healthy_upstream")
        raise last.as_gateway_error()

    async def _wake(self, route: Route, chain: list[Backend], index: int) -> str:
        """A backend at zero: hold the request until it wakes, or let the route's fallback serve meanwhile."""
        activator = chain[index].activator
        assert activator is not None
        if route.fallback_while_waking and index == 0 and len(chain) > 1:
            activator.note_fallback()  # still counted, so that KEDA wakes the backend
            return "fallback"
        try:
            return await activator.hold(chain[index], self)
        except (ClientGone, ConnectionResetError):
            self.exchange.status, self.exchange.reason = 499, "client_closed"
            return "ended"

    async def send_waiting(self, data: bytes) -> None:
        """Write to a stream while its backend wakes: the headers at once, but not the first token's time."""
        try:
            if self.response is None:
                await self._begin_stream()
                self.exchange.ttft_s = None  # measured at the first content instead (_send)
                self.only_keepalives = True
            assert self.response is not None
            await self.response.write(data)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
            raise ClientGone from exc

    def _pick(self, chain: list[Backend], index: int) -> Endpoint | None:
        backend = chain[index]
        now = time.monotonic()  # the clock of the endpoints' ejections
        return backend.balancer.pick(
            backend.endpoints,
            self.tried,
            panic_threshold=backend.config.health.panic_threshold,
            # A backend whose endpoints are all ejected panics only if no later backend has one available.
            panic_when_none=index == len(chain) - 1
            or not any(later.has_available_endpoint(now) for later in chain[index + 1 :]),
            body=self.body,
            headers=self.request.headers,
        )

    def _first_chain(self, route: Route) -> list[Backend]:
        chain = route.chain()
        if not route.context_fallbacks:
            return chain
        self.context_switch = True
        if clearly_exceeds(self.body, chain[0].max_model_len):
            # Asking a model whose context the prompt clearly overflows would only buy a 400: go straight on.
            longer = self._context_chain(route, chain)
            if longer:
                self.context_switch = False
                return longer
        return chain

    def _context_chain(self, route: Route, skip: list[Backend]) -> list[Backend]:
        """The route's context fallbacks that might hold the prompt, in order."""
        return [
            backend
            for backend in route.context_fallbacks
            if backend not in skip and not clearly_exceeds(self.body, backend.max_model_len)
        ]

    def _price(self, backend: Backend) -> PriceConfig | None:
        return self.runtime.price(backend, self.exchange.route or self.route_model)

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
        # traceparent (and tracestate): the current attempt's, set when its span began (tracing.py).
        return {**backend.headers, "x-request-id": self.exchange.request_id, **self.exchange.trace.outgoing}

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
                answered=True,
            )
        if status in (401, 403):
            # The backend refused the gateway's own key: a configuration fault, not the client's; others may work.
            raise RetryableFailure(
                502,
                "upstream_auth",
                f"Upstream refused the gateway's credentials ({status}); check its api_key_env.",
                endpoint_only=False,
            )
        response = web.Response(
            status=status,
            body=_with_request_id(data, status, self.exchange.request_id),
            content_type="application/json",
            headers={"x-request-id": self.exchange.request_id},
        )
        self.exchange.reason = "bad_request"  # the backend refused the request itself, e.g. a prompt too long
        # getattr: test_proxy_unit.py calls this method on a bare stub without the attribute.
        if getattr(self, "context_switch", False) and is_context_length_error(status, data):
            raise ContextTooLong(response)
        return response

    async def _plain(self, backend: Backend, endpoint: Endpoint) -> web.Response:
        with self.exchange.trace.attempt(backend, endpoint):
            return await self._plain_attempt(backend, endpoint)

    async def _plain_attempt(self, backend: Backend, endpoint: Endpoint) -> web.Response:
        url = endpoint.base_url + self.path
        endpoint.outstanding += 1
        # A plain answer arrives whole: its first byte is its last, so the first-token limit bounds the attempt.
        limit_s = backend.timeout_s
        if backend.first_token_timeout_s is not None and backend.first_token_timeout_s < limit_s:
            limit_s = backend.first_token_timeout_s
        attempt_end = self.loop.time() + limit_s
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
            raise RetryableFailure(
                504, "timeout", f"Upstream {backend.name} timed out after {limit_s:g} s.", endpoint_only=True
            ) from exc
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
                self.exchange.add_usage(orjson.loads(data).get("usage"), self._price(backend))
        return web.Response(
            status=status,
            body=data,
            headers={"Content-Type": content_type, "x-request-id": self.exchange.request_id},
        )

    def _new_relay(self, collect_text: bool) -> SseRelay:
        return SseRelay(strip_usage_chunk=not self.client_wants_usage, collect_text=collect_text, choices=self.choices)

    async def _stream(self, chain: list[Backend], backend: Backend, endpoint: Endpoint) -> web.StreamResponse:
        relay = self._new_relay(self.recovery)
        try:
            try:
                passed_on = await self._relay(backend, endpoint, self._payload(backend), relay)
                if passed_on is not None and self.response is not None:
                    # Refused after the keep-alives of a wake began the stream: the refusal goes in the stream.
                    body = passed_on.body if isinstance(passed_on.body, bytes) else b""
                    await end_stream(self, GatewayError(passed_on.status, _upstream_message(body), "bad_request"))
                    return self.response
                if passed_on is not None:
                    return passed_on
            except StreamBroken as broken:
                self.tried.add(endpoint)
                self._bill_broken(backend, relay, self.body)
                self.context_switch = False  # too late for that: the client has part of the answer
                if broken.recoverable and self.recovery:
                    await self._recover(chain, relay.text, relay.content_events, broken)
                else:
                    await self.end_with_error(broken)
        except ClientGone:
            self.exchange.status, self.exchange.reason = 499, "client_closed"
        # 499 (nginx's "client closed request") only reaches the audit: nobody is left to read it.
        return self.response if self.response is not None else web.Response(status=499)

    def _bill_broken(self, backend: Backend, relay: SseRelay, body: dict[str, Any]) -> None:
        """Bill what a broken attempt delivered: its own usage if it sent one, else an estimate (README: tokens)."""
        if relay.usage:
            self.exchange.add_usage(relay.usage, self._price(backend))
        elif relay.content_events:
            prompt = estimate_tokens(prompt_chars(body))
            self.exchange.add_tokens(prompt, relay.content_events, self._price(backend))

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
        self.exchange.trace.first_token()
        return response

    async def _send(self, data: bytes) -> None:
        # A client that left is not the upstream's fault: keep it apart from upstream errors (no ejection).
        try:
            response = self.response or await self._begin_stream()
            if self.exchange.ttft_s is None:  # a stream started by the activator's keep-alives
                self.exchange.ttft_s = time.perf_counter() - self.exchange.started
                self.only_keepalives = False
            await response.write(data)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
            raise ClientGone from exc

    async def _relay(
        self, backend: Backend, endpoint: Endpoint, payload: bytes, relay: SseRelay
    ) -> web.Response | None:
        with self.exchange.trace.attempt(backend, endpoint):
            return await self._relay_attempt(backend, endpoint, payload, relay)

    async def _relay_attempt(
        self, backend: Backend, endpoint: Endpoint, payload: bytes, relay: SseRelay
    ) -> web.Response | None:
        """Relay one upstream stream to the client.

        Raises RetryableFailure when it fails before anything was sent, StreamBroken when it fails after.
        """
        url = endpoint.base_url + self.path
        endpoint.outstanding += 1
        first_token_s = backend.first_token_timeout_s
        first_token_at = self.loop.time() + first_token_s if first_token_s is not None else self.deadline
        # Until the first content the timer is the first-token limit; then the request's deadline.
        waiting = first_token_at < self.deadline
        timer = asyncio.timeout_at(first_token_at if waiting else self.deadline)
        try:
            async with (
                timer,
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
                    if relay.malformed is not None:
                        if out:
                            await self._send(out)  # the valid events before the bad one
                        raise MalformedStream(relay.malformed)
                    if waiting and relay.started:
                        timer.reschedule(self.deadline)
                        waiting = False
                    if relay.done:
                        # Held back to leave with the end of the chunked body: one socket write per stream fewer.
                        last += out
                    elif out:
                        await self._send(out)
                if not relay.done:
                    # A stream that ended cleanly after every choice's finish_reason is complete without [DONE].
                    ending = relay.complete_without_done()
                    if ending is None:
                        raise aiohttp.ClientPayloadError("the upstream ended the stream without [DONE]")
                    last += ending
        except TimeoutError as exc:
            # expired(), not the clock: the loop may run the deadline's timer a hair before its time.
            if timer.expired() and not waiting:
                if self.response is None:
                    raise self._deadline_error() from exc
                raise StreamBroken("timeout", self._deadline_error().message, recoverable=False) from exc
            endpoint.record_failure()
            message = f"Upstream {backend.name} timed out."
            if waiting and timer.expired():
                message = f"Upstream {backend.name} sent no first token within {first_token_s:g} s."
            self._fail(backend, "timeout", message, exc)
        except MalformedStream as exc:
            endpoint.record_failure()
            self.runtime.metrics.child(self.runtime.metrics.malformed_events, backend.name).inc()
            self._fail(backend, "upstream_error", f"Upstream {backend.name} sent {exc}.", exc)
        except aiohttp.ClientError as exc:
            endpoint.record_failure()
            self._fail(backend, "upstream_error", f"Upstream {backend.name} failed: {exc.__class__.__name__}", exc)
        finally:
            endpoint.outstanding -= 1
        endpoint.record_success()
        self.exchange.add_usage(relay.usage, self._price(backend))
        try:
            response = self.response or await self._begin_stream()
            await response.write_eof(last)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
            raise ClientGone from exc
        return None

    def _fail(self, backend: Backend, reason: str, message: str, exc: Exception) -> None:
        if self.response is None or self.only_keepalives:  # keep-alive comments alone: the next backend may try
            raise RetryableFailure(504 if reason == "timeout" else 502, reason, message, endpoint_only=True) from exc
        raise StreamBroken(reason, f"{message} The stream was interrupted.", recoverable=True) from exc

    async def end_with_error(self, broken: StreamBroken) -> None:
        # An error event and no [DONE]: the client can tell a broken answer from a finished one.
        self.exchange.status = 504 if broken.reason == "timeout" else 502
        self.exchange.reason = "stream_interrupted" if broken.reason != "timeout" else "timeout"
        message = broken.message
        if self.exchange.recovery is not None:
            message += f" Recovery failed: {self.exchange.recovery}"
        payload = error_body(self.exchange.status, message, self.exchange.request_id, code=broken.reason)
        try:
            await self._send(error_event(payload))
            assert self.response is not None
            await self.response.write_eof()
        except (ClientGone, ConnectionResetError):
            pass

    async def _recover(self, chain: list[Backend], text: str, events: int, broken: StreamBroken) -> None:
        """Continue a broken chat answer on another vLLM endpoint, after what the client already has.

        The client's error event, if it comes to that, names the first break (why the answer broke); the audit
        also records why recovery failed (`recovery`).
        """
        max_attempts = self.runtime.config.server.max_attempts
        for backend in chain:
            if backend.kind != "vllm":
                continue  # continue_final_message is a vLLM extension
            while self.exchange.attempts < max_attempts and not self._timed_out():
                endpoint = backend.balancer.pick(
                    backend.endpoints,
                    self.tried,
                    panic_threshold=backend.config.health.panic_threshold,
                    panic_when_none=True,
                    body=self.body,
                    headers=self.request.headers,
                )
                if endpoint is None:
                    break
                self.exchange.attempts += 1
                self.exchange.backend, self.exchange.endpoint = backend.name, endpoint.label
                relay = self._new_relay(collect_text=True)
                # The client's usage chunk, if it asked for one, counts every attempt, as the audit does.
                relay.usage_offset = (self.exchange.prompt_tokens, self.exchange.completion_tokens)
                body = self._continuation(text, events)
                try:
                    refused = await self._relay(backend, endpoint, self._payload(backend, body), relay)
                    if refused is None:
                        self.exchange.recovery = None
                        return
                    # A 4xx for the continuation: the client already has a 200 stream, so try elsewhere.
                    self.tried.add(endpoint)
                    self.exchange.recovery = f"Upstream {backend.name} refused the continuation ({refused.status})."
                except StreamBroken as again:
                    self.tried.add(endpoint)
                    self._bill_broken(backend, relay, body)
                    text, events = text + relay.text, events + relay.content_events
                    self.exchange.recovery = again.message
                    if not again.recoverable:
                        break
                except RetryableFailure as failure:
                    self.tried.add(endpoint)
                    self.exchange.recovery = failure.message
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
