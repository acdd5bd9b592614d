"""Endpoints of a backend and least-outstanding-requests balancing among them."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Sequence
from urllib.parse import urlsplit


class Endpoint:
    """One server of a backend: its URL, its in-flight count and its health.

    Requests and active checks keep separate counts of consecutive failures, so that a server whose /health answers
    200 while its completions fail is still ejected: a passing check resets only the checks' count and readmits only
    an endpoint that the checks took out. An endpoint ejected for failing requests stays out for its cool-down and is
    readmitted by a request that succeeds after it (half-open). This is Envoy's split of active health checking and
    outlier detection, with successful_active_health_check_uneject_host off; the cool-down grows with each ejection
    in a row, like base_ejection_time (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/
    outlier#ejection-algorithm).
    """

    __slots__ = (
        "base_url",
        "check_failures",
        "cooldown_s",
        "ejected_by_requests",
        "ejected_until",
        "ejections",
        "failures",
        "failures_to_eject",
        "healthy",
        "label",
        "max_cooldown_s",
        "on_health_change",
        "origin",
        "outstanding",
    )

    def __init__(
        self,
        base_url: str,
        failures_to_eject: int,
        cooldown_s: float,
        on_health_change: Callable[[Endpoint], None] | None = None,
        max_cooldown_s: float | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.label = parts.netloc
        self.outstanding = 0
        self.failures = 0  # consecutive failed requests
        self.check_failures = 0  # consecutive failed active checks
        self.ejections = 0  # ejections in a row, without a readmission in between
        self.ejected_by_requests = False
        self.healthy = True
        self.ejected_until = 0.0
        self.failures_to_eject = failures_to_eject
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = cooldown_s if max_cooldown_s is None else max(max_cooldown_s, cooldown_s)
        self.on_health_change = on_health_change

    def available(self, now: float) -> bool:
        # After the cool-down an ejected endpoint is tried again (half-open); one failure ejects it again.
        return self.healthy or now >= self.ejected_until

    def record_success(self) -> None:
        """A request succeeded."""
        self.failures = 0
        # Only after the cool-down: a request sent in panic mode does not readmit an endpoint early, so the health
        # gauge and /readyz keep telling the truth.
        if not self.healthy and time.monotonic() >= self.ejected_until:
            self._readmit()

    def record_failure(self) -> None:
        """A request failed (a refused connection, a timeout, a 5xx, a broken stream)."""
        self.failures += 1
        if self.failures >= self.failures_to_eject:
            self._eject(by_requests=True)

    def record_check(self, passed: bool) -> None:
        """An active health check passed or failed."""
        if not passed:
            self.check_failures += 1
            if self.check_failures >= self.failures_to_eject:
                self._eject(by_requests=False)
            return
        self.check_failures = 0
        if not self.healthy and not self.ejected_by_requests and time.monotonic() >= self.ejected_until:
            self._readmit()

    def _eject(self, *, by_requests: bool) -> None:
        now = time.monotonic()
        if self.healthy or now >= self.ejected_until:
            self.ejections += 1  # a new ejection, or a failed half-open try: the next cool-down is longer
        self.ejected_until = now + min(self.cooldown_s * self.ejections, self.max_cooldown_s)
        if by_requests or self.healthy:
            self.ejected_by_requests = by_requests
        if self.healthy:
            self._set_healthy(False)

    def _readmit(self) -> None:
        self.ejections = 0
        self.ejected_by_requests = False
        self._set_healthy(True)

    def _set_healthy(self, healthy: bool) -> None:
        self.healthy = healthy
        if self.on_health_change is not None:
            self.on_health_change(self)

    def __repr__(self) -> str:
        return f"Endpoint({self.base_url!r}, outstanding={self.outstanding}, healthy={self.healthy})"


def pick_endpoint(
    endpoints: Sequence[Endpoint],
    exclude: Collection[Endpoint] = (),
    *,
    panic_threshold: float = 0.0,
    panic_when_none: bool = True,
) -> Endpoint | None:
    """The endpoint with the fewest outstanding requests; ties broken uniformly at random.

    Ejected endpoints are passed over, unless the backend is in panic (as in Envoy): fewer than `panic_threshold`
    of its endpoints are available, or none is and `panic_when_none` holds. Then ejections say more about the
    checks (a starved node, a tight timeout) than about the endpoints, and a try on any of them beats a certain 503.
    """
    now = time.monotonic()
    panic = in_panic(endpoints, now, panic_threshold, panic_when_none)
    best: Endpoint | None = None
    ties = 0
    for endpoint in endpoints:
        if (exclude and endpoint in exclude) or not (panic or endpoint.available(now)):
            continue
        if best is None or endpoint.outstanding < best.outstanding:
            best, ties = endpoint, 1
        elif endpoint.outstanding == best.outstanding:
            # Reservoir sampling: each of the tied endpoints ends up chosen with equal probability.
            ties += 1
            if random.random() * ties < 1:
                best = endpoint
    return best


def in_panic(endpoints: Sequence[Endpoint], now: float, panic_threshold: float, panic_when_none: bool) -> bool:
    """Whether the backend balances over ejected endpoints too (see `pick_endpoint`)."""
    available = sum(1 for endpoint in endpoints if endpoint.available(now))
    return (available == 0 and panic_when_none) or available < panic_threshold * len(endpoints)


def eligible_endpoints(
    endpoints: Sequence[Endpoint],
    exclude: Collection[Endpoint] = (),
    *,
    panic_threshold: float = 0.0,
    panic_when_none: bool = True,
) -> list[Endpoint]:
    """The endpoints `pick_endpoint` would choose among: not excluded, and available unless the backend panics.
    The affinity policies (balancing_policies.py) choose among these, so ejection and panic mean the same there."""
    now = time.monotonic()
    panic = in_panic(endpoints, now, panic_threshold, panic_when_none)
    return [
        endpoint
        for endpoint in endpoints
        if not (exclude and endpoint in exclude) and (panic or endpoint.available(now))
    ]


def least_outstanding(candidates: Sequence[Endpoint]) -> Endpoint | None:
    """The candidate with the fewest outstanding requests; ties broken uniformly at random."""
    best: Endpoint | None = None
    ties = 0
    for endpoint in candidates:
        if best is None or endpoint.outstanding < best.outstanding:
            best, ties = endpoint, 1
        elif endpoint.outstanding == best.outstanding:
            ties += 1
            if random.random() * ties < 1:
                best = endpoint
    return best
