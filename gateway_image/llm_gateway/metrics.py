"""Prometheus metrics. The names are a contract with the monitoring dashboards: do not rename them."""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

# LLM requests span milliseconds (errors, cached answers) to minutes (long generations).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class Metrics:
    """One registry per gateway process (a fresh one per instance keeps in-process tests independent)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # prometheus_client appends _total to counters: these expose llm_gateway_requests_total etc.
        self.requests = Counter(
            "llm_gateway_requests",
            "Client requests answered",
            ["team", "model", "backend", "status"],
            registry=r,
        )
        self.errors = Counter(
            "llm_gateway_request_errors",
            "Client requests that ended in an error, by reason",
            ["team", "model", "backend", "reason"],
            registry=r,
        )
        self.input_tokens = Counter(
            "llm_gateway_input_tokens", "Prompt tokens", ["team", "model", "backend"], registry=r
        )
        self.output_tokens = Counter(
            "llm_gateway_output_tokens", "Completion tokens", ["team", "model", "backend"], registry=r
        )
        self.cost = Counter("llm_gateway_cost_usd", "Cost in USD", ["team", "model", "backend"], registry=r)
        self.duration = Histogram(
            "llm_gateway_request_duration_seconds",
            "Time from request to the end of the response",
            ["model", "backend"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "llm_gateway_time_to_first_token_seconds",
            "Time from request to the first streamed content chunk",
            ["model", "backend"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "llm_gateway_fallbacks",
            "Requests moved to another backend after a failure",
            ["model", "from_backend", "to_backend"],
            registry=r,
        )
        self.malformed_events = Counter(
            "llm_gateway_malformed_stream_events",
            "Upstream stream events that were not JSON: not relayed, the stream counted as broken",
            ["backend"],
            registry=r,
        )
        # balancing_policies.py: hit (a held prefix or session), miss (new), shed (held, but over the load bound
        # or not a candidate), no_key (nothing to go by: least outstanding).
        self.balancing_decisions = Counter(
            "llm_gateway_balancing_decisions",
            "Choices of the prefix_aware and session policies, by outcome",
            ["backend", "policy", "outcome"],
            registry=r,
        )
        self.endpoint_healthy = Gauge(
            "llm_gateway_endpoint_healthy",
            "1 if the endpoint takes traffic",
            ["backend", "endpoint"],
            registry=r,
        )
        self.in_flight = Gauge("llm_gateway_requests_in_flight", "Requests being served", registry=r)
        self.team_spend = Gauge("llm_gateway_team_spend_usd", "Month-to-date spend", ["team"], registry=r)
        self.team_budget = Gauge("llm_gateway_team_budget_usd", "Monthly budget", ["team"], registry=r)
        # KEDA's scale-from-zero trigger reads this gauge (components/naming.py waiting_requests_query).
        self.requests_waiting = Gauge(
            "llm_gateway_requests_waiting",
            "Requests waiting for a backend scaled to zero, plus those its fallback serves meanwhile",
            ["backend"],
            registry=r,
        )
        self.wake_requests = Counter(
            "llm_gateway_wake_requests",
            "Requests that met a backend at zero, by outcome: woken, timed_out, rejected (queue full), fallback",
            ["backend", "outcome"],
            registry=r,
        )
        # Shared limits (llm_gateway/shared_limits.py): calls to the store that failed or timed out, and whether it
        # answers now (0 while the gateway fails open or closed).
        self.limit_store_errors = Counter(
            "llm_gateway_limit_store_errors", "Limit store calls that failed or timed out", ["operation"], registry=r
        )
        self.limit_store_up = Gauge("llm_gateway_limit_store_up", "1 if the limit store answers", registry=r)
        # Looking up a labelled child costs a lock and a dict lookup per call; the hot path reuses them.
        self._children: dict[tuple[object, ...], MetricWrapperBase] = {}
        self._series: dict[tuple[str, str, str], RequestSeries] = {}

    def child(self, metric: M, *labels: str) -> M:
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found  # type: ignore[return-value]

    def series(self, team: str, model: str, backend: str) -> RequestSeries:
        """The children one finished request updates, found with a single lookup."""
        key = (team, model, backend)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = RequestSeries(self, team, model, backend)
        return found


class RequestSeries:
    __slots__ = (
        "_by_reason",
        "_by_status",
        "_labels",
        "_metrics",
        "cost",
        "duration",
        "input_tokens",
        "output_tokens",
        "ttft",
    )

    def __init__(self, metrics: Metrics, team: str, model: str, backend: str) -> None:
        self._metrics = metrics
        self._labels = (team, model, backend)
        self._by_status: dict[int, Counter] = {}
        self._by_reason: dict[str, Counter] = {}
        self.input_tokens = metrics.input_tokens.labels(team, model, backend)
        self.output_tokens = metrics.output_tokens.labels(team, model, backend)
        self.cost = metrics.cost.labels(team, model, backend)
        self.duration = metrics.duration.labels(model, backend)
        self.ttft = metrics.ttft.labels(model, backend)

    def requests(self, status: int) -> Counter:
        found = self._by_status.get(status)
        if found is None:
            found = self._by_status[status] = self._metrics.requests.labels(*self._labels, str(status))
        return found

    def errors(self, reason: str) -> Counter:
        found = self._by_reason.get(reason)
        if found is None:
            found = self._by_reason[reason] = self._metrics.errors.labels(*self._labels, reason)
        return found
