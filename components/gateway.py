"""The LLM gateway: Deployment, Services, config, credentials, disruption budget, autoscaling, network policies.

The gateway's config file is the gateway's own schema (gateway_image/llm_gateway/config.py); this component only
ships it. A checksum of it annotates the pod template, so a config change rolls the pods.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.checksum import secret_checksum
from components.naming import VLLM_APP, VLLM_PORT

APP = "llm-gateway"
PORT = 8080
RUN_AS_USER = 10001  # the image's numeric user (gateway_image/Dockerfile)
CONFIG_DIR = "/etc/llm-gateway"
# The image's ENTRYPOINT (gateway_image/Dockerfile), stated again as the container's `command`: the pod then runs
# the gateway whatever the image's ENTRYPOINT/CMD say (a `command` replaces the ENTRYPOINT and drops the CMD;
# kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/#notes).
COMMAND = ["python", "-m", "llm_gateway"]


@dataclass(frozen=True)
class GatewayArgs:
    namespace: str
    image: pulumi.Input[str]
    replicas: int
    max_replicas: int
    config_yaml: pulumi.Input[str]
    # Environment variable -> Pulumi secret, delivered through one Kubernetes Secret.
    secret_env: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    node_selector: dict[str, str] | None = None
    ingress_kind: str = "none"  # none | nlb | ingress
    ingress_host: str | None = None
    ingress_tls_secret: str | None = None
    certificate_arn: str | None = None
    internal: bool = True
    monitoring_namespace: str = "monitoring"
    # The controller that serves the NLB Service / Ingress (AWS Load Balancer Controller): they wait for it.
    exposure_depends_on: list[pulumi.Resource] = field(default_factory=list)
    ingress_class: str = "alb"
    # The ledger's spool (components/stores.py): an emptyDir of this sizeLimit mounted at `spool_dir`.
    spool_dir: str | None = None
    spool_size_limit: str | None = None
    # What the Deployment waits for (the ledger's migration Job).
    deployment_depends_on: list[pulumi.Resource] = field(default_factory=list)
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory: str = "512Mi"


def config_checksum(config_yaml: str) -> str:
    return hashlib.sha256(config_yaml.encode()).hexdigest()


LABELS = {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": "gateway"}
# The ALB and NLB listeners' TLS policy: TLS 1.3 with 1.2 as the floor.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


def secret_env(secret_name: str, variables: list[str]) -> list[k8s.core.v1.EnvVarArgs]:
    """One env var per secret key, each read from the key of the same name."""
    return [
        k8s.core.v1.EnvVarArgs(
            name=variable,
            value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret_name, key=variable)
            ),
        )
        for variable in sorted(variables)
    ]


def gateway_security_context() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        run_as_group=RUN_AS_USER,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def spool_mounts(args: GatewayArgs) -> list[k8s.core.v1.VolumeMountArgs]:
    return [k8s.core.v1.VolumeMountArgs(name="spool", mount_path=args.spool_dir)] if args.spool_dir else []


def spool_volumes(args: GatewayArgs) -> list[k8s.core.v1.VolumeArgs]:
    """An emptyDir, not a PVC: it survives container restarts, needs no per-pod volume (a Deployment cannot give
    each pod its own PVC) and keeps pods free to move between AZs; the gateway drains it on SIGTERM."""
    if not args.spool_dir:
        return []
    return [
        k8s.core.v1.VolumeArgs(
            name="spool", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=args.spool_size_limit)
        )
    ]


def gateway_container(args: GatewayArgs, env: list[k8s.core.v1.EnvVarArgs]) -> k8s.core.v1.ContainerArgs:
    http_probe = k8s.core.v1.HTTPGetActionArgs
    return k8s.core.v1.ContainerArgs(
        name="gateway",
        image=args.image,
        command=COMMAND,
        args=["--config", f"{CONFIG_DIR}/config.yaml"],
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PORT, protocol="TCP")],
        env=env or None,
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": args.cpu_request, "memory": args.memory},
            limits={"cpu": args.cpu_limit, "memory": args.memory},
        ),
        readiness_probe=k8s.core.v1.ProbeArgs(
            http_get=http_probe(path="/readyz", port="http"), period_seconds=5, failure_threshold=2
        ),
        liveness_probe=k8s.core.v1.ProbeArgs(
            http_get=http_probe(path="/healthz", port="http"), period_seconds=10, failure_threshold=3
        ),
        # Endpoints drop the pod before SIGTERM starts the gateway's own drain.
        lifecycle=k8s.core.v1.LifecycleArgs(
            pre_stop=k8s.core.v1.LifecycleHandlerArgs(sleep=k8s.core.v1.SleepActionArgs(seconds=5))
        ),
        security_context=gateway_security_context(),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True),
            k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
            *spool_mounts(args),
        ],
        image_pull_policy="IfNotPresent",
    )


def gateway_spreading(replicas: int) -> list[k8s.core.v1.TopologySpreadConstraintArgs] | None:
    """Several replicas spread softly over zones and hosts."""
    if replicas <= 1:
        return None
    return [
        k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key=key,
            when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS),
        )
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def gateway_pod_spec(
    args: GatewayArgs,
    service_account_name: pulumi.Input[str],
    config_map_name: pulumi.Input[str],
    env: list[k8s.core.v1.EnvVarArgs],
) -> k8s.core.v1.PodSpecArgs:
    return k8s.core.v1.PodSpecArgs(
        service_account_name=service_account_name,
        automount_service_account_token=False,
        security_context=k8s.core.v1.PodSecurityContextArgs(
            run_as_non_root=True,
            fs_group=RUN_AS_USER,
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        containers=[gateway_container(args, env)],
        node_selector=args.node_selector,
        topology_spread_constraints=gateway_spreading(args.replicas),
        # Longer than the drain timeout the gateway uses for streams in flight (server.drain_timeout_s).
        termination_grace_period_seconds=45,
        volumes=[
            k8s.core.v1.VolumeArgs(
                name="config", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=config_map_name)
            ),
            k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="64Mi")),
            *spool_volumes(args),
        ],
    )


def cpu_autoscaler_spec(name: str, args: GatewayArgs) -> k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs:
    """Scale the Deployment `name` on CPU between the configured replicas and the ceiling (never below them)."""
    return k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
        scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
            api_version="apps/v1", kind="Deployment", name=name
        ),
        min_replicas=args.replicas,
        max_replicas=max(args.max_replicas, args.replicas),
        metrics=[
            k8s.autoscaling.v2.MetricSpecArgs(
                type="Resource",
                resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                    name="cpu",
                    target=k8s.autoscaling.v2.MetricTargetArgs(type="Utilization", average_utilization=70),
                ),
            )
        ],
    )


def nlb_annotations(args: GatewayArgs) -> dict[str, str]:
    """AWS Load Balancer Controller: an NLB that terminates TLS with the ACM certificate."""
    return {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal" if args.internal else "internet-facing",
        "service.beta.kubernetes.io/aws-load-balancer-ssl-cert": str(args.certificate_arn),
        "service.beta.kubernetes.io/aws-load-balancer-ssl-ports": "443",
        "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy": TLS_POLICY,
    }


def alb_annotations(args: GatewayArgs) -> dict[str, str]:
    """An ALB of the AWS Load Balancer Controller.

    Annotation names from its docs (kubernetes-sigs/aws-load-balancer-controller@v3.5.0:
    docs/guide/ingress/annotations.md). TLS ends at the ALB with the ACM certificate; completions stream for
    minutes, so the idle timeout is raised from the ALB's 60 s default.
    """
    return {
        "alb.ingress.kubernetes.io/scheme": "internal" if args.internal else "internet-facing",
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/listen-ports": '[{"HTTPS": 443}]',
        "alb.ingress.kubernetes.io/certificate-arn": str(args.certificate_arn),
        "alb.ingress.kubernetes.io/ssl-policy": TLS_POLICY,
        "alb.ingress.kubernetes.io/load-balancer-attributes": "idle_timeout.timeout_seconds=600",
        "alb.ingress.kubernetes.io/healthcheck-path": "/readyz",
    }


def ingress_spec(service_name: str, args: GatewayArgs) -> k8s.networking.v1.IngressSpecArgs:
    """TLS for the configured host, and only the OpenAI API: /metrics and the probes share port 8080."""
    backend = k8s.networking.v1.IngressBackendArgs(
        service=k8s.networking.v1.IngressServiceBackendArgs(
            name=service_name, port=k8s.networking.v1.ServiceBackendPortArgs(name="http")
        )
    )
    return k8s.networking.v1.IngressSpecArgs(
        ingress_class_name=args.ingress_class,
        tls=[k8s.networking.v1.IngressTLSArgs(hosts=[str(args.ingress_host)])],
        rules=[
            k8s.networking.v1.IngressRuleArgs(
                host=args.ingress_host,
                http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                    paths=[k8s.networking.v1.HTTPIngressPathArgs(path="/v1", path_type="Prefix", backend=backend)]
                ),
            )
        ],
    )


class Gateway(pulumi.ComponentResource):
    """The gateway's config, credentials, Deployment, Service, disruption budget, autoscaler, network policies and
    exposure. The class only registers resources; their contents come from the pure builders above."""

    service_url: pulumi.Output[str]

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:Gateway", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args.namespace
        labels = LABELS

        def meta(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=ns, labels=labels)

        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=meta(f"{name}-config"), data={"config.yaml": args.config_yaml}, opts=child
        )
        secret_name = f"{name}-credentials"
        if args.secret_env:
            k8s.core.v1.Secret(
                secret_name,
                metadata=meta(secret_name),
                type="Opaque",
                string_data=dict(sorted(args.secret_env.items())),
                opts=child,
            )
        service_account = k8s.core.v1.ServiceAccount(
            name, metadata=meta(name), automount_service_account_token=False, opts=child
        )
        pod = gateway_pod_spec(
            args,
            service_account.metadata.name,
            config_map.metadata.name,
            secret_env(secret_name, list(args.secret_env)),
        )
        self._deployment(name, args, pod, child)
        service = k8s.core.v1.Service(
            name,
            metadata=meta(name),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=labels,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=80, target_port="http", protocol="TCP")],
            ),
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            name,
            metadata=meta(name),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                # One replica may go during node drains; with a single replica, a drain may still proceed.
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            ),
            opts=child,
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            name, metadata=meta(name), spec=cpu_autoscaler_spec(name, args), opts=child
        )
        self._network_policies(name, args, labels, child)
        self._exposure(name, args, labels, pulumi.ResourceOptions(parent=self, depends_on=args.exposure_depends_on))
        self.service_url = pulumi.Output.concat("http://", service.metadata.name, f".{ns}.svc/v1")
        self.register_outputs({"service_url": self.service_url})

    def _deployment(
        self, name: str, args: GatewayArgs, pod: k8s.core.v1.PodSpecArgs, child: pulumi.ResourceOptions
    ) -> None:
        checksum = pulumi.Output.from_input(args.config_yaml).apply(config_checksum)
        pod_annotations: dict[str, pulumi.Input[str]] = {"checksum/config": checksum}
        if args.secret_env:
            # Env vars from a Secret are read once at container start: a rotated key reaches the pods only if the
            # pod template changes with it.
            pod_annotations["checksum/secret"] = secret_checksum(args.secret_env)
        k8s.apps.v1.Deployment(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=args.namespace, labels=LABELS),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=0),
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=LABELS, annotations=pod_annotations), spec=pod
                ),
            ),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=args.deployment_depends_on)),
        )

    def _network_policies(
        self, name: str, args: GatewayArgs, labels: dict[str, str], child: pulumi.ResourceOptions
    ) -> None:
        """Deny all ingress in the serving namespace, then open exactly what the platform needs."""
        ns = args.namespace
        selector = k8s.meta.v1.LabelSelectorArgs
        policy = k8s.networking.v1.NetworkPolicy
        spec = k8s.networking.v1.NetworkPolicySpecArgs
        rule = k8s.networking.v1.NetworkPolicyIngressRuleArgs
        peer = k8s.networking.v1.NetworkPolicyPeerArgs
        port = k8s.networking.v1.NetworkPolicyPortArgs
        monitoring = peer(
            namespace_selector=selector(match_labels={"kubernetes.io/metadata.name": args.monitoring_namespace})
        )
        policy(
            "default-deny-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="default-deny-ingress", namespace=ns),
            spec=spec(pod_selector=selector(), policy_types=["Ingress"]),
            opts=child,
        )
        policy(
            "vllm-from-gateway-only",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="vllm-from-gateway-only", namespace=ns),
            spec=spec(
                pod_selector=selector(match_labels={"app.kubernetes.io/name": VLLM_APP}),
                policy_types=["Ingress"],
                ingress=[
                    rule(from_=[peer(pod_selector=selector(match_labels=labels))], ports=[port(port=VLLM_PORT)]),
                    # Prometheus scrapes /metrics on the same port.
                    rule(from_=[monitoring], ports=[port(port=VLLM_PORT)]),
                ],
            ),
            opts=child,
        )
        policy(
            f"{name}-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{name}-ingress", namespace=ns),
            spec=spec(
                pod_selector=selector(match_labels=labels),
                policy_types=["Ingress"],
                # Clients reach the gateway from anywhere the Service or load balancer exposes it.
                ingress=[rule(ports=[port(port=PORT)])],
            ),
            opts=child,
        )

    def _exposure(self, name: str, args: GatewayArgs, labels: dict[str, str], child: pulumi.ResourceOptions) -> None:
        if args.ingress_kind == "nlb":
            k8s.core.v1.Service(
                f"{name}-nlb",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"{name}-nlb", namespace=args.namespace, labels=labels, annotations=nlb_annotations(args)
                ),
                spec=k8s.core.v1.ServiceSpecArgs(
                    type="LoadBalancer",
                    load_balancer_class="service.k8s.aws/nlb",
                    selector=labels,
                    ports=[k8s.core.v1.ServicePortArgs(name="https", port=443, target_port="http", protocol="TCP")],
                ),
                opts=child,
            )
        elif args.ingress_kind == "ingress":
            k8s.networking.v1.Ingress(
                name,
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=name, namespace=args.namespace, labels=labels, annotations=alb_annotations(args)
                ),
                spec=ingress_spec(name, args),
                opts=child,
            )
