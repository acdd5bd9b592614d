"""Wiring of monitoring: Prometheus, Grafana, dashboards, alerts, DCGM exporter and KEDA autoscaling of vLLM."""

from __future__ import annotations

import pulumi

from components.alerts import AlertSettings
from components.monitoring import AlertReceiver, AutoscaledModel, Monitoring, MonitoringArgs
from infra.config import PROJECT, ModelConfig, PlatformConfig
from infra.secrets import Secrets
from infra.sizing import node_group_gpu


def replica_bounds(platform: PlatformConfig, model: ModelConfig) -> tuple[int, int]:
    """(min, max) replicas for an autoscaled model: from `replicas` up to what its node group's GPUs can hold.

    The ceiling is the group's GPUs at max_size (max_size x GPUs per node), less the GPUs the other models placed
    on the same group hold at their own minimum, divided by the GPUs one replica needs.
    """
    assert model.autoscaling is not None
    ceiling = model.autoscaling.max_replicas
    group = next((group for group in platform.gpu_node_groups if group.name == model.node_group), None)
    if group is not None:
        gpus = group.scaling.max_size * node_group_gpu(group).gpu_count
        taken = sum(
            other.replicas * other.gpus
            for other in platform.models
            if other.node_group == group.name and other.name != model.name
        )
        ceiling = min(ceiling, (gpus - taken) // model.gpus)
    # The validated config guarantees the node group holds every model's `replicas`; never ask for max < min.
    return model.replicas, max(model.replicas, ceiling)


def alert_settings(platform: PlatformConfig) -> AlertSettings:
    thresholds = platform.monitoring.alerts
    return AlertSettings(
        serving_namespace=platform.namespace,
        model_deployments=[model.name for model in platform.models],
        requests_waiting=thresholds.requests_waiting,
        requests_waiting_for_minutes=thresholds.requests_waiting_for_minutes,
        kv_cache_usage_ratio=thresholds.kv_cache_usage_ratio,
        kv_cache_for_minutes=thresholds.kv_cache_for_minutes,
        gateway_error_ratio=thresholds.gateway_error_ratio,
        fallback_ratio=thresholds.fallback_ratio,
        team_budget_ratio=thresholds.team_budget_ratio,
        pod_not_ready_minutes=thresholds.pod_not_ready_minutes,
        min_gpu_nodes=sum(group.scaling.min_size for group in platform.gpu_node_groups),
    )


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


def wire_monitoring(platform: PlatformConfig, secrets: Secrets, opts: pulumi.ResourceOptions) -> dict[str, object]:
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
    for model in platform.models:
        if model.autoscaling is not None:
            low, high = replica_bounds(platform, model)
            autoscaled.append(AutoscaledModel(model.name, low, high, model.autoscaling.target_waiting_requests))
    component = Monitoring(
        "monitoring",
        MonitoringArgs(
            serving_namespace=platform.namespace,
            alerts=alert_settings(platform),
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
        ),
        opts=opts,
    )
    return {"prometheus_url": component.prometheus_url, "grafana_service": component.grafana_service}
