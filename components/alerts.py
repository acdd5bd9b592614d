"""Alerting rules for the serving platform, as the `spec.groups` of a PrometheusRule.

Thresholds come from the stack (`monitoring.alerts`); every alert links to its section in docs/runbooks.md, whose
anchor is the alert name in lower case. `tests/promtool/` unit-tests each rule with promtool: it fires on a
synthetic bad series and stays quiet on a healthy one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RUNBOOK_URL = "https://github.com/llm-serving/llm-serving/blob/main/docs/runbooks.md"


@dataclass(frozen=True)
class AlertSettings:
    serving_namespace: str
    model_deployments: list[str]
    requests_waiting: int
    requests_waiting_for_minutes: int
    kv_cache_usage_ratio: float
    kv_cache_for_minutes: int
    gateway_error_ratio: float
    fallback_ratio: float
    team_budget_ratio: float
    pod_not_ready_minutes: int
    # Sum of the GPU node groups' min_size; 0 means the stack has no GPUs and gets no GPU alerts.
    min_gpu_nodes: int = 0


def _alert(name: str, expr: str, for_minutes: int, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        # One line: promtool and Prometheus do not care, but people reading `kubectl get prometheusrule -o yaml` do.
        "expr": " ".join(expr.split()),
        "for": f"{for_minutes}m",
        "labels": {"severity": severity, "owner": "llm-platform"},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{RUNBOOK_URL}#{name.lower()}",
        },
    }


def _vllm_rules(settings: AlertSettings) -> list[dict[str, Any]]:
    ns = settings.serving_namespace
    # Model names are DNS labels ([a-z0-9-]): nothing to escape in a regex (and PromQL rejects Python's `\-`).
    deployments = "|".join(settings.model_deployments)
    return [
        _alert(
            "VllmReplicasNotReady",
            # kube-state-metrics, not the pod's own /metrics: a pod that never starts exports nothing.
            f"""kube_deployment_spec_replicas{{namespace="{ns}", deployment=~"{deployments}"}}
              - kube_deployment_status_replicas_available{{namespace="{ns}", deployment=~"{deployments}"}} > 0""",
            settings.pod_not_ready_minutes,
            "critical",
            "vLLM {{ $labels.deployment }} has {{ $value }} replica(s) not ready",
            "Fewer vLLM replicas are ready than wanted for "
            f"{settings.pod_not_ready_minutes} minutes: less serving capacity, more fallbacks.",
        ),
        _alert(
            "VllmRequestsWaiting",
            f"""max by (namespace, pod, model) (vllm:num_requests_waiting{{namespace="{ns}"}})
              > {settings.requests_waiting}""",
            settings.requests_waiting_for_minutes,
            "warning",
            "{{ $value }} requests waiting in vLLM pod {{ $labels.pod }}",
            f"More than {settings.requests_waiting} requests have been queued in one vLLM pod for "
            f"{settings.requests_waiting_for_minutes} minutes: the model is saturated and latency grows.",
        ),
        _alert(
            "VllmKvCacheNearFull",
            f"""max by (namespace, pod, model) (vllm:kv_cache_usage_perc{{namespace="{ns}"}})
              > {settings.kv_cache_usage_ratio}""",
            settings.kv_cache_for_minutes,
            "warning",
            "KV cache of vLLM pod {{ $labels.pod }} is {{ $value | humanizePercentage }} full",
            f"KV-cache usage above {settings.kv_cache_usage_ratio:.0%} for {settings.kv_cache_for_minutes} "
            "minutes: vLLM will preempt running requests (recompute) and queue new ones.",
        ),
    ]


def _gateway_rules(settings: AlertSettings) -> list[dict[str, Any]]:
    return [
        _alert(
            "GatewayErrorRate",
            # Server-side failures only: a client's 4xx (bad key, rate limit) is not the platform failing.
            f"""sum by (model) (rate(llm_gateway_requests_total{{status=~"5.."}}[5m]))
              / sum by (model) (rate(llm_gateway_requests_total[5m])) > {settings.gateway_error_ratio}""",
            5,
            "critical",
            "{{ $value | humanizePercentage }} of {{ $labels.model }} requests fail",
            f"More than {settings.gateway_error_ratio:.1%} of the gateway's requests for a model end in a 5xx.",
        ),
        _alert(
            "GatewayFallbackRate",
            f"""sum by (model) (rate(llm_gateway_fallbacks_total[10m]))
              / sum by (model) (rate(llm_gateway_requests_total[10m])) > {settings.fallback_ratio}""",
            10,
            "warning",
            "{{ $value | humanizePercentage }} of {{ $labels.model }} requests fall back",
            f"More than {settings.fallback_ratio:.0%} of requests move to a fallback backend: the primary "
            "backend is failing or saturated, and fallbacks often cost more.",
        ),
        _alert(
            "ModelWakeTimedOut",
            # The activator (gateway) held requests for a model at zero longer than its wake deadline: the model
            # did not come up (no GPU capacity, image pull, a crash loop) and clients got 503s.
            """sum by (backend) (increase(llm_gateway_wake_requests_total{outcome="timed_out"}[10m])) > 0""",
            0,
            "critical",
            "Requests for {{ $labels.backend }} timed out waiting for it to wake from zero",
            "A model scaled to zero did not get a ready pod within its wake deadline: clients got 503 "
            "(wake_timeout). The cold start failed or takes longer than planned.",
        ),
        _alert(
            "LimitStoreFailing",
            # Shared limits (Valkey/Redis): while calls fail the gateway fails open (each replica enforces its
            # share) or closed (503 to every client), as the stack says; either way the fleet-wide count is off.
            """sum(rate(llm_gateway_limit_store_errors_total[5m])) > 0""",
            5,
            "critical",
            "Calls from the gateway to its limit store fail",
            "Calls to the shared-limits store (Valkey/Redis) fail or time out: limits are enforced per replica "
            "(fail open) or every request is refused (fail closed).",
        ),
        _alert(
            "TeamNearMonthlyBudget",
            # Every gateway replica reports the team's month-to-date spend; max avoids counting it per replica.
            f"""max by (team) (llm_gateway_team_spend_usd) / max by (team) (llm_gateway_team_budget_usd > 0)
              > {settings.team_budget_ratio}""",
            5,
            "warning",
            "Team {{ $labels.team }} has spent {{ $value | humanizePercentage }} of its monthly budget",
            f"A team passed {settings.team_budget_ratio:.0%} of its monthly budget; at 100% the gateway "
            "refuses its requests until the month ends.",
        ),
    ]


def _gpu_rules(settings: AlertSettings) -> list[dict[str, Any]]:
    return [
        _alert(
            "GpuNodeNotReady",
            """kube_node_status_condition{condition="Ready", status="true"} == 0
              and on (node) kube_node_status_capacity{resource="nvidia_com_gpu"} > 0""",
            5,
            "critical",
            "GPU node {{ $labels.node }} is not Ready",
            "A node with GPUs is NotReady: its vLLM replicas are gone until it recovers or is replaced.",
        ),
        _alert(
            "GpuNodesBelowMinimum",
            # A terminated node leaves no series at all; counting capacity catches it (`or vector(0)`: none left).
            f"""(count(kube_node_status_capacity{{resource="nvidia_com_gpu"}} > 0) or vector(0))
              < {settings.min_gpu_nodes}""",
            10,
            "critical",
            "Only {{ $value }} GPU nodes in the cluster",
            f"The GPU node groups should hold at least {settings.min_gpu_nodes} nodes: a node was lost and not "
            "replaced (capacity shortage, spot reclaim, failing bootstrap).",
        ),
        _alert(
            "GpuXidError",
            # DCGM reports the last XID code; 0 means none. XIDs are driver-reported GPU faults.
            "max by (node, gpu, modelName) (DCGM_FI_DEV_XID_ERRORS) > 0",
            0,
            "critical",
            "XID {{ $value }} on GPU {{ $labels.gpu }} of node {{ $labels.node }}",
            "The NVIDIA driver reported an XID error: an application fault (13, 31, 43) or a hardware one "
            "(48, 63, 64, 74, 79, 94, 95) that may need the node drained and replaced.",
        ),
    ]


def rule_groups(settings: AlertSettings) -> list[dict[str, Any]]:
    """The PrometheusRule `spec.groups`."""
    groups = [
        {"name": "llm-serving.vllm", "rules": _vllm_rules(settings)},
        {"name": "llm-serving.gateway", "rules": _gateway_rules(settings)},
    ]
    if settings.min_gpu_nodes > 0:
        groups.append({"name": "llm-serving.gpu", "rules": _gpu_rules(settings)})
    return groups
