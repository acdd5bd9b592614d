"""The SSE relay on its own: event boundaries anywhere in the byte stream, CRLF, usage chunks, [DONE]."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st
from llm_gateway.sse import SseRelay


def event(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


CONTENT = [event({"choices": [{"index": 0, "delta": {"content": word}}]}) for word in ("Hel", "lo", " world")]
USAGE = event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3}})
STREAM = b"".join([*CONTENT, USAGE, b"data: [DONE]\n\n"])


def relay_in_pieces(stream: bytes, cuts: list[int], **options: bool) -> tuple[SseRelay, bytes]:
    relay = SseRelay(**{"strip_usage_chunk": True, "collect_text": True, **options})
    bounds = [0, *sorted(set(cuts)), len(stream)]
    out = b"".join(relay.feed(stream[start:end]) for start, end in itertools.pairwise(bounds))
    return relay, out


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    relay, out = relay_in_pieces(STREAM, cuts)
    assert out == b"".join([*CONTENT, b"data: [DONE]\n\n"])  # usage chunk stripped, the rest byte for byte
    assert relay.done and relay.text == "Hello world" and relay.content_events == 3
    assert relay.usage == {"prompt_tokens": 3, "completion_tokens": 3}


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM) * 2), max_size=12))
def test_crlf_streams_are_split_into_events(cuts: list[int]) -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    relay, out = relay_in_pieces(crlf, cuts, strip_usage_chunk=False, collect_text=False)
    assert relay.done and relay.usage == {"prompt_tokens": 3, "completion_tokens": 3}
    assert out == STREAM


def test_incomplete_stream_is_not_done() -> None:
    relay, out = relay_in_pieces(STREAM[: len(STREAM) - 5], [7, 100])
    assert not relay.done
    assert b"[DONE]" not in out
