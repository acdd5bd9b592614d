"""SseRelay cases the mutation run (docs/testing.md) showed untested: events of several `data:` lines, deltas that
are content without text (tool calls), /v1/completions chunks, an upstream error before any content, and the ends of
a stream. Expected bytes and counts are written out by hand from OpenAI's stream format and the SSE spec
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation: the `data:` lines of
one event are joined with a newline)."""

from __future__ import annotations

from llm_gateway.sse import SseRelay

ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
FINISH = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
DELTA = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
DONE = b"data: [DONE]\n\n"
TOOL_CALL = b'{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}'


def relay(*, collect_text: bool = True, strip_usage_chunk: bool = False) -> SseRelay:
    return SseRelay(strip_usage_chunk=strip_usage_chunk, collect_text=collect_text)


def test_an_event_of_two_data_lines_is_read_as_their_join() -> None:
    # Joined with "\n": '{"choices":[{"index":0,' + "\n" + ' "delta":{"content":"Hi"}}]}' is one JSON object (the
    # newline is whitespace to JSON). The second line has no space after the colon, which the spec allows.
    event = b'data: {"choices":[{"index":0,\ndata:"delta":{"content":"Hi"}}]}\n\n'
    sse = relay()
    assert sse.feed(event) == event
    assert sse.malformed is None and sse.text == "Hi" and sse.content_events == 1 and sse.started


def test_an_event_of_data_lines_with_a_comment_line_between() -> None:
    event = b'data: {"choices":[{"index":0,\n: keep-alive\ndata: "delta":{"content":"Hi"}}]}\n\n'
    sse = relay(collect_text=False)
    assert sse.feed(event) == event
    assert sse.malformed is None and sse.content_events == 1


def test_a_tool_call_delta_is_content_and_starts_the_stream() -> None:
    # The role-only first chunk is held; a delta carrying only tool_calls (no text) is content: both go out.
    tool_alone = b'data: {"choices":[{"index":0,"delta":{"tool_calls":[' + TOOL_CALL + b"]}}]}\n\n"
    sse = relay()
    assert sse.feed(ROLE) == b""
    assert sse.feed(tool_alone) == ROLE + tool_alone
    assert sse.content_events == 1 and sse.text == ""


def test_a_role_and_tool_call_delta_is_content_too() -> None:
    both = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[' + TOOL_CALL + b"]}}]}\n\n"
    sse = relay()
    assert sse.feed(both) == both
    assert sse.content_events == 1


def test_a_completions_chunk_carries_its_text_in_the_choice() -> None:
    chunk = b'data: {"choices":[{"index":0,"text":"Hello","finish_reason":null}]}\n\n'
    sse = relay()
    assert sse.feed(chunk) == chunk
    assert sse.content_events == 1 and sse.text == "Hello" and sse.started
    # Without collect_text the text is counted, not kept.
    quiet = relay(collect_text=False)
    assert quiet.feed(chunk) == chunk
    assert quiet.content_events == 1 and quiet.text == "" and quiet.text_parts == []


def test_a_finish_chunk_releases_the_held_role_chunk() -> None:
    # A stream whose only other chunk is the finish (an empty answer): the finish is for the client.
    sse = relay()
    assert sse.feed(ROLE) == b""
    assert sse.feed(FINISH) == ROLE + FINISH
    assert sse.finished == {0}


def test_a_token_that_also_finishes_its_choice_counts_as_finished() -> None:
    last = b'data: {"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"length"}]}\n\n'
    sse = relay(collect_text=False)
    assert sse.feed(DELTA + last) == DELTA + last
    assert sse.content_events == 2 and sse.finished == {0}
    assert sse.complete_without_done() == DONE
    assert sse.done and sse.started


def test_a_choice_that_is_not_an_object_is_skipped_not_the_rest() -> None:
    event = b'data: {"choices":[42,{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    sse = relay(collect_text=False)
    assert sse.feed(event) == event
    assert sse.content_events == 1


def test_an_upstream_error_event_before_content_goes_out_at_once() -> None:
    error = b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
    sse = relay()
    assert sse.feed(ROLE) == b""
    assert sse.feed(error) == ROLE + error
    assert sse.started is True


def test_the_malformed_reason_quotes_the_first_80_bytes_of_the_data() -> None:
    # The data after "data:" is b" " + 100 x "x": its first 80 bytes are the space and 79 x "x".
    sse = relay()
    assert sse.feed(b"data: " + b"x" * 100 + b"\n\n") == b""
    assert sse.malformed == "a stream event that is not a JSON object: b' " + "x" * 79 + "'"


def test_a_malformed_event_after_a_stripped_usage_chunk_relays_only_what_came_before() -> None:
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}\n\n'
    sse = relay(strip_usage_chunk=True)
    assert sse.feed(DELTA + usage + b"data: 42\n\n") == DELTA
    assert sse.malformed is not None


def test_a_continuations_usage_chunk_with_zero_counts_adds_only_the_offset() -> None:
    # The backend reports 0 and 0 (an empty continuation); earlier attempts 5 prompt + 7 completion: 5, 7, total 12.
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}\n\n'
    sse = relay()
    sse.usage_offset = (5, 7)
    assert sse.feed(usage) == (
        b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}\n\n'
    )


def test_a_stream_that_ended_before_any_event_is_broken() -> None:
    assert relay().complete_without_done() is None
