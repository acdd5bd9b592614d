"""The activator: hold requests for a backend scaled to zero until it has an endpoint (Knative's activator pattern).

A backend with `wake` whose DNS name has no address is at zero (a headless Service publishes only ready pods, so
an address means a pod that passed its readiness probe). Its requests wait in a FIFO queue bounded by
`wake.max_waiting`, for at most `wake.deadline_s`; `llm_gateway_requests_waiting{backend}` counts them, which is
what KEDA's scale-from-zero trigger reads. While anyone waits, the backend's name is resolved again every second
(or its dns.refresh_s when shorter) and the waiters are released in arrival order as soon as an address appears.

A backend whose endpoints exist but are all ejected is not at zero: that stays the failure path of proxy.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from .config import WakeConfig
from .errors import GatewayError, error_body
from .health import refresh_endpoints
from .metrics import Metrics
from .sse import error_event

if TYPE_CHECKING:
    from .backends import Backend
    from .proxy import Forwarder

log = logging.getLogger("llm_gateway.activator")

# While requests wait, the name is resolved this often at least: CoreDNS serves a new pod's address within a second
# or so of its readiness (its cache TTL is 5 s for Services by default, but headless answers follow endpoint changes).
WAKE_POLL_S = 1.0

Outcome = Literal["woken", "fallback", "ended"]


class Activator:
    """The wait queue of one backend; shared by every Runtime of a gateway, so a reload keeps the queue and gauge."""

    def __init__(self, name: str, config: WakeConfig, metrics: Metrics) -> None:
        self.name = name
        self.config = config
        self._queue: deque[tuple[asyncio.Future[None], Backend]] = deque()
        # Requests served by a fallback while the backend was at zero: each counts as waiting demand until the
        # backend has an endpoint or its wake deadline passes, so that KEDA wakes it even though nobody is held.
        self._demand: deque[float] = deque()
        self._watcher: asyncio.Task[None] | None = None
        self._current: Backend | None = None  # the newest Runtime's backend of this name; the watcher resolves it
        metrics.requests_waiting.labels(name).set_function(self.waiting)
        self._outcomes = {
            outcome: metrics.wake_requests.labels(name, outcome)
            for outcome in ("woken", "timed_out", "rejected", "fallback")
        }

    def waiting(self) -> int:
        """Requests held now plus the fallback demand still pending: the gauge's value, read at scrape time."""
        now = time.monotonic()
        while self._demand and self._demand[0] <= now:
            self._demand.popleft()
        return len(self._queue) + len(self._demand)

    def note_fallback(self) -> None:
        """A request went to the route's fallback while this backend wakes: count it as demand, bounded."""
        if len(self._demand) >= self.config.max_waiting:
            self._demand.popleft()
        self._demand.append(time.monotonic() + self.config.deadline_s)
        self._outcomes["fallback"].inc()
        self._ensure_watcher()

    def notify(self) -> None:
        """Release, oldest first, every waiter whose backend now has an endpoint (called after each DNS refresh)."""
        kept: deque[tuple[asyncio.Future[None], Backend]] = deque()
        for future, backend in self._queue:
            if backend.endpoints:
                if not future.done():
                    future.set_result(None)
            else:
                kept.append((future, backend))
        self._queue = kept
        if self._current is not None and self._current.endpoints:
            self._demand.clear()

    async def hold(self, backend: Backend, forwarder: Forwarder) -> Outcome:
        """Wait until `backend` has an endpoint ("woken"); raise a 503 when the queue is full or the wait is over.

        A streaming client gets its 200 and SSE headers at once and a comment line every keepalive_s; past the
        deadline its stream ends with an error event instead ("ended").
        """
        config = self.config
        if len(self._queue) >= config.max_waiting:
            self._outcomes["rejected"].inc()
            raise self._error(f"{config.max_waiting} requests already wait for it", "wake_queue_full")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (future, backend)
        self._queue.append(entry)
        self._ensure_watcher()
        # The wake has a deadline of its own; the request's (request_timeout_s) starts again once a pod is ready, so
        # a cold start of twenty minutes does not need a twenty-minute deadline on every warm request.
        began = loop.time()
        end = began + config.deadline_s
        # One comment line: a line break in a configured name would end it and start a bogus field.
        comment = f": waiting for {' '.join(forwarder.route_model.splitlines())}\n\n".encode()
        try:
            if forwarder.stream:
                await forwarder.send_waiting(comment)
            while not future.done():
                left = end - loop.time()
                if left <= 0:
                    break
                await asyncio.wait({future}, timeout=min(left, config.keepalive_s))
                if future.done() or loop.time() >= end:
                    continue
                if forwarder.stream:
                    await forwarder.send_waiting(comment)
                elif _client_left(forwarder):
                    # aiohttp does not cancel a handler whose client left: free its place in the queue ourselves.
                    raise ConnectionResetError("the client closed its connection while waiting")
        finally:
            if not future.done():
                future.cancel()
                self._queue.remove(entry)
        if future.cancelled():
            self._outcomes["timed_out"].inc()
            error = self._error(f"no endpoint became ready within {config.deadline_s:g} s", "wake_timeout")
            if forwarder.response is None:
                raise error
            await end_stream(forwarder, error)
            return "ended"
        self._outcomes["woken"].inc()
        forwarder.deadline += loop.time() - began
        return "woken"

    def _error(self, why: str, reason: str) -> GatewayError:
        return GatewayError(
            503,
            f"Model backend {self.name!r} is scaled to zero and waking up: {why}. Retry later.",
            reason,
            retry_after_s=self.config.retry_after_s,
        )

    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name=f"wake-{self.name}")

    async def _watch(self) -> None:
        while self._queue or self.waiting():
            backends = {id(b): b for _, b in self._queue}
            if self._current is not None:
                backends[id(self._current)] = self._current
            poll_s = WAKE_POLL_S
            for backend in backends.values():
                try:
                    await refresh_endpoints(backend)
                except Exception:  # a watcher that dies would strand its waiters until their deadline
                    log.exception("wake watcher of %s: refresh failed", self.name)
                if backend.config.dns is not None:
                    poll_s = min(poll_s, backend.config.dns.refresh_s)
            self.notify()
            if not self._queue and self._current is not None and self._current.endpoints:
                return
            await asyncio.sleep(poll_s)


class Activators:
    """The activator of each backend name with `wake`, kept across config reloads."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._by_name: dict[str, Activator] = {}

    def attach(self, backends: Iterable[Backend]) -> None:
        """Give each backend with `wake` its activator (the same one as before a reload, with the new settings)."""
        for backend in backends:
            wake = backend.config.wake
            if wake is None:
                continue
            activator = self._by_name.get(backend.name)
            if activator is None:
                activator = self._by_name[backend.name] = Activator(backend.name, wake, self.metrics)
            activator.config = wake
            activator._current = backend
            backend.activator = activator


def _client_left(forwarder: Forwarder) -> bool:
    transport = forwarder.request.transport
    return transport is None or transport.is_closing()


def at_zero(backend: Backend) -> bool:
    """A backend with `wake` and no endpoint at all: hold its requests rather than fail them."""
    return backend.activator is not None and not backend.endpoints


async def end_stream(forwarder: Forwarder, error: GatewayError) -> None:
    """End a stream whose 200 is already sent (by the keep-alives) with an error event in OpenAI's format."""
    forwarder.exchange.status, forwarder.exchange.reason = error.status, error.reason
    payload = error_body(error.status, error.message, forwarder.exchange.request_id, code=error.code)
    try:
        await forwarder.send_waiting(error_event(payload))
        assert forwarder.response is not None
        await forwarder.response.write_eof()
    except (ConnectionResetError, OSError):
        pass
