"""Endpoint health and least-outstanding picking, on their own (no sockets). Expected choices are worked out by hand
from the rules in the docstrings: fewest outstanding wins, ties uniformly at random, ejected endpoints are passed
over unless the backend panics (Envoy's panic threshold:
https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/panic_threshold)."""

from __future__ import annotations

import collections
import random

import pytest
from llm_gateway import balancing
from llm_gateway.balancing import Endpoint, pick_endpoint


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(balancing.time, "monotonic", fake)
    return fake


def endpoints(*outstanding: int, failures_to_eject: int = 2, cooldown_s: float = 10.0) -> list[Endpoint]:
    made = []
    for index, count in enumerate(outstanding):
        endpoint = Endpoint(f"http://10.0.0.{index + 1}:8000/v1", failures_to_eject, cooldown_s)
        endpoint.outstanding = count
        made.append(endpoint)
    return made


def test_endpoint_parses_its_url() -> None:
    endpoint = Endpoint("http://10.0.0.1:8000/v1/", 3, 5.0)
    assert endpoint.base_url == "http://10.0.0.1:8000/v1"
    assert endpoint.origin == "http://10.0.0.1:8000"
    assert endpoint.label == "10.0.0.1:8000"
    assert (endpoint.outstanding, endpoint.failures, endpoint.healthy, endpoint.ejected_until) == (0, 0, True, 0.0)
    assert repr(endpoint) == "Endpoint('http://10.0.0.1:8000/v1', outstanding=0, healthy=True)"


def test_ejection_after_exactly_failures_to_eject_and_readmission_after_the_cooldown(clock: Clock) -> None:
    changes: list[bool] = []
    endpoint = Endpoint("http://a:1/v1", 3, 10.0, lambda e: changes.append(e.healthy))
    endpoint.record_failure()
    endpoint.record_failure()
    assert endpoint.healthy and endpoint.failures == 2 and changes == []
    endpoint.record_failure()  # the third: 3 >= 3
    assert not endpoint.healthy and endpoint.ejected_until == 1010.0 and changes == [False]
    assert not endpoint.available(1009.9)
    assert endpoint.available(1010.0)  # half-open from the end of the cool-down, inclusive
    clock.now = 1005.0
    endpoint.record_success()  # inside the cool-down: failures reset, but not readmitted
    assert not endpoint.healthy and endpoint.failures == 0 and changes == [False]
    clock.now = 1010.0
    endpoint.record_success()
    assert endpoint.healthy and changes == [False, True]


def test_a_further_failure_while_ejected_extends_the_ejection_without_a_second_notice(clock: Clock) -> None:
    changes: list[bool] = []
    endpoint = Endpoint("http://a:1/v1", 1, 10.0, lambda e: changes.append(e.healthy))
    endpoint.record_failure()
    clock.now = 1012.0
    endpoint.record_failure()
    assert endpoint.ejected_until == 1022.0 and changes == [False]


def test_success_on_a_healthy_endpoint_resets_failures_and_sends_no_notice(clock: Clock) -> None:
    changes: list[bool] = []
    endpoint = Endpoint("http://a:1/v1", 3, 10.0, lambda e: changes.append(e.healthy))
    endpoint.record_failure()
    endpoint.record_success()
    assert endpoint.failures == 0 and endpoint.healthy and changes == []
    endpoint.record_failure()
    endpoint.record_failure()
    assert endpoint.healthy  # 2 consecutive, not 3: the success reset the count


def test_fewest_outstanding_wins_wherever_it_stands(clock: Clock) -> None:
    for order in ([0, 5, 5], [5, 0, 5], [5, 5, 0], [3, 2, 1]):
        pool = endpoints(*order)
        assert pick_endpoint(pool) is pool[order.index(min(order))]


def test_excluded_endpoints_are_skipped_even_when_least_loaded(clock: Clock) -> None:
    pool = endpoints(0, 4, 7)
    assert pick_endpoint(pool, exclude={pool[0]}) is pool[1]
    assert pick_endpoint(pool, exclude={pool[0], pool[1], pool[2]}) is None


def test_ties_are_broken_uniformly(clock: Clock) -> None:
    random.seed(7)
    pool = endpoints(1, 1, 1, 9)
    counts = collections.Counter(pick_endpoint(pool).label for _ in range(3000))  # type: ignore[union-attr]
    # 1000 each expected; a binomial(3000, 1/3) stays within ±120 with probability > 0.999.
    assert set(counts) == {"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"}
    assert all(abs(count - 1000) < 120 for count in counts.values()), counts


def test_ejected_endpoints_are_passed_over_outside_panic(clock: Clock) -> None:
    pool = endpoints(0, 5, failures_to_eject=1)
    pool[0].record_failure()
    assert pick_endpoint(pool) is pool[1]
    # One endpoint (the excluded one) is still available, so no panic: the ejected one is not tried.
    assert pick_endpoint(pool, exclude={pool[1]}) is None


def test_all_ejected_panics_only_when_asked(clock: Clock) -> None:
    pool = endpoints(3, 1, failures_to_eject=1)
    for endpoint in pool:
        endpoint.record_failure()
    assert pick_endpoint(pool, panic_when_none=True) is pool[1]
    assert pick_endpoint(pool, panic_when_none=False) is None


def test_panic_threshold_counts_available_endpoints_against_the_share(clock: Clock) -> None:
    # 4 endpoints, 2 ejected: available 2 = 50%. A threshold of 0.5 is not panic (2 < 2 is false); 0.6 is (2 < 2.4).
    pool = endpoints(0, 0, 5, 5, failures_to_eject=1)
    pool[0].record_failure()
    pool[1].record_failure()
    assert pick_endpoint(pool, panic_threshold=0.5, panic_when_none=False) in (pool[2], pool[3])
    assert pick_endpoint(pool, panic_threshold=0.6, panic_when_none=False) in (pool[0], pool[1])


def test_an_endpoint_back_from_its_cooldown_is_picked_again(clock: Clock) -> None:
    pool = endpoints(0, 5, failures_to_eject=1, cooldown_s=10.0)
    pool[0].record_failure()
    clock.now = 1010.0
    assert pick_endpoint(pool, panic_when_none=False) is pool[0]


def test_by_default_a_backend_with_every_endpoint_ejected_panics(clock: Clock) -> None:
    pool = endpoints(3, 1, failures_to_eject=1)
    for endpoint in pool:
        endpoint.record_failure()
    assert pick_endpoint(pool) is pool[1]
