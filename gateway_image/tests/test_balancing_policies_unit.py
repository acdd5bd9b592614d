"""The prefix-aware and session policies on their own (no sockets). Expected choices are worked out by hand from
the rules in llm_gateway/balancing_policies.py's docstrings: longest held prefix first, an endpoint more than
`load_margin` above the least loaded loses the request, ejection/panic/exclusion as in pick_endpoint; expected
hashes are computed here with hashlib from the chained-block rule (vLLM's hash(parent, block))."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import pytest
from llm_gateway import balancing
from llm_gateway.balancing import Endpoint
from llm_gateway.balancing_policies import PrefixAware, SessionAffinity, canonical_prompt, new_policy, prefix_hashes
from llm_gateway.config import BalancingConfig


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(balancing.time, "monotonic", lambda: 1000.0)


def endpoints(*outstanding: int) -> list[Endpoint]:
    made = []
    for index, count in enumerate(outstanding):
        endpoint = Endpoint(f"http://10.0.0.{index + 1}:8000/v1", 2, 10.0)
        endpoint.outstanding = count
        made.append(endpoint)
    return made


def chat(*contents: str, system: str = "") -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    for index, content in enumerate(contents):
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": content})
    return {"model": "m", "messages": messages}


def prefix(margin: int = 2, block_chars: int = 8, **fields: Any) -> PrefixAware:
    policy = new_policy(BalancingConfig(policy="prefix_aware", block_chars=block_chars, load_margin=margin, **fields))
    assert isinstance(policy, PrefixAware)
    return policy


def pick(policy: Any, eps: list[Endpoint], body: dict[str, Any], **kw: Any) -> Endpoint | None:
    options: dict[str, Any] = {"panic_threshold": 0.0, "panic_when_none": True, "headers": {}}
    options.update(kw)
    exclude = options.pop("exclude", ())
    chosen: Endpoint | None = policy.pick(eps, exclude, body=body, **options)
    return chosen


def test_hashes_are_chained_full_blocks_of_the_canonical_text() -> None:
    body = chat("abcdefghijkl")
    # Canonical text: role, \x1f, content, \x1e = 19 characters: two full blocks of 8, the last 3 are not hashed.
    assert canonical_prompt(body) == "user\x1fabcdefghijkl\x1e"
    # Block i's hash covers blocks 0..i: the hash of the text up to its end.
    first = hashlib.blake2b(b"user\x1fabc", digest_size=16).digest()
    second = hashlib.blake2b(b"user\x1fabcdefghijk", digest_size=16).digest()
    assert prefix_hashes(body, 8, 100) == [first, second]
    assert prefix_hashes(body, 8, 1) == [first]
    assert prefix_hashes(chat("a"), 8, 100) == []  # 7 characters: no full block


def test_only_the_leading_messages_are_rendered_and_the_hashes_are_the_same() -> None:
    body = chat(*(f"message {index} " * 20 for index in range(200)))
    full = canonical_prompt(body)
    short = canonical_prompt(body, 1000)
    # Messages of ~220 characters: the fifth passes 1,000 characters, and rendering stops after it.
    assert 1000 <= len(short) < 1300 and full.startswith(short)
    hashes = prefix_hashes(body, 100, 10)
    expected = [hashlib.blake2b(full[: 100 * (i + 1)].encode(), digest_size=16).digest() for i in range(10)]
    assert hashes == expected


def test_a_later_turn_extends_the_earlier_turns_hashes_and_another_conversation_diverges() -> None:
    system = "You are a careful assistant for the billing team. " * 3
    turn1 = chat("What is my balance?", system=system)
    turn2 = chat("What is my balance?", "It is 12 dollars.", "And last month?", system=system)
    other = chat("Cancel my plan.", system=system)
    h1, h2, ho = (prefix_hashes(body, 16, 1000) for body in (turn1, turn2, other))
    assert h2[: len(h1)] == h1
    # Common text: the system message (6 + 1 + 150 + 1 characters) and "user\x1f" (5): 163 characters, 10 blocks.
    shared = 163 // 16
    assert ho[:shared] == h1[:shared] and ho[shared] != h1[shared]
    # Splitting a message differently is another prompt, as the template would render it.
    assert prefix_hashes(chat("abcdefgh", "ijkl"), 4, 100) != prefix_hashes(chat("abcdefghijkl"), 4, 100)


def test_the_longest_held_prefix_wins_over_a_shorter_one() -> None:
    eps = endpoints(0, 0, 0)
    policy = prefix()
    hashes = prefix_hashes(chat("x" * 80), 8, 256)
    policy.remember(hashes[:2], eps[0].base_url)
    policy.remember(hashes[:6], eps[1].base_url)
    policy.remember(hashes[:1], eps[2].base_url)
    assert pick(policy, eps, chat("x" * 80)) is eps[1]


def test_a_conversation_stays_on_its_endpoint_turn_after_turn() -> None:
    eps = endpoints(0, 0, 0)
    policy = prefix(margin=2)
    turns = ["Tell me about cats, please.", "Cats are small felines.", "And dogs?", "Dogs are canines.", "Birds?"]
    first = pick(policy, eps, chat(*turns[:1]))
    assert first is not None
    for count in (3, 5):
        assert pick(policy, eps, chat(*turns[:count])) is first


def test_an_endpoint_over_the_margin_sheds_to_the_next_best_holder_then_to_the_others() -> None:
    eps = endpoints(0, 0, 0)
    policy = prefix(margin=2)
    body = chat("y" * 80)
    hashes = prefix_hashes(body, 8, 256)
    policy.remember(hashes[:3], eps[0].base_url)
    policy.remember(hashes, eps[1].base_url)
    eps[1].outstanding = 2  # least is 0: 2 <= 0 + 2, still within the bound
    assert pick(policy, eps, body) is eps[1]
    eps[1].outstanding = 3  # 3 > 0 + 2: the next best holder (3 blocks) takes it
    assert pick(policy, eps, body) is eps[0]
    eps[0].outstanding = 3  # both holders over 0 + 2 (eps[2] has 0): only eps[2] is left within the bound
    assert pick(policy, eps, body) is eps[2]


def test_ejected_and_already_tried_holders_are_passed_over() -> None:
    eps = endpoints(0, 0)
    policy = prefix()
    body = chat("z" * 80)
    policy.remember(prefix_hashes(body, 8, 256), eps[0].base_url)
    assert pick(policy, eps, body, exclude={eps[0]}) is eps[1]  # failover: the tried endpoint is excluded
    eps[0].record_failure()
    eps[0].record_failure()  # failures_to_eject = 2
    assert not eps[0].healthy
    assert pick(policy, eps, body) is eps[1]
    eps[1].record_failure()
    eps[1].record_failure()
    # Every endpoint ejected, panic mode: both hold the prefix now; the most recent holder first on a tie.
    assert pick(policy, eps, body) is eps[1]
    eps[1].outstanding = 1
    assert pick(policy, eps, body) is eps[0]
    assert pick(policy, eps, body, panic_when_none=False) is None


def test_an_endpoint_that_leaves_is_forgotten_everywhere() -> None:
    eps = endpoints(0, 0)
    policy = prefix()
    body = chat("w" * 80)
    hashes = prefix_hashes(body, 8, 256)
    policy.remember(hashes[:4], eps[1].base_url)
    policy.remember(hashes, eps[0].base_url)
    policy.forget(eps[0])
    assert all(eps[0].base_url not in holders for holders in policy.index.values())
    assert len(policy.index) == 4  # blocks only eps[0] held are gone
    assert pick(policy, eps, body) is eps[1]


def test_the_prefix_map_is_bounded_and_forgets_the_least_recently_used() -> None:
    policy = prefix(max_entries=16)
    old = prefix_hashes(chat("old" * 30), 8, 256)
    policy.remember(old[:4], "http://a")
    for index in range(10):
        policy.remember(prefix_hashes(chat(f"{index:04d}" * 20), 8, 256), "http://b")
    assert len(policy.index) == 16
    assert not any(h in policy.index for h in old[:4])
    holders = prefix(max_entries=16)
    for url in ("http://1", "http://2", "http://3", "http://4", "http://5", "http://6"):
        holders.remember(old[:1], url)
    assert holders.index[old[0]] == ["http://6", "http://5", "http://4", "http://3"]  # MAX_HOLDERS, newest first


def test_a_new_prefix_goes_to_the_same_endpoint_from_every_replica_and_new_prefixes_spread() -> None:
    eps = endpoints(0, 0, 0)
    replica_a, replica_b = prefix(), prefix()
    counts: Counter[str] = Counter()
    for index in range(300):
        body = chat(f"{index:03d} conversation " * 4)  # "user\x1f" and 3 digits: every first block differs
        chosen_a, chosen_b = pick(replica_a, eps, body), pick(replica_b, eps, body)
        assert chosen_a is chosen_b and chosen_a is not None
        counts[chosen_a.base_url] += 1
    # Rendezvous hashing over 3 endpoints: each gets about a third of 300 distinct prefixes.
    assert all(60 <= count <= 140 for count in counts.values()) and len(counts) == 3, counts


def test_a_shared_opening_under_the_match_ratio_is_a_new_prefix() -> None:
    eps = endpoints(0, 0, 0)
    opening = chat("x" * 3)  # "user\x1fxxx": exactly one block of 8
    for ratio, expected_holders in ((0.3, 3), (0.0, 1)):
        policy = prefix(min_match_ratio=ratio, margin=100)
        policy.remember(prefix_hashes(opening, 8, 256), eps[0].base_url)
        # Each request: the held first block, then 9 blocks of its own; 1 of 10 blocks matched is under 0.3.
        chosen = {pick(policy, eps, chat("x" * 3 + f"{index:02d}" * 36)) for index in range(30)}
        assert len(chosen) == expected_holders, (ratio, chosen)


def test_a_prompt_shorter_than_a_block_goes_to_the_least_loaded() -> None:
    eps = endpoints(3, 1, 2)
    assert pick(prefix(block_chars=64), eps, chat("hi")) is eps[1]


def session(margin: int = 2, **fields: Any) -> SessionAffinity:
    policy = new_policy(BalancingConfig(policy="session", load_margin=margin, **fields))
    assert isinstance(policy, SessionAffinity)
    return policy


def test_session_sticks_by_header_then_by_user_and_moves_when_over_the_margin() -> None:
    eps = endpoints(0, 0, 0)
    policy = session()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "user": "alice"}
    by_user = pick(policy, eps, body)
    by_header = pick(policy, eps, body, headers={"x-session-id": "s-1"})
    assert by_user is not None and by_header is not None
    for _ in range(5):
        assert pick(policy, eps, body) is by_user
        assert pick(policy, eps, body, headers={"x-session-id": "s-1"}) is by_header
    by_user.outstanding = 3  # least is 0 or 3; margin 2 -> over the bound unless every endpoint is at 3
    others = [e for e in eps if e is not by_user]
    moved = pick(policy, eps, body)
    assert moved in others
    by_user.outstanding = 0
    assert pick(policy, eps, body) is moved  # the session now lives where it moved to


def test_session_without_a_key_is_least_outstanding_and_leaving_endpoints_are_forgotten() -> None:
    eps = endpoints(2, 0, 1)
    policy = session(session_header="x-conversation")
    assert pick(policy, eps, {"model": "m", "messages": []}) is eps[1]
    assert pick(policy, eps, {"model": "m"}, headers={"x-session-id": "ignored"}) is eps[1]
    chosen = pick(policy, endpoints(0, 0), {"model": "m"}, headers={"x-conversation": "c"})
    assert chosen is not None and policy.sessions == {"c": chosen.base_url}
    policy.forget(chosen)
    assert policy.sessions == {}


def test_least_outstanding_policy_is_todays_pick() -> None:
    eps = endpoints(3, 0, 2)
    policy = new_policy(BalancingConfig())
    assert pick(policy, eps, chat("x" * 500)) is eps[1]
    assert pick(policy, eps, chat("x" * 500), exclude={eps[1]}) is eps[2]
