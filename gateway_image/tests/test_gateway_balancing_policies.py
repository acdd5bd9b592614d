"""The prefix_aware and session policies through the real gateway, with the official openai client and fake
upstreams that record where each request landed. Expected placements are worked out by hand from the rules in
llm_gateway/balancing_policies.py: a conversation's later turns extend its earlier prompt, so they go where it went;
an endpoint more than `load_margin` requests above the least loaded sheds; a lost endpoint fails over as before."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fake_upstream import FakeUpstream
from llm_gateway.config import ConfigError, parse_config

from conftest import KEY, Harness, async_client, backend, client, metric, team

pytestmark = pytest.mark.network

# Long enough to fill several of the default 256-character blocks, as an application's system prompt does.
SYSTEM = "You are the support assistant of team {team}. Answer briefly, cite the handbook, never guess. " * 6


def conversation(team: int, turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM.format(team=team)}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Question {turn} of conversation {team}: what about item {turn}?"})
        messages.append({"role": "assistant", "content": f"Item {turn} is fine."})
    return messages[:-1]  # ends on the user's question


def landed(upstreams: list[FakeUpstream], team: int) -> list[str]:
    """The upstreams that received a request of conversation `team`, once per request."""
    marker = f"support assistant of team {team}."
    return [u.name for u in upstreams for body in u.requests if marker in body["messages"][0]["content"]]


def decisions(url: str, policy: str) -> dict[str, float | None]:
    return {
        outcome: metric(url, "llm_gateway_balancing_decisions_total", backend="pool", policy=policy, outcome=outcome)
        for outcome in ("hit", "miss", "shed", "no_key")
    }


def pool_config(upstreams: list[FakeUpstream], **balancing: Any) -> dict[str, Any]:
    return {
        "backends": [backend("pool", *upstreams, balancing=balancing)],
        "routes": [{"model": "llama", "targets": [{"backend": "pool"}]}],
    }


def test_each_conversation_stays_on_one_endpoint_under_prefix_aware_and_not_under_least_outstanding(
    harness: Harness,
) -> None:
    upstreams = [harness.upstream(f"u{i}") for i in range(3)]
    _, prefix_url = harness.gateway(pool_config(upstreams, policy="prefix_aware"))
    c = client(prefix_url)
    # Turns interleaved across conversations, one at a time: every endpoint is idle at each pick, so only the
    # policy decides. The third turn is streamed (the stream path picks the same way).
    for turn in range(1, 5):
        for number in range(8):
            messages: Any = conversation(number, turn)
            if turn == 3:
                chunks = c.chat.completions.create(model="llama", messages=messages, stream=True)
                assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
            else:
                c.chat.completions.create(model="llama", messages=messages)
    for number in range(8):
        places = landed(upstreams, number)
        assert len(places) == 4 and len(set(places)) == 1, (number, places)
    # Each conversation's system prompt names it within the first block: 8 first turns are new, 24 turns follow.
    assert decisions(prefix_url, "prefix_aware") == {"hit": 24, "miss": 8, "shed": None, "no_key": None}
    # Eight new prefixes spread by rendezvous hashing: more than one endpoint serves conversations.
    assert len({landed(upstreams, number)[0] for number in range(8)}) >= 2

    # Control: the same workload under least_outstanding, on fresh upstreams. Every endpoint is idle at each pick,
    # so each turn lands uniformly at random: 8 conversations all staying put has probability (1/27)^8.
    control = [harness.upstream(f"c{i}") for i in range(3)]
    _, plain_url = harness.gateway(pool_config(control))
    for turn in range(1, 5):
        for number in range(8):
            client(plain_url).chat.completions.create(model="llama", messages=conversation(number, turn))  # type: ignore[arg-type]
    assert any(len(set(landed(control, number))) > 1 for number in range(8))


def test_a_saturated_endpoint_sheds_beyond_the_margin(harness: Harness) -> None:
    upstreams = [harness.upstream(f"u{i}") for i in range(3)]
    gateway, url = harness.gateway(pool_config(upstreams, policy="prefix_aware", load_margin=2))
    client(url).chat.completions.create(model="llama", messages=conversation(1, 1))  # type: ignore[arg-type]
    (home,) = landed(upstreams, 1)
    home_upstream = next(u for u in upstreams if u.name == home)
    home_upstream.behaviour.latency_s = 1.0  # it holds what it gets: its in-flight count only grows

    async def burst() -> None:
        async with async_client(url) as c:
            await asyncio.gather(
                *(c.chat.completions.create(model="llama", messages=conversation(1, 2)) for _ in range(6))  # type: ignore[arg-type]
            )

    asyncio.run(burst())
    # Worked by hand: the home endpoint takes requests while its in-flight count is at most 0 + 2 (the others stay
    # at 0 until one of them takes a shed request): the first three. The fourth sheds to another endpoint, which now
    # holds the prefix too and takes the rest within its own bound.
    # (Turn 2 has 4 messages: system, user, assistant, user.)
    second_turns = {u.name: sum(1 for body in u.requests if len(body["messages"]) == 4) for u in upstreams}
    assert sum(second_turns.values()) == 6
    assert second_turns[home] == 3, second_turns
    # The fourth found its holder over the bound (shed); the fifth and sixth found the new holder within it.
    assert decisions(url, "prefix_aware") == {"hit": 5, "miss": 1, "shed": 1, "no_key": None}
    assert [e.outstanding for e in gateway.runtime.backends["pool"].endpoints] == [0, 0, 0]


def test_a_lost_endpoint_fails_over_and_the_conversation_then_stays_on_its_new_endpoint(harness: Harness) -> None:
    upstreams = [harness.upstream(f"u{i}") for i in range(3)]
    _, url = harness.gateway(pool_config(upstreams, policy="prefix_aware"))
    c = client(url)
    c.chat.completions.create(model="llama", messages=conversation(2, 1))  # type: ignore[arg-type]
    (home,) = landed(upstreams, 2)
    harness.stop_upstream(next(u for u in upstreams if u.name == home))
    for turn in (2, 3, 4):
        reply = c.chat.completions.create(model="llama", messages=conversation(2, turn))  # type: ignore[arg-type]
        assert reply.choices[0].message.content
    places = landed(upstreams, 2)
    after = [name for name in places if name != home]
    assert places.count(home) == 1 and len(after) == 3 and len(set(after)) == 1, places


@pytest.mark.parametrize("by", ["header", "user"])
def test_session_affinity_by_header_or_user(harness: Harness, by: str) -> None:
    upstreams = [harness.upstream(f"u{i}") for i in range(3)]
    _, url = harness.gateway(pool_config(upstreams, policy="session", session_header="x-conversation"))
    c = client(url)
    for _ in range(4):
        for session in range(6):
            # A short prompt, the same for every session: only the session key can keep them apart.
            extra: dict[str, Any] = (
                {"extra_headers": {"x-conversation": f"s{session}"}} if by == "header" else {"user": f"s{session}"}
            )
            c.chat.completions.create(model="llama", messages=[{"role": "user", "content": f"hi {session}"}], **extra)
    places: dict[str, set[str]] = {}
    for u in upstreams:
        for body in u.requests:
            places.setdefault(body["messages"][0]["content"], set()).add(u.name)
    assert len(places) == 6 and all(len(names) == 1 for names in places.values()), places
    assert sum(len(u.requests) for u in upstreams) == 24
    assert decisions(url, "session") == {"hit": 18, "miss": 6, "shed": None, "no_key": None}


def same_harness_config(harness: Harness, config: dict[str, Any]) -> dict[str, Any]:
    """`config` with what harness.gateway adds to it (audit file, team)."""
    return {**config, "audit": {"path": str(harness.audit_path)}, "teams": [team("alpha", KEY)]}


def test_a_reload_keeps_what_the_policy_learned_unless_the_balancing_changes(harness: Harness) -> None:
    upstreams = [harness.upstream(f"u{i}") for i in range(3)]
    config = pool_config(upstreams, policy="prefix_aware")
    gateway, url = harness.gateway(config)
    client(url).chat.completions.create(model="llama", messages=conversation(3, 1))  # type: ignore[arg-type]
    (home,) = landed(upstreams, 3)
    learned = gateway.runtime.backends["pool"].balancer
    assert harness.servers.run(gateway.reload(parse_config(same_harness_config(harness, config))))
    assert gateway.runtime.backends["pool"].balancer is learned
    client(url).chat.completions.create(model="llama", messages=conversation(3, 2))  # type: ignore[arg-type]
    assert landed(upstreams, 3) == [home, home]
    changed = pool_config(upstreams, policy="prefix_aware", load_margin=3)
    assert harness.servers.run(gateway.reload(parse_config(same_harness_config(harness, changed))))
    assert gateway.runtime.backends["pool"].balancer is not learned


def test_an_unknown_policy_is_refused_with_the_accepted_ones(harness: Harness) -> None:
    upstream = harness.upstream("u")
    with pytest.raises(ConfigError, match=r"backends\[0\]\.balancing\.policy: .*'prefix_aware'.*got 'round_robin'"):
        harness.gateway(pool_config([upstream, upstream], policy="round_robin"))
