"""The hot path's RESP client (llm_gateway/store_client.py): encoding, decoding and reply order, without sockets.

Expected bytes are the examples of the Redis protocol specification (RESP2,
https://redis.io/docs/latest/develop/reference/protocol-spec/), written out by hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llm_gateway.store_client import PipelinedStore, StoreReplyError, _Incomplete, _Protocol, pack, parse


def test_pack_is_an_array_of_bulk_strings() -> None:
    # The spec's example: the client sends LLEN mylist as *2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n.
    assert pack("LLEN", "mylist") == b"*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n"
    assert pack(b"EVALSHA", "ab", 2, 0.5) == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$3\r\n0.5\r\n"


def test_parse_replies_of_every_kind_and_incomplete_ones() -> None:
    reply = b"*6\r\n:0\r\n:1\r\n$2\r\n60\r\n$4\r\n11.2\r\n$-1\r\n+OK\r\n"
    assert parse(reply, 0) == ([0, 1, b"60", b"11.2", None, b"OK"], len(reply))
    error, end = parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(error, StoreReplyError) and str(error) == "NOSCRIPT No matching script" and end == 30
    for cut in range(1, len(reply)):
        with pytest.raises(_Incomplete):
            parse(reply[:cut], 0)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_commands_of_one_tick_leave_in_one_write_and_replies_keep_their_order() -> None:
    async def scenario() -> tuple[list[bytes], Any, Any, bool]:
        protocol = _Protocol(timeout_s=5)
        transport = FakeTransport()
        protocol.connection_made(transport)
        first = protocol.send(pack("GET", "a"))
        second = protocol.send(pack("GET", "b"))
        third = protocol.send(pack("GET", "c"))
        await asyncio.sleep(0)
        first.cancel()  # its caller timed out: its reply must not go to the next caller
        protocol.data_received(b"$1\r\nA\r\n$1\r")  # a reply split across reads
        protocol.data_received(b"\nB\r\n-ERR wrong\r\n")
        return transport.written, second.result(), third.exception(), transport.closed

    written, second, third, closed = asyncio.run(scenario())
    assert written == [pack("GET", "a") + pack("GET", "b") + pack("GET", "c")]
    assert second == b"B"
    assert isinstance(third, StoreReplyError) and str(third) == "ERR wrong"
    assert not closed


def test_a_lost_connection_fails_every_waiting_call() -> None:
    async def scenario() -> list[BaseException | None]:
        protocol = _Protocol(timeout_s=5)
        protocol.connection_made(FakeTransport())
        waiting = [protocol.send(pack("PING")) for _ in range(3)]
        protocol.connection_lost(ConnectionResetError("reset"))
        with pytest.raises(ConnectionError):
            protocol.send(pack("PING"))
        return [waiter.exception() for waiter in waiting]

    assert all(isinstance(error, ConnectionError) for error in asyncio.run(scenario()))


def test_url_parts() -> None:
    store = PipelinedStore("rediss://default:p%40ss@cache.example:6380/2", ["return 1"], 1)
    assert (store.host, store.port, store.tls, store.username, store.password, store.db) == (
        "cache.example",
        6380,
        True,
        "default",
        "p@ss",
        2,
    )
    with pytest.raises(ValueError, match="redis:// or rediss://"):
        PipelinedStore("http://x", ["return 1"], 1)


def test_a_call_unanswered_for_timeout_s_fails_every_call_in_flight_and_closes() -> None:
    async def scenario() -> tuple[BaseException | None, BaseException | None, bytes | int | list[Any] | None, bool]:
        protocol = _Protocol(timeout_s=0.05)
        transport = FakeTransport()
        protocol.connection_made(transport)
        answered = protocol.send(pack("GET", "a"))
        protocol.data_received(b"$1\r\nA\r\n")
        first = protocol.send(pack("GET", "b"))
        second = protocol.send(pack("GET", "c"))
        await asyncio.sleep(0.2)  # no reply comes
        return first.exception(), second.exception(), answered.result(), transport.closed

    first, second, answered, closed = asyncio.run(scenario())
    assert isinstance(first, TimeoutError) and isinstance(second, TimeoutError)
    assert answered == b"A" and closed
