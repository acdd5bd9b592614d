"""The gateway's stores on the Kubernetes side: in-cluster PostgreSQL and Valkey (StatefulSets with PVCs), who may
reach them (NetworkPolicies), and the ledger's migration Job that runs before the gateway rolls.

Plain StatefulSets rather than an operator (CloudNativePG, a Valkey operator): the in-cluster stores serve `local`
and cheap dev stacks only, where one replica with a volume is enough; an operator would add a chart, CRDs and a
controller to every such cluster for failover nobody uses there. AWS stacks use RDS and ElastiCache
(components/aws_stores.py), whose failover and backups AWS runs.

The migration Job is named after a hash of the gateway image and the migrations: a new version is a new Job (the
Kubernetes provider replaces a Job whose template changes anyway, since a Job's template is immutable), and the
gateway Deployment waits for it (`depends_on`): pulumi-kubernetes awaits a Job until it has succeeded
(pulumi/pulumi-kubernetes@v4.18.0: provider/pkg/await/job.go), so a failed migration stops the rollout with the old
gateway still serving. A Job rather than an init container: an init container would run the migration once per
gateway pod, concurrently, on every pod start (also on a plain reschedule), and a failed migration would leave
pods crash-looping instead of one failed Job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

# Images pinned by tag: the official postgres image (docker-library/postgres, tag 16.6-bookworm) and Valkey's own
# (valkey-io/valkey-container, tag 8.0.2). The data directory of the postgres image is /var/lib/postgresql/data
# (PGDATA in its Dockerfile); Valkey's is /data (WORKDIR of its Dockerfile).
POSTGRES_IMAGE = "postgres:16.6-bookworm"
VALKEY_IMAGE = "valkey/valkey:8.0.2"
POSTGRES_PORT = 5432
VALKEY_PORT = 6379
POSTGRES_NAME = "ledger-postgres"
VALKEY_NAME = "limits-valkey"
LEDGER_DATABASE = "ledger"
LEDGER_USER = "llm_gateway"
MIGRATE_APP = "llm-gateway-migrate"
# The migrate command of the gateway image (the shared contract: applies the ledger migrations to $LEDGER_DSN).
MIGRATE_COMMAND = ["python", "-m", "llm_gateway", "migrate"]
# A high uid, not the images' 999: the postgres image runs under any uid whose data directory is writable (its
# docs, "Arbitrary --user Notes"; docker-entrypoint.sh uses nss_wrapper for an unknown uid), and fsGroup makes the
# PVC writable; Valkey only needs /data writable.
STORE_UID = 10999
SECRETS_DIR = "/run/secrets/stores"
GATEWAY_UID = 10001  # gateway_image/Dockerfile


def postgres_host(namespace: str) -> str:
    return f"{POSTGRES_NAME}.{namespace}.svc.cluster.local"


def valkey_host(namespace: str) -> str:
    return f"{VALKEY_NAME}.{namespace}.svc.cluster.local"


@dataclass(frozen=True)
class InClusterStore:
    """One single-replica store: its PVC size and class, and the password its clients use (a Pulumi secret)."""

    storage_gib: int
    password: pulumi.Output[str]
    storage_class: str | None = None


@dataclass(frozen=True)
class StoresArgs:
    namespace: str
    # The gateway image, for the migration Job; `migration_id` is a short hash of the image and the migrations.
    image: pulumi.Input[str]
    migration_id: pulumi.Input[str]
    # Labels of the gateway pods (they may reach both stores).
    gateway_labels: dict[str, str]
    # DSN of the ledger database for the migration Job (a Pulumi secret); None = no ledger, no Job.
    ledger_dsn: pulumi.Output[str] | None = None
    postgres: InClusterStore | None = None
    valkey: InClusterStore | None = None
    # Grafana's namespace and pod labels: its PostgreSQL datasource reads the ledger.
    monitoring_namespace: str = "monitoring"
    grafana_labels: dict[str, str] = field(default_factory=lambda: {"app.kubernetes.io/name": "grafana"})
    node_selector: dict[str, str] | None = None


def _security_context(uid: int) -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def _secret_env(secret: str, pairs: dict[str, str]) -> list[k8s.core.v1.EnvVarArgs]:
    return [
        k8s.core.v1.EnvVarArgs(
            name=name,
            value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret, key=key)
            ),
        )
        for name, key in pairs.items()
    ]


def postgres_container() -> k8s.core.v1.ContainerArgs:
    """postgres:16 with its data on the PVC; the image's entrypoint creates the database and user on first start
    from POSTGRES_DB/POSTGRES_USER/POSTGRES_PASSWORD (docker-library/postgres: docker-entrypoint.sh)."""
    probe = k8s.core.v1.ProbeArgs(
        exec_=k8s.core.v1.ExecActionArgs(command=["pg_isready", "-U", LEDGER_USER, "-d", LEDGER_DATABASE]),
        period_seconds=10,
        failure_threshold=6,
    )
    return k8s.core.v1.ContainerArgs(
        name="postgres",
        image=POSTGRES_IMAGE,
        ports=[k8s.core.v1.ContainerPortArgs(name="postgres", container_port=POSTGRES_PORT)],
        env=[
            k8s.core.v1.EnvVarArgs(name="POSTGRES_DB", value=LEDGER_DATABASE),
            k8s.core.v1.EnvVarArgs(name="POSTGRES_USER", value=LEDGER_USER),
            # A subdirectory: the PVC's root holds lost+found, which initdb refuses.
            k8s.core.v1.EnvVarArgs(name="PGDATA", value="/var/lib/postgresql/data/pgdata"),
            # A file, not an env var: the image reads POSTGRES_PASSWORD_FILE (docker-entrypoint.sh file_env).
            k8s.core.v1.EnvVarArgs(name="POSTGRES_PASSWORD_FILE", value=f"{SECRETS_DIR}/postgres-password"),
        ],
        readiness_probe=probe,
        liveness_probe=probe,
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "100m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "512Mi"}
        ),
        security_context=_security_context(STORE_UID),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="data", mount_path="/var/lib/postgresql/data"),
            # The server's socket directory and temp files: the root filesystem is read-only.
            k8s.core.v1.VolumeMountArgs(name="run", mount_path="/var/run/postgresql"),
            k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
            k8s.core.v1.VolumeMountArgs(name="credentials", mount_path=SECRETS_DIR, read_only=True),
        ],
        image_pull_policy="IfNotPresent",
    )


def valkey_conf(password: str) -> str:
    """Valkey's config file: the password and AOF persistence on the PVC (a file, so the password is in no env
    var and no command line)."""
    return f"requirepass {password}\nappendonly yes\ndir /data\n"


def valkey_container() -> k8s.core.v1.ContainerArgs:
    """Valkey started with its config file from the Secret (valkey_conf)."""
    probe = k8s.core.v1.ProbeArgs(
        tcp_socket=k8s.core.v1.TCPSocketActionArgs(port="valkey"), period_seconds=10, failure_threshold=3
    )
    return k8s.core.v1.ContainerArgs(
        name="valkey",
        image=VALKEY_IMAGE,
        command=["valkey-server"],
        args=[f"{SECRETS_DIR}/valkey.conf"],
        ports=[k8s.core.v1.ContainerPortArgs(name="valkey", container_port=VALKEY_PORT)],
        readiness_probe=probe,
        liveness_probe=probe,
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "50m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
        ),
        security_context=_security_context(STORE_UID),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="data", mount_path="/data"),
            k8s.core.v1.VolumeMountArgs(name="credentials", mount_path=SECRETS_DIR, read_only=True),
        ],
        image_pull_policy="IfNotPresent",
    )


def store_pod_spec(
    container: k8s.core.v1.ContainerArgs,
    extra_volumes: list[str],
    node_selector: dict[str, str] | None,
    secret: str,
    secret_key: str,
) -> k8s.core.v1.PodSpecArgs:
    """The pod of one store; `secret_key` of the Secret is mounted read-only (0440: group fsGroup may read)."""
    credentials = k8s.core.v1.VolumeArgs(
        name="credentials",
        secret=k8s.core.v1.SecretVolumeSourceArgs(
            secret_name=secret,
            items=[k8s.core.v1.KeyToPathArgs(key=secret_key, path=secret_key)],
            default_mode=0o440,
        ),
    )
    return k8s.core.v1.PodSpecArgs(
        automount_service_account_token=False,
        security_context=k8s.core.v1.PodSecurityContextArgs(
            run_as_non_root=True,
            fs_group=STORE_UID,
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        containers=[container],
        node_selector=node_selector,
        volumes=[
            credentials,
            *(
                k8s.core.v1.VolumeArgs(name=volume, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="64Mi"))
                for volume in extra_volumes
            ),
        ],
    )


def store_stateful_set_spec(
    app: str, pod: k8s.core.v1.PodSpecArgs, store: InClusterStore
) -> k8s.apps.v1.StatefulSetSpecArgs:
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/component": "store"}
    return k8s.apps.v1.StatefulSetSpecArgs(
        service_name=app,
        replicas=1,
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
        template=k8s.core.v1.PodTemplateSpecArgs(metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels), spec=pod),
        volume_claim_templates=[
            k8s.core.v1.PersistentVolumeClaimArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(name="data"),
                spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                    access_modes=["ReadWriteOnce"],
                    storage_class_name=store.storage_class,
                    resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                        requests={"storage": f"{store.storage_gib}Gi"}
                    ),
                ),
            )
        ],
    )


def migration_job_spec(args: StoresArgs, secret: str) -> k8s.batch.v1.JobSpecArgs:
    labels = {"app.kubernetes.io/name": MIGRATE_APP, "app.kubernetes.io/component": "migration"}
    container = k8s.core.v1.ContainerArgs(
        name="migrate",
        image=args.image,
        command=MIGRATE_COMMAND,
        env=_secret_env(secret, {"LEDGER_DSN": "ledger-dsn"}),
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
        ),
        security_context=_security_context(GATEWAY_UID),
        image_pull_policy="IfNotPresent",
    )
    return k8s.batch.v1.JobSpecArgs(
        # A database still starting (the in-cluster StatefulSet on a first `up`) fails the first tries.
        backoff_limit=6,
        active_deadline_seconds=900,
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
            spec=k8s.core.v1.PodSpecArgs(
                restart_policy="Never",
                automount_service_account_token=False,
                security_context=k8s.core.v1.PodSecurityContextArgs(
                    run_as_non_root=True, seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")
                ),
                containers=[container],
                node_selector=args.node_selector,
            ),
        ),
    )


def store_ingress_rules(
    args: StoresArgs, port: int, with_migration_and_grafana: bool
) -> list[k8s.networking.v1.NetworkPolicyIngressRuleArgs]:
    """The gateway (and, for PostgreSQL, the migration Job and Grafana) on the store's port; nothing else."""
    selector = k8s.meta.v1.LabelSelectorArgs
    peer = k8s.networking.v1.NetworkPolicyPeerArgs
    peers = [peer(pod_selector=selector(match_labels=args.gateway_labels))]
    if with_migration_and_grafana:
        peers.append(peer(pod_selector=selector(match_labels={"app.kubernetes.io/name": MIGRATE_APP})))
        peers.append(
            peer(
                namespace_selector=selector(match_labels={"kubernetes.io/metadata.name": args.monitoring_namespace}),
                pod_selector=selector(match_labels=args.grafana_labels),
            )
        )
    return [
        k8s.networking.v1.NetworkPolicyIngressRuleArgs(
            from_=peers, ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP")]
        )
    ]


class Stores(pulumi.ComponentResource):
    """In-cluster PostgreSQL/Valkey (when asked), their NetworkPolicies and credentials, and the migration Job."""

    migration_job: k8s.batch.v1.Job | None

    def __init__(self, name: str, args: StoresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:Stores", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args.namespace
        secret_name = f"{name}-credentials"
        secret_data: dict[str, pulumi.Input[str]] = {}
        if args.ledger_dsn is not None:
            secret_data["ledger-dsn"] = args.ledger_dsn
        if args.postgres is not None:
            secret_data["postgres-password"] = args.postgres.password
        if args.valkey is not None:
            secret_data["valkey.conf"] = args.valkey.password.apply(valkey_conf)
        secret = k8s.core.v1.Secret(
            secret_name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=secret_name, namespace=ns),
            type="Opaque",
            string_data={key: pulumi.Output.secret(value) for key, value in sorted(secret_data.items())},
            opts=child,
        )
        after_secret = pulumi.ResourceOptions(parent=self, depends_on=[secret])
        stores: list[pulumi.Resource] = []
        if args.postgres is not None:
            pod = store_pod_spec(
                postgres_container(), ["run", "tmp"], args.node_selector, secret_name, "postgres-password"
            )
            stores += self._store(name, POSTGRES_NAME, POSTGRES_PORT, pod, args.postgres, args, True, after_secret)
        if args.valkey is not None:
            pod = store_pod_spec(valkey_container(), [], args.node_selector, secret_name, "valkey.conf")
            stores += self._store(name, VALKEY_NAME, VALKEY_PORT, pod, args.valkey, args, False, after_secret)
        self.migration_job = None
        if args.ledger_dsn is not None:
            self.migration_job = k8s.batch.v1.Job(
                f"{name}-migrate",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=pulumi.Output.concat(f"{MIGRATE_APP}-", args.migration_id),
                    namespace=ns,
                    labels={"app.kubernetes.io/name": MIGRATE_APP},
                ),
                spec=migration_job_spec(args, secret_name),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[secret, *stores]),
            )
        self.register_outputs({})

    def _store(
        self,
        name: str,
        app: str,
        port: int,
        pod: k8s.core.v1.PodSpecArgs,
        store: InClusterStore,
        args: StoresArgs,
        with_migration_and_grafana: bool,
        opts: pulumi.ResourceOptions,
    ) -> list[pulumi.Resource]:
        ns = args.namespace
        labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/component": "store"}
        meta = k8s.meta.v1.ObjectMetaArgs(name=app, namespace=ns, labels=labels)
        service = k8s.core.v1.Service(
            f"{name}-{app}",
            metadata=meta,
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=labels, ports=[k8s.core.v1.ServicePortArgs(name=app, port=port, target_port=port)]
            ),
            opts=opts,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-{app}-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{app}-ingress", namespace=ns),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                policy_types=["Ingress"],
                ingress=store_ingress_rules(args, port, with_migration_and_grafana),
            ),
            opts=opts,
        )
        stateful_set = k8s.apps.v1.StatefulSet(
            f"{name}-{app}", metadata=meta, spec=store_stateful_set_spec(app, pod, store), opts=opts
        )
        return [service, stateful_set]
