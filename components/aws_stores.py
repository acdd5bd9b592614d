"""The gateway's managed stores on AWS: RDS for PostgreSQL (usage ledger) and ElastiCache for Valkey (shared limits).

Both sit in the stack's private subnets behind a security group that admits only the EKS cluster security group on
the store's port: EKS puts that group on every managed node group's nodes that use no custom launch-template
security groups (https://docs.aws.amazon.com/eks/latest/userguide/sec-group-reqs.html), so the gateway, the
migration Job and Grafana reach the stores and nothing outside the cluster does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws.ec2 as ec2
import pulumi_aws.elasticache as elasticache
import pulumi_aws.rds as rds
import pulumi_aws.vpc as vpc

POSTGRES_PORT = 5432
VALKEY_PORT = 6379
LEDGER_DATABASE = "ledger"
LEDGER_USER = "llm_gateway"


@dataclass(frozen=True)
class RdsArgs:
    engine_version: str  # major version, e.g. "16"
    instance_class: str
    storage_gib: int
    multi_az: bool
    backup_retention_days: int
    deletion_protection: bool
    password: pulumi.Output[str]


@dataclass(frozen=True)
class ValkeyArgs:
    engine_version: str  # e.g. "8.0"
    node_type: str
    replicas: int
    auth_token: pulumi.Output[str]


@dataclass(frozen=True)
class AwsStoresArgs:
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    # The EKS cluster security group (on every node): the only source the stores admit.
    cluster_security_group_id: pulumi.Input[str]
    postgres: RdsArgs | None = None
    valkey: ValkeyArgs | None = None
    tags: dict[str, str] = field(default_factory=dict)


def parameter_group_family(major: str) -> str:
    """RDS's parameter group family of a PostgreSQL major ("postgres16"; `aws rds describe-db-engine-versions`)."""
    return f"postgres{major}"


def valkey_parameter_family(version: str) -> str:
    """ElastiCache's family of a Valkey version ("valkey8", "valkey7": the default.valkey8 group's family)."""
    return f"valkey{version.split('.')[0]}"


class AwsStores(pulumi.ComponentResource):
    """RDS PostgreSQL and/or ElastiCache Valkey, each with its subnet group and a security group for the cluster."""

    postgres_address: pulumi.Output[str] | None
    valkey_address: pulumi.Output[str] | None

    def __init__(self, name: str, args: AwsStoresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:AwsStores", name, None, opts)
        self.postgres_address = None
        self.valkey_address = None
        if args.postgres is not None:
            self.postgres_address = self._postgres(f"{name}-ledger", args, args.postgres)
        if args.valkey is not None:
            self.valkey_address = self._valkey(f"{name}-limits", args, args.valkey)
        self.register_outputs({})

    def _security_group(self, name: str, args: AwsStoresArgs, port: int, what: str) -> ec2.SecurityGroup:
        child = pulumi.ResourceOptions(parent=self)
        group = ec2.SecurityGroup(
            name,
            name=name,
            description=f"{what}: only the EKS cluster security group, on {port}",
            vpc_id=args.vpc_id,
            tags={**args.tags, "Name": name},
            opts=child,
        )
        vpc.SecurityGroupIngressRule(
            f"{name}-from-cluster",
            security_group_id=group.id,
            referenced_security_group_id=args.cluster_security_group_id,
            description=f"{what} from the cluster's nodes and pods",
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            tags=args.tags,
            opts=child,
        )
        return group

    def _postgres(self, name: str, args: AwsStoresArgs, db: RdsArgs) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        group = self._security_group(f"{name}-db", args, POSTGRES_PORT, "ledger PostgreSQL")
        subnets = rds.SubnetGroup(
            f"{name}-db", name=f"{name}-db", subnet_ids=args.private_subnet_ids, tags=args.tags, opts=child
        )
        parameters = rds.ParameterGroup(
            f"{name}-db",
            name=f"{name}-db",
            family=parameter_group_family(db.engine_version),
            description="Ledger PostgreSQL: TLS required, slow statements logged",
            parameters=[
                # Refuse clients without TLS (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/
                # PostgreSQL.Concepts.General.SSL.html: rds.force_ssl); the default is 1 only from PostgreSQL 15.
                rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1"),
                rds.ParameterGroupParameterArgs(name="log_min_duration_statement", value="1000"),
            ],
            tags=args.tags,
            opts=child,
        )
        instance = rds.Instance(
            f"{name}-db",
            identifier=f"{name}-db",
            engine="postgres",
            engine_version=db.engine_version,
            instance_class=db.instance_class,
            allocated_storage=db.storage_gib,
            # Storage autoscaling up to twice the configured size: a full disk stops the ledger.
            max_allocated_storage=2 * db.storage_gib,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=LEDGER_DATABASE,
            username=LEDGER_USER,
            # A Pulumi secret of the stack (ledgerDbPassword), not an RDS-managed secret: RDS rotates its managed
            # secret every 7 days, which would leave the DSN in the gateway's Kubernetes Secret stale.
            password=db.password,
            db_subnet_group_name=subnets.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[group.id],
            publicly_accessible=False,
            multi_az=db.multi_az,
            backup_retention_period=db.backup_retention_days,
            deletion_protection=db.deletion_protection,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            # A deleted ledger leaves a final snapshot (only skipped where nothing protects it: dev).
            skip_final_snapshot=not db.deletion_protection,
            final_snapshot_identifier=f"{name}-db-final" if db.deletion_protection else None,
            enabled_cloudwatch_logs_exports=["postgresql"],
            performance_insights_enabled=True,
            iam_database_authentication_enabled=True,
            tags=args.tags,
            opts=child,
        )
        return instance.address

    def _valkey(self, name: str, args: AwsStoresArgs, cache: ValkeyArgs) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        group = self._security_group(f"{name}-cache", args, VALKEY_PORT, "limits Valkey")
        subnets = elasticache.SubnetGroup(
            f"{name}-cache",
            name=f"{name}-cache",
            description="private subnets of the stack",
            subnet_ids=args.private_subnet_ids,
            tags=args.tags,
            opts=child,
        )
        failover = cache.replicas >= 1
        replication_group = elasticache.ReplicationGroup(
            f"{name}-cache",
            replication_group_id=f"{name}-cache",
            description="Shared limits of the LLM gateway (one counter set for the whole fleet)",
            engine="valkey",
            engine_version=cache.engine_version,
            parameter_group_name=f"default.{valkey_parameter_family(cache.engine_version)}",
            node_type=cache.node_type,
            num_cache_clusters=1 + cache.replicas,
            automatic_failover_enabled=failover,
            multi_az_enabled=failover,
            port=VALKEY_PORT,
            subnet_group_name=subnets.name,
            security_group_ids=[group.id],
            # TLS in transit and an AUTH token (which ElastiCache accepts only with TLS on).
            transit_encryption_enabled=True,
            auth_token=cache.auth_token,
            at_rest_encryption_enabled=True,
            # Month-to-date counters are rebuilt from the ledger if lost; a daily snapshot shortens that.
            snapshot_retention_limit=1,
            auto_minor_version_upgrade=True,
            tags=args.tags,
            opts=child,
        )
        return replication_group.primary_endpoint_address
