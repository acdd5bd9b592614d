"""Server-sent events as OpenAI streams them: `data: {json}\\n\\n` ... `data: [DONE]\\n\\n`."""

from __future__ import annotations

from typing import Any

import orjson

EVENT_END = b"\n\n"
DONE_EVENT = b"data: [DONE]\n\n"


def parse_data(event: bytes) -> Any:
    """The JSON payload of one `data:` event, or None if it has none."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                return orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return None
    return None


def error_event(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + EVENT_END


def _data_of(event: bytes) -> bytes | None:
    """The `data:` field of one event (lines joined as the SSE spec says), or None for a comment-only event."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[5:]  # what every OpenAI-compatible server sends: one data line per event
    lines = [line[5:] for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


class SseRelay:
    """Splits an upstream byte stream into whole events, checks and notes them, and passes them on.

    Every `data:` payload is parsed (orjson, ~1 us for a chunk): a payload that is not a JSON object is never
    relayed, since a strict client (the `openai` SDK) fails on it; `malformed` says why the relay stopped. Noted on
    the way: usage, [DONE], `finish_reason` per choice, and the events that carried content (one token each as vLLM
    streams them: scheduler stream_interval defaults to 1, vllm@0.32.0:vllm/config/scheduler.py).

    With `hold_until_content`, leading events without content (vLLM's and OpenAI's role-only first chunk) are held
    back until the first content: until then nothing has reached the client, so the attempt can still fail over.
    """

    def __init__(
        self, strip_usage_chunk: bool, collect_text: bool, *, hold_until_content: bool = True, choices: int = 1
    ) -> None:
        self.strip_usage_chunk = strip_usage_chunk
        self.collect_text = collect_text
        self.done = False
        self.usage: dict[str, Any] | None = None
        self.text_parts: list[str] = []
        self.content_events = 0
        self.started = not hold_until_content
        self.finished: set[int] = set()
        self.choices = choices
        self.malformed: str | None = None
        # Tokens of earlier attempts (prompt, completion), added to the usage chunk relayed to the client.
        self.usage_offset: tuple[int, int] | None = None
        self._held: list[bytes] = []
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._tail + chunk if self._tail else chunk
        if b"\r" in data:
            # Some servers (sse-starlette among them) end lines with CRLF; events are then split the same way.
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(EVENT_END)
        if end < 0:
            self._tail = data
            return b""
        complete, self._tail = data[: end + 2], data[end + 2 :]
        events = complete.split(EVENT_END)
        events.pop()  # the empty piece after the last separator
        kept: list[bytes] | None = None  # None while every event passes unchanged: `complete` goes out as it is
        for i, event in enumerate(events):
            relayed = self._event(event)
            if self.malformed is not None:
                return self._out(kept if kept is not None else events[:i])
            if relayed is not event:  # stripped or rewritten
                if kept is None:
                    kept = events[:i]
                if relayed is not None:
                    kept.append(relayed)
            elif kept is not None:
                kept.append(event)
        if kept is None and self.started and not self._held:
            return complete
        return self._out(kept if kept is not None else events)

    def _out(self, events: list[bytes]) -> bytes:
        if not self.started:
            self._held.extend(events)
            return b""
        if self._held:
            events, self._held = [*self._held, *events], []
        return EVENT_END.join(events) + EVENT_END if events else b""

    def _event(self, event: bytes) -> bytes | None:
        """Note one event; return what to relay: the event itself, a rewritten one, or None (a stripped usage chunk)."""
        # The common event, one `data:` line, is read without _data_of's split: this runs once per token.
        data = event[5:] if event.startswith(b"data:") and b"\n" not in event else _data_of(event)
        if data is None:
            return event  # a comment (": ping") or an event without data: harmless
        if len(data) < 16 and data.strip() == b"[DONE]":
            self.done = self.started = True
            return event
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = None
        if type(payload) is not dict:
            self.malformed = f"a stream event that is not a JSON object: {data[:80]!r}"
            return None
        choices = payload.get("choices")
        if choices:
            for choice in choices:
                if type(choice) is not dict:
                    continue
                delta = choice.get("delta")
                # The common event, a token of text with no finish_reason, is noted here without a call.
                if (
                    type(delta) is dict
                    and delta.get("content")
                    and not self.collect_text
                    and not choice.get("finish_reason")
                ):
                    self.content_events += 1
                    self.started = True
                elif self._choice(choice):
                    self.started = True
        usage = payload.get("usage")
        if usage:
            self.started = True
            self.usage = usage
            if self.strip_usage_chunk and not choices:
                return None
            if self.usage_offset is not None and type(usage) is dict:
                return self._with_usage_offset(payload, usage)
        elif not self.started and "error" in payload:
            self.started = True  # an upstream's own error event: nothing more to wait for
        return event

    def _choice(self, choice: dict[str, Any]) -> bool:
        """Note one choice of an event; True when it carries content (or its end) for the client."""
        delta = choice.get("delta")
        if type(delta) is dict:
            text = delta.get("content")
            # Tool calls, reasoning, a refusal: any delta field but the role is content too.
            content = bool(text) or (
                (len(delta) > 1 or "role" not in delta) and any(value for key, value in delta.items() if key != "role")
            )
        else:
            text = choice.get("text")  # /v1/completions
            content = bool(text)
        if content:
            self.content_events += 1  # per choice: with n > 1 each choice's delta is a token of its own
            if self.collect_text and type(text) is str:
                self.text_parts.append(text)
        reason = choice.get("finish_reason")
        if reason:
            self.finished.add(int(choice.get("index") or 0))
            return True
        return content

    def _with_usage_offset(self, payload: dict[str, Any], usage: dict[str, Any]) -> bytes:
        """The usage chunk of a continuation, counting the earlier attempts too (as the audit does)."""
        assert self.usage_offset is not None
        prompt = int(usage.get("prompt_tokens") or 0) + self.usage_offset[0]
        completion = int(usage.get("completion_tokens") or 0) + self.usage_offset[1]
        total = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        return b"data: " + orjson.dumps({**payload, "usage": {**usage, **total}})

    def complete_without_done(self) -> bytes | None:
        """At a clean end of the upstream stream without [DONE]: the bytes that finish the client's stream (held
        events and our own [DONE]) when every choice got its finish_reason; None when the stream is broken."""
        if self._tail.strip():
            self._tail = self._tail.rstrip(b"\n")
            out = self.feed(EVENT_END)
            if self.malformed is not None:
                return None
        else:
            out = b""
        if len(self.finished) < self.choices:
            return None
        self.started = self.done = True
        return out + self._out([]) + DONE_EVENT

    @property
    def text(self) -> str:
        return "".join(self.text_parts)
