"""SseRelay and the event helpers, one behaviour per test; expected bytes written out by hand from OpenAI's format
(`data: {json}\\n\\n` events, a final `data: [DONE]\\n\\n`, the usage chunk with empty `choices`).

These relays pass events on from the first one (hold_until_content=False); holding the leading role-only events
back, as the gateway does, is tested in test_failover_unit.py."""

from __future__ import annotations

from llm_gateway.sse import SseRelay, error_event, parse_data

DELTA = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}\n\n'
DONE = b"data: [DONE]\n\n"


def test_parse_data_reads_the_data_line_of_an_event() -> None:
    assert parse_data(b'event: x\ndata: {"a": 1}') == {"a": 1}
    assert parse_data(b'data:{"a":2}') == {"a": 2}  # no space after the colon is allowed by the SSE spec
    assert parse_data(b": a comment") is None
    assert parse_data(b"data: not json") is None


def test_error_event_is_one_complete_data_event() -> None:
    assert error_event({"error": {"message": "x"}}) == b'data: {"error":{"message":"x"}}\n\n'


def test_a_partial_event_waits_for_its_end() -> None:
    relay = SseRelay(strip_usage_chunk=False, collect_text=False, hold_until_content=False)
    assert relay.feed(DELTA[:10]) == b""
    assert relay.feed(DELTA[10:-1]) == b""
    assert relay.feed(DELTA[-1:]) == DELTA


def test_fast_path_passes_content_through_and_keeps_the_tail() -> None:
    relay = SseRelay(strip_usage_chunk=True, collect_text=False, hold_until_content=False)
    assert relay.feed(DELTA + DELTA[:5]) == DELTA
    assert relay.feed(DELTA[5:]) == DELTA
    # Content events are counted even without collecting text: they bill a stream cut before its usage chunk.
    assert relay.text == "" and relay.content_events == 2 and relay.usage is None and not relay.done


def test_usage_chunk_is_noted_and_stripped_only_when_asked() -> None:
    usage = {"prompt_tokens": 2, "completion_tokens": 1}
    stripping = SseRelay(strip_usage_chunk=True, collect_text=False, hold_until_content=False)
    assert stripping.feed(DELTA + USAGE + DONE) == DELTA + DONE
    assert stripping.usage == usage and stripping.done
    keeping = SseRelay(strip_usage_chunk=False, collect_text=False, hold_until_content=False)
    assert keeping.feed(DELTA + USAGE + DONE) == DELTA + USAGE + DONE
    assert keeping.usage == usage


def test_usage_on_a_chunk_with_choices_is_noted_but_the_chunk_kept() -> None:
    both = b'data: {"choices":[{"index":0,"delta":{"content":"!"}}],"usage":{"prompt_tokens":1}}\n\n'
    relay = SseRelay(strip_usage_chunk=True, collect_text=True, hold_until_content=False)
    assert relay.feed(both) == both
    assert relay.usage == {"prompt_tokens": 1} and relay.text == "!" and relay.content_events == 1


def test_a_null_or_empty_usage_is_not_noted_and_the_chunk_kept() -> None:
    null = b'data: {"choices":[],"usage":null}\n\n'
    relay = SseRelay(strip_usage_chunk=True, collect_text=False, hold_until_content=False)
    assert relay.feed(null) == null
    assert relay.usage is None


def test_done_without_a_space_is_recognised() -> None:
    relay = SseRelay(strip_usage_chunk=True, collect_text=False, hold_until_content=False)
    assert relay.feed(b"data:[DONE]\n\n") == b"data:[DONE]\n\n"
    assert relay.done


def test_a_stripped_usage_chunk_alone_yields_nothing() -> None:
    relay = SseRelay(strip_usage_chunk=True, collect_text=False, hold_until_content=False)
    assert relay.feed(USAGE) == b""


def test_text_is_collected_from_every_choice_and_empty_deltas_are_not_counted() -> None:
    two = b'data: {"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}},{"delta":{}},{}]}\n\n'
    role = b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    relay = SseRelay(strip_usage_chunk=False, collect_text=True, hold_until_content=False)
    assert relay.feed(role + two) == role + two
    assert relay.text == "ab" and relay.content_events == 2


def test_an_event_that_is_not_json_is_never_relayed_and_stops_the_relay() -> None:
    # Issue 16 item 6: the openai SDK fails on such an event, so the stream counts as broken instead.
    relay = SseRelay(strip_usage_chunk=False, collect_text=True, hold_until_content=False)
    assert relay.feed(DELTA + b"data: {oops\n\n" + DELTA) == DELTA
    assert relay.malformed is not None and "{oops" in relay.malformed
    assert relay.text == "Hi"


def test_crlf_is_normalised_even_when_split_between_reads() -> None:
    relay = SseRelay(strip_usage_chunk=False, collect_text=False, hold_until_content=False)
    crlf = DELTA.replace(b"\n", b"\r\n")
    assert relay.feed(crlf[:-1]) == b""
    assert relay.feed(crlf[-1:]) == DELTA


def test_a_new_relay_is_not_done_and_holds_nothing() -> None:
    relay = SseRelay(strip_usage_chunk=True, collect_text=True, hold_until_content=False)
    assert relay.done is False and relay.usage is None and relay.text == "" and relay.content_events == 0


def test_a_blank_event_at_the_start_of_a_read_is_passed_on_at_once() -> None:
    # `end == 0`: the read begins with an event boundary; nothing is incomplete, so nothing is held back.
    relay = SseRelay(strip_usage_chunk=False, collect_text=False, hold_until_content=False)
    assert relay.feed(b"\n\n") == b"\n\n"


def test_bytes_after_done_are_relayed_not_swallowed() -> None:
    # The relay passes events on; it does not police the protocol by dropping what an upstream sends after [DONE].
    relay = SseRelay(strip_usage_chunk=True, collect_text=True, hold_until_content=False)
    assert relay.feed(DONE + DELTA) == DONE + DELTA
    assert relay.done and relay.text == "Hi"
