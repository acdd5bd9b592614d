"""Server-sent events as OpenAI streams them: `data: {json}\\n\\n` ... `data: [DONE]\\n\\n`."""

from __future__ import annotations

from typing import Any

import orjson

EVENT_END = b"\n\n"


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


class SseRelay:
    """Splits an upstream byte stream into whole events, notes usage and [DONE], and passes events on.

    Events go out as soon as they are complete; only an incomplete tail waits for the next read.
    """

    def __init__(self, strip_usage_chunk: bool, collect_text: bool) -> None:
        self.strip_usage_chunk = strip_usage_chunk
        self.collect_text = collect_text
        self.done = False
        self.usage: dict[str, Any] | None = None
        self.text_parts: list[str] = []
        self.content_events = 0
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
        # Fast path: most reads hold only content deltas, which pass through untouched.
        if not self.collect_text and b'"usage"' not in complete and b"[DONE]" not in complete:
            return complete
        kept: list[bytes] = []
        for event in complete.split(EVENT_END)[:-1]:
            if event.startswith(b"data: [DONE]") or event.startswith(b"data:[DONE]"):
                self.done = True
                kept.append(event)
                continue
            if self.collect_text or b'"usage"' in event:
                payload = parse_data(event)
                if isinstance(payload, dict):
                    usage = payload.get("usage")
                    if usage:
                        self.usage = usage
                        if self.strip_usage_chunk and not payload.get("choices"):
                            continue
                    if self.collect_text:
                        self._collect(payload)
            kept.append(event)
        return EVENT_END.join(kept) + EVENT_END if kept else b""

    def _collect(self, payload: dict[str, Any]) -> None:
        for choice in payload.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.text_parts.append(content)
                self.content_events += 1

    @property
    def text(self) -> str:
        return "".join(self.text_parts)
