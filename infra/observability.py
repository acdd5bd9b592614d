"""Wiring of monitoring: Prometheus, Grafana, dashboards, alerts, DCGM exporter and KEDA autoscaling of vLLM."""

from __future__ import annotations

import pulumi

from components.monitoring import AlertReceiver, AutoscaledModel, Monitoring, MonitoringArgs
from components.tracing import TraceCollectorArgs
from infra.config import PROJECT, PlatformConfig
from infra.plan import Plan
from infra.secrets import Secrets
from infra.stores_wiring import LedgerAccess, ledger_view


def alert_receivers(platform: PlatformConfig, config: pulumi.Config) -> list[AlertReceiver]:
    """The configured receivers, each with its URL or key read from its own Pulumi secret config key."""
    receivers = []
    for receiver in platform.monitoring.alertmanager.receivers:
        value = config.get_secret(receiver.secret)
        if value is None:
            raise pulumi.RunError(
                f"stack {pulumi.get_stack()!r}: monitoring.alertmanager.receivers {receiver.name!r} ({receiver.kind}) "
                f"needs secret {PROJECT}:{receiver.secret}: pulumi config set --secret {PROJECT}:{receiver.secret} "
                f"<{'routing key' if receiver.kind == 'pagerduty' else 'URL'}>"
            )
        receivers.append(
            AlertReceiver(
                name=receiver.name,
                kind=receiver.kind,
                severities=list(receiver.severities),
                secret_value=value,
                channel=receiver.channel,
                send_resolved=receiver.send_resolved,
            )
        )
    return receivers


def trace_collector_args(platform: PlatformConfig) -> TraceCollectorArgs | None:
    tracing = platform.monitoring.tracing
    if not tracing.enabled:
        return None
    return TraceCollectorArgs(
        namespace=MonitoringArgs.namespace,
        serving_namespace=platform.namespace,
        backend=tracing.backend,
        otlp_endpoint=tracing.otlp_endpoint,
        tempo_retention=tracing.retention,
        tempo_storage_gib=tracing.storage_gib,
        storage_class=platform.monitoring.storage_class,
        light=platform.monitoring.light,
    )


def wire_monitoring(
    platform: PlatformConfig,
    plan: Plan,
    secrets: Secrets,
    opts: pulumi.ResourceOptions,
    ledger: LedgerAccess | None = None,
) -> dict[str, object]:
    monitoring = platform.monitoring
    if not monitoring.enabled:
        return {}
    password = secrets.grafana_admin_password
    if password is None:
        # The chart's fallback is a well-known default password; refuse rather than ship it.
        raise pulumi.RunError(
            f"stack {pulumi.get_stack()!r}: monitoring.enabled needs the Grafana admin password: "
            "pulumi config set --secret llm-serving:grafanaAdminPassword <password> (or set monitoring.enabled: false)"
        )
    autoscaled = []
    for model, model_plan in zip(platform.models, plan.models, strict=True):
        if model.autoscaling is not None and model_plan.replica_bounds is not None:
            low, high = model_plan.replica_bounds
            autoscaled.append(
                AutoscaledModel(
                    model.name,
                    low,
                    high,
                    model.autoscaling.target_waiting_requests,
                    idle_seconds=model.autoscaling.idle_minutes * 60,
                    max_num_seqs=model.max_num_seqs,
                )
            )
    component = Monitoring(
        "monitoring",
        MonitoringArgs(
            serving_namespace=platform.namespace,
            alerts=plan.alerts,
            grafana_admin_password=password,
            light=monitoring.light,
            retention=monitoring.retention,
            storage_gib=monitoring.storage_gib,
            storage_class=monitoring.storage_class,
            scrape_interval=monitoring.scrape_interval,
            gpu_nodes=bool(platform.gpu_node_groups),
            autoscaled_models=autoscaled,
            managed_control_plane=platform.cluster is not None,
            alert_receivers=alert_receivers(platform, pulumi.Config(PROJECT)),
            alert_repeat_interval=monitoring.alertmanager.repeat_interval,
            **ledger_view(ledger),
            tracing=trace_collector_args(platform),
        ),
        opts=opts,
    )
    return {"prometheus_url": component.prometheus_url, "grafana_service": component.grafana_service}
