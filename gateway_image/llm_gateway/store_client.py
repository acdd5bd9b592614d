"""The gateway's connection to the limit store: one connection, commands auto-pipelined, replies in order.

Why not redis-py here: its asyncio client takes a pooled connection per call and parses each reply in Python
objects of its own; measured on this machine, an EVALSHA costs ~115-160 us of gateway CPU with it and ~14 us with
this client at 32 concurrent calls (docs/benchmarks.md, "Shared limits"), and the gateway itself spends ~150 us
per request. The usage batches go the same way (a redis-py pipeline cost ~200-300 us per batch).
Redis answers the commands of one connection in the order it received them (RESP, "pipelining",
https://redis.io/docs/latest/develop/use/pipelining/), so any number of concurrent requests can share one
connection: each command's future waits in a FIFO, the commands of one event-loop tick leave in one write, and each
reply resolves the oldest future. valkey-glide (llm_gateway.shared_limits.LimitStore) makes the rare calls (month
reads, probes, rebuilds). glide on the check itself was measured side by side: ~60-90 us of CPU per EVALSHA at 32
at once (a third on the event loop, the rest in its Rust threads) against ~13-25 us here, and 62-77% of the
gateway's capacity without the store, short of issue 12's 85% (docs/benchmarks.md, "Shared limits").

RESP2 only, and only what the scripts need: AUTH, SELECT, SCRIPT LOAD, EVALSHA (EVAL when a script is gone).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
from typing import Any, cast
from urllib.parse import unquote, urlsplit

Reply = bytes | int | list[Any] | None


class StoreReplyError(Exception):
    """The store answered a command with an error (`-ERR ...`)."""


def pack(*args: bytes | str | int | float) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return _pack_tail(b"*%d\r\n" % len(args), args)


def _pack_tail(head: bytes, args: tuple[bytes | str | int | float, ...]) -> bytes:
    parts = [head]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Incomplete(Exception):
    """The buffer ends inside a reply; wait for more bytes."""


def parse(buffer: bytes, pos: int) -> tuple[Reply | StoreReplyError, int]:
    """One reply starting at `pos`, and where the next one starts; raises _Incomplete if it is not whole yet."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, pos = buffer[pos : pos + 1], buffer[pos + 1 : end], end + 2
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buffer) < pos + size + 2:
            raise _Incomplete
        return buffer[pos : pos + size], pos + size + 2
    if kind == b":":
        return int(line), pos
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items: list[Any] = []
        for _ in range(count):
            item, pos = parse(buffer, pos)
            items.append(item)
        return items, pos
    if kind == b"+":
        return line, pos
    if kind == b"-":
        return StoreReplyError(line.decode(errors="replace")), pos
    raise StoreReplyError(f"unexpected reply type {kind!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout_s: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiters: collections.deque[asyncio.Future[Reply]] = collections.deque()
        # When each waiter was sent (same order). Replies come in order, so the oldest waiter is always the first:
        # one timer watching it replaces a timer per call (asyncio.timeout costs a scheduled handle each).
        self.sent_at: collections.deque[float] = collections.deque()
        self.timeout_s = timeout_s
        self.watchdog: asyncio.TimerHandle | None = None
        self.buffer = b""
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does not subclass asyncio.Transport, but it is one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        pos = 0
        try:
            while pos < len(buffer):
                reply, pos = parse(buffer, pos)
                waiter = self.waiters.popleft()
                self.sent_at.popleft()
                if waiter.done():  # its caller timed out: the reply is dropped, the order stays right
                    continue
                if isinstance(reply, StoreReplyError):
                    waiter.set_exception(reply)
                else:
                    waiter.set_result(reply)
        except _Incomplete:
            pass
        except (StoreReplyError, ValueError, IndexError) as exc:
            # A reply we cannot read, or one nobody asked for: this connection's order is lost.
            self._fail(StoreReplyError(f"unreadable reply from the limit store: {exc}"))
            assert self.transport is not None
            self.transport.close()
            return
        self.buffer = buffer[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("the limit store closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        self.lost = exc
        if self.watchdog is not None:
            self.watchdog.cancel()
        self.sent_at.clear()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                error = exc if isinstance(exc, TimeoutError) else ConnectionError(f"limit store connection lost: {exc}")
                waiter.set_exception(error)

    def _watch(self) -> None:
        self.watchdog = None
        if not self.sent_at:
            return
        loop = asyncio.get_running_loop()
        deadline = self.sent_at[0] + self.timeout_s
        if loop.time() < deadline:
            self.watchdog = loop.call_at(deadline, self._watch)
            return
        # The oldest call is overdue: the store is stuck or gone; every call in flight fails now.
        self._fail(TimeoutError(f"the limit store did not answer within {self.timeout_s:g} s"))
        if self.transport is not None:
            self.transport.close()

    def send(self, payload: bytes) -> asyncio.Future[Reply]:
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            raise ConnectionError("limit store connection is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Reply] = loop.create_future()
        self.waiters.append(waiter)
        self.sent_at.append(loop.time())
        if self.watchdog is None:
            self.watchdog = loop.call_at(self.sent_at[0] + self.timeout_s, self._watch)
        self.outgoing.append(payload)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self._flush)
        return waiter

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.outgoing and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()


class PipelinedStore:
    """Runs Lua scripts on a redis:// or rediss:// store over a single auto-pipelined connection.

    A call fails with TimeoutError once it waited timeout_s (connecting included), with ConnectionError when the
    connection is lost, and with StoreReplyError when the store answers an error.
    """

    def __init__(self, url: str, scripts: list[str], timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"limit store URL must start with redis:// or rediss://, not {parts.scheme}://")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.tls = parts.scheme == "rediss"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.db = int(parts.path.lstrip("/") or 0)
        # A script's name in Redis is its SHA-1 (not a security hash here).
        self.scripts = {script: hashlib.sha1(script.encode()).hexdigest().encode() for script in scripts}
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._heads: dict[tuple[str, int, int], bytes] = {}
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def evalsha(self, script: str, keys: list[str], args: list[str | int | float]) -> Reply:
        """Run one of the scripts given at construction."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connect()
        shape = (script, len(keys), len(args))
        head = self._heads.get(shape)
        if head is None:
            # "*<n>", "EVALSHA", the sha and the key count, packed once per script and shape of call.
            size = 3 + len(keys) + len(args)
            packed = pack(b"EVALSHA", self.scripts[script], len(keys))
            head = self._heads[shape] = packed.replace(b"*3", b"*%d" % size, 1)
        try:
            return await protocol.send(_pack_tail(head, (*keys, *args)))
        except StoreReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            # The store lost its scripts (SCRIPT FLUSH, a failover to a fresh replica): EVAL loads it again.
            return await protocol.send(pack(b"EVAL", script, len(keys), *keys, *args))

    async def _connect(self) -> _Protocol:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self.tls else None
        async with asyncio.timeout(self.timeout_s):
            _, protocol = await loop.create_connection(
                lambda: _Protocol(self.timeout_s),
                self.host,
                self.port,
                ssl=context,
                server_hostname=self.host if self.tls else None,
            )
            setup: list[asyncio.Future[Reply]] = []
            if self.password is not None:
                credentials = [self.username, self.password] if self.username else [self.password]
                setup.append(protocol.send(pack(b"AUTH", *credentials)))
            if self.db:
                setup.append(protocol.send(pack(b"SELECT", self.db)))
            setup += [protocol.send(pack(b"SCRIPT", b"LOAD", script)) for script in self.scripts]
            try:
                for waiter in setup:
                    await waiter
            except BaseException:
                assert protocol.transport is not None
                protocol.transport.close()
                raise
        self._protocol = protocol
        return protocol

    def reset(self) -> None:
        """Drop the connection (after a timeout: replies may still be on their way); the next call reconnects."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        self.reset()
