"""The failover decisions, pure: what to do after a failed attempt, how long to wait, how big a prompt is.

proxy.py does the I/O and asks these functions; they take plain values, so tests feed them cases without sockets
(as mitmproxy's proxy layer keeps its protocol decisions apart from its I/O).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from .config import RetryConfig

# Endpoints of one backend tried for a request before its fallbacks get their turn.
ENDPOINT_TRIES_PER_BACKEND = 2
# Characters per token of the prompt-size estimate: OpenAI's rule of thumb for English text ("one token generally
# corresponds to ~4 characters", https://help.openai.com/en/articles/4936856-what-are-tokens-and-how-to-count-them).
CHARS_PER_TOKEN = 4
# How far the estimate must exceed a model's context before the gateway skips the model without asking: a quarter
# more absorbs the estimate's error (code and non-English text run to fewer characters per token, prose to more);
# in between, the backend's own 400 (context_length_exceeded) still moves the request to the context fallbacks.
CLEARLY_EXCEEDS = 1.25


class Step(NamedTuple):
    """After a failed attempt: try another endpoint of the backend, the same endpoint again, or the next backend."""

    action: Literal["sibling", "same", "next"]
    delay_s: float = 0.0
    retry: bool = False  # counts against the backend's retry.same_backend


def after_failure(
    *,
    answered: bool,
    endpoint_only: bool,
    retry_after_s: float | None,
    tries_on_backend: int,
    retries_used: int,
    sibling_left: bool,
    endpoint_available: bool,
    last_backend: bool,
    time_left_s: float,
    policy: RetryConfig,
    random: Callable[[], float],
) -> Step:
    """The next step after an attempt failed before anything was sent to the client.

    `answered`: the backend answered a 5xx or a 429 (a transient error worth a retry on the same backend), as opposed
    to a refused connection or a timeout (another endpoint, or the next backend). `endpoint_only` False: the whole
    backend would answer the same (it refused our credentials).
    """
    if not endpoint_only:
        return Step("next")
    # Envoy's retry_on 5xx with host selection: a sibling first, but leave attempts for the fallbacks.
    if sibling_left and (tries_on_backend < ENDPOINT_TRIES_PER_BACKEND or last_backend):
        return Step("sibling")
    if not answered or retries_used >= policy.same_backend or not (sibling_left or endpoint_available):
        return Step("next")
    if retry_after_s is not None:
        if retry_after_s > policy.max_retry_after_s:
            return Step("next")  # the backend says it needs longer than we may wait: the fallback answers now
        delay = retry_after_s
    else:
        delay = backoff_s(retries_used + 1, policy.backoff_base_s, random)
    if delay >= time_left_s:
        return Step("next")
    return Step("sibling" if sibling_left else "same", delay, retry=True)


def backoff_s(retry: int, base_s: float, random: Callable[[], float]) -> float:
    """Envoy's jittered back-off: retry N waits a uniform time in [0, (2^N - 1) x base], capped at 10 x base
    (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter#x-envoy-max-retries)."""
    return random() * min((2**retry - 1) * base_s, 10 * base_s)


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Retry-After as seconds: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def prompt_chars(body: dict[str, Any]) -> int:
    """Characters of the text a request puts into the context: message contents (text parts only: an image's
    base64 is not its token count) or a completion prompt."""
    total = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                total += len(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        total += len(part["text"])
        return total
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return len(prompt)
    if isinstance(prompt, list):
        return sum(len(p) if isinstance(p, str) else 1 for p in prompt)  # a token-id list: one token each
    return 0


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def clearly_exceeds(body: dict[str, Any], max_model_len: int | None) -> bool:
    """True when the prompt alone is clearly longer than the model's context, so asking it would only get a 400."""
    if max_model_len is None:
        return False
    return estimate_tokens(prompt_chars(body)) > CLEARLY_EXCEEDS * max_model_len


def is_context_length_error(status: int, data: bytes) -> bool:
    """A 400 that says the request does not fit the model's context.

    OpenAI answers code `context_length_exceeded`; vLLM 0.32 answers 400 with "This model's maximum context length
    is N tokens. ..." (vllm@0.32.0:vllm/renderers/params.py, _token_len_check and _text_len_check; also when
    max_tokens does not fit).
    """
    if status != 400:
        return False
    return b"context_length_exceeded" in data or b"maximum context length" in data
