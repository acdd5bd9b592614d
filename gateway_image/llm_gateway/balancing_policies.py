"""Balancing policies of a backend: least outstanding, prefix-aware and session affinity; one class each.

Every policy chooses among `eligible_endpoints` (not yet tried by this request, and available unless the backend
panics), so ejection, panic mode, failover and stream recovery mean the same under each: a policy only orders the
candidates those mechanisms leave.

The two affinity policies are bounded-load affinities: they send a request where its KV cache most likely lives,
unless that endpoint has more than `load_margin` requests in flight above the least loaded candidate; then the
next best candidate (a shorter prefix, or another endpoint) takes it. A request with nothing to go by (a prompt
shorter than one block, no session key) is balanced by least outstanding, as before. A first sight (no endpoint
known to hold the prefix or the session) goes by rendezvous hashing of the key over the candidates within the
bound, so that several gateway replicas, each learning alone, still send a new prefix to the same pod.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

import orjson

from .balancing import Endpoint, eligible_endpoints, least_outstanding, pick_endpoint
from .config import BalancingConfig

# A block is cached on at most this many endpoints in our view: a prefix popular enough to be shed to more pods
# than this is cached nearly everywhere anyway, and the bound keeps each entry small.
MAX_HOLDERS = 4
# Separators that cannot appear in JSON text of a role: the canonical text of [user "ab"] differs from [user "a",
# user "b"], as vLLM's chat template output would.
_ROLE_END = "\x1f"
_MESSAGE_END = "\x1e"


# Told each choice's outcome: hit, miss, shed or no_key (metrics.py balancing_decisions).
Outcome = Callable[[str], None]


def _ignore(outcome: str) -> None:
    del outcome


class Policy(Protocol):
    def pick(
        self,
        endpoints: Sequence[Endpoint],
        exclude: Collection[Endpoint],
        *,
        panic_threshold: float,
        panic_when_none: bool,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> Endpoint | None: ...

    def forget(self, endpoint: Endpoint) -> None:
        """The endpoint left the backend (DNS): drop what the policy remembers of it."""


class LeastOutstanding:
    """Today's policy: fewest requests in flight, ties at random."""

    def __init__(self, config: BalancingConfig, count: Outcome = _ignore) -> None:
        del config, count

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        exclude: Collection[Endpoint],
        *,
        panic_threshold: float,
        panic_when_none: bool,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> Endpoint | None:
        return pick_endpoint(endpoints, exclude, panic_threshold=panic_threshold, panic_when_none=panic_when_none)

    def forget(self, endpoint: Endpoint) -> None:
        pass


def canonical_prompt(body: Mapping[str, Any], limit: int | None = None) -> str:
    """The request's prompt as one text, in the order a chat template renders it: tools, then each message's role
    and content. Not the model's template (the gateway has none), but the same prefix relation: two requests share
    a leading part of this text exactly when their templated prompts share the matching leading part. With `limit`,
    messages after the first `limit` characters are left out (a long history is not copied to hash its start)."""
    parts: list[str] = []
    size = 0
    tools = body.get("tools")
    if tools:
        parts.append(orjson.dumps(tools, option=orjson.OPT_SORT_KEYS).decode())
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if not isinstance(content, str):
                # Parts (text, images) and tool calls: their JSON is as stable as the parts themselves.
                content = orjson.dumps(
                    [content, message.get("tool_calls")], option=orjson.OPT_SORT_KEYS, default=str
                ).decode()
            parts.append(f"{message.get('role')}{_ROLE_END}{content}{_MESSAGE_END}")
            size += len(parts[-1])
            if limit is not None and size >= limit:
                break
        return "".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        parts.append(prompt)
    elif prompt is not None:
        parts.append(orjson.dumps(prompt, default=str).decode())
    return "".join(parts)


def prefix_hashes(body: Mapping[str, Any], block_chars: int, max_blocks: int) -> list[bytes]:
    """Chained hashes of the prompt's leading full blocks: block i's hash covers blocks 0..i, like vLLM's
    hash(parent_hash, block_tokens) (vllm-project/vllm@v0.32.0:vllm/v1/core/kv_cache_utils.py), so equal hashes
    at position i mean equal prefixes up to the end of block i (here: the running hash of blocks 0..i). A partial
    last block is not hashed: vLLM caches full blocks only. blake2b, not hash(): the same on every gateway replica
    whatever PYTHONHASHSEED is."""
    text = canonical_prompt(body, block_chars * max_blocks)
    count = min(len(text) // block_chars, max_blocks)
    hashes: list[bytes] = []
    # One running hash, copied at each block's end: hash(parent, block) without re-hashing the parent's digest.
    running = hashlib.blake2b(digest_size=16)
    for index in range(count):
        running.update(text[index * block_chars : (index + 1) * block_chars].encode())
        hashes.append(running.copy().digest())
    return hashes


def rendezvous(key: bytes, candidates: Sequence[Endpoint]) -> Endpoint:
    """Highest random weight (rendezvous) hashing: every gateway replica maps a key to the same candidate, and an
    endpoint's leaving moves only the keys that were on it."""
    return max(
        candidates, key=lambda endpoint: hashlib.blake2b(key + endpoint.base_url.encode(), digest_size=8).digest()
    )


def within_bound(candidates: Sequence[Endpoint], margin: int) -> tuple[int, list[Endpoint]]:
    """The highest outstanding count allowed, and the candidates at or under it."""
    bound = min(endpoint.outstanding for endpoint in candidates) + margin
    return bound, [endpoint for endpoint in candidates if endpoint.outstanding <= bound]


class PrefixAware:
    """Where the longest leading part of the prompt was last sent, within the load bound.

    A bounded LRU map: block hash -> base URLs of the endpoints that were sent a prompt with that prefix (most
    recent first, at most MAX_HOLDERS). A request's hashes are looked up from the longest down to min_match_ratio of
    them; the first one held by an endpoint within the bound wins (the least loaded of its holders); none: a new
    prefix, placed by rendezvous hashing of its longest block hash. The map only approximates each pod's
    cache (vLLM evicts under pressure; we record at dispatch, not on success), which costs at worst a miss.
    """

    def __init__(self, config: BalancingConfig, count: Outcome = _ignore) -> None:
        self.count = count
        self.block_chars = config.block_chars
        self.max_blocks = config.max_blocks
        self.min_match_ratio = config.min_match_ratio
        self.margin = config.load_margin
        self.max_entries = config.max_entries
        self.index: OrderedDict[bytes, list[str]] = OrderedDict()

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        exclude: Collection[Endpoint],
        *,
        panic_threshold: float,
        panic_when_none: bool,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> Endpoint | None:
        candidates = eligible_endpoints(
            endpoints, exclude, panic_threshold=panic_threshold, panic_when_none=panic_when_none
        )
        if not candidates:
            return None
        hashes = prefix_hashes(body, self.block_chars, self.max_blocks)
        if not hashes:
            self.count("no_key")
            return least_outstanding(candidates)
        chosen = self.choose(candidates, hashes)
        self.remember(hashes, chosen.base_url)
        return chosen

    def choose(self, candidates: Sequence[Endpoint], hashes: Sequence[bytes]) -> Endpoint:
        bound, allowed = within_bound(candidates, self.margin)
        by_url = {endpoint.base_url: endpoint for endpoint in candidates}
        # Blocks matched from the start; a match shorter than min_match_ratio of the request is not followed.
        shortest = max(1, math.ceil(self.min_match_ratio * len(hashes)))
        held = False
        for block_hash in reversed(hashes[shortest - 1 :]):
            holders = self.index.get(block_hash)
            if holders is None:
                continue
            held = True
            best: Endpoint | None = None
            for url in holders:
                endpoint = by_url.get(url)
                if (
                    endpoint is not None
                    and endpoint.outstanding <= bound
                    and (best is None or endpoint.outstanding < best.outstanding)
                ):
                    best = endpoint
            if best is not None:
                self.count("hit")
                return best
        self.count("shed" if held else "miss")
        return rendezvous(hashes[-1], allowed)

    def remember(self, hashes: Sequence[bytes], url: str) -> None:
        index = self.index
        for block_hash in hashes:
            holders = index.get(block_hash)
            if holders is None:
                index[block_hash] = [url]
            else:
                if holders[0] != url:
                    if url in holders:
                        holders.remove(url)
                    holders.insert(0, url)
                    del holders[MAX_HOLDERS:]
                index.move_to_end(block_hash)
        while len(index) > self.max_entries:
            index.popitem(last=False)

    def forget(self, endpoint: Endpoint) -> None:
        url = endpoint.base_url
        emptied = []
        for block_hash, holders in self.index.items():
            if url in holders:
                holders.remove(url)
                if not holders:
                    emptied.append(block_hash)
        for block_hash in emptied:
            del self.index[block_hash]


class SessionAffinity:
    """The endpoint this session was last sent to, within the load bound; a session is named by a header or, without
    it, by the OpenAI `user` field. A bounded LRU map: session key -> base URL."""

    def __init__(self, config: BalancingConfig, count: Outcome = _ignore) -> None:
        self.count = count
        self.header = config.session_header
        self.margin = config.load_margin
        self.max_entries = config.max_entries
        self.sessions: OrderedDict[str, str] = OrderedDict()

    def session_key(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
        key = headers.get(self.header)
        if key:
            return key
        user = body.get("user")
        return user if isinstance(user, str) and user else None

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        exclude: Collection[Endpoint],
        *,
        panic_threshold: float,
        panic_when_none: bool,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> Endpoint | None:
        candidates = eligible_endpoints(
            endpoints, exclude, panic_threshold=panic_threshold, panic_when_none=panic_when_none
        )
        key = self.session_key(body, headers)
        if not candidates or key is None:
            if candidates:
                self.count("no_key")
            return least_outstanding(candidates)
        bound, allowed = within_bound(candidates, self.margin)
        url = self.sessions.get(key)
        chosen = next((e for e in candidates if e.base_url == url and e.outstanding <= bound), None)
        if chosen is None:
            self.count("miss" if url is None else "shed")
            chosen = rendezvous(key.encode(), allowed)
        else:
            self.count("hit")
        self.sessions[key] = chosen.base_url
        self.sessions.move_to_end(key)
        while len(self.sessions) > self.max_entries:
            self.sessions.popitem(last=False)
        return chosen

    def forget(self, endpoint: Endpoint) -> None:
        gone = [key for key, url in self.sessions.items() if url == endpoint.base_url]
        for key in gone:
            del self.sessions[key]


POLICIES: dict[str, type[LeastOutstanding] | type[PrefixAware] | type[SessionAffinity]] = {
    "least_outstanding": LeastOutstanding,
    "prefix_aware": PrefixAware,
    "session": SessionAffinity,
}


def new_policy(config: BalancingConfig, count: Outcome = _ignore) -> Policy:
    return POLICIES[config.policy](config, count)
