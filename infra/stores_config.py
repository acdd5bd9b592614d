"""The stack's `stores` section: where the gateway's usage ledger (PostgreSQL) and shared limits (Valkey) live.

A top-level section rather than keys under `gateway`: the stores are infrastructure of their own (RDS, ElastiCache,
or StatefulSets), read by more than the gateway (the migration Job, Grafana's "Spend by team" dashboard), and sized
and priced like the node groups. The gateway's own knobs (`on_failure`, batch sizes) sit next to the store they
concern, and are rendered into the gateway's `ledger:` / `limit_store:` (infra/stores_wiring.py).

Each store is exactly one of a managed AWS service (`rds`, `elasticache`: needs `aws` and `network`) or
`in_cluster` (a StatefulSet with a PVC: the `local` stack, or a cheap dev stack).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# RDS for PostgreSQL major versions in standard support (https://docs.aws.amazon.com/AmazonRDS/latest/
# PostgreSQLReleaseNotes/postgresql-release-calendar.html, read 2026-12-02). The gateway's SQL needs nothing newer
# than 13 (ON CONFLICT, numeric, timestamptz).
RDS_POSTGRES_MAJORS = ("14", "15", "16", "17")
# The RDS instance classes and ElastiCache node types the cost estimate knows (infra/stores_cost.py).
RDS_INSTANCE_CLASSES = (
    "db.t4g.micro",
    "db.t4g.small",
    "db.t4g.medium",
    "db.t4g.large",
    "db.m7g.large",
    "db.m7g.xlarge",
    "db.r7g.large",
)
CACHE_NODE_TYPES = ("cache.t4g.micro", "cache.t4g.small", "cache.t4g.medium", "cache.m7g.large", "cache.r7g.large")


class _Strict(BaseModel):
    """Like infra.config.Strict (which imports this module): unknown keys are errors, nothing is coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RdsPostgresConfig(_Strict):
    """An RDS for PostgreSQL instance in the stack's private subnets, encrypted, SSL forced."""

    engine_version: str = Field(
        default="16",
        description=f"Major version (RDS picks its latest minor): one of {', '.join(RDS_POSTGRES_MAJORS)}.",
    )
    instance_class: str = Field(default="db.t4g.small", description=f"One of {', '.join(RDS_INSTANCE_CLASSES)}.")
    storage_gib: int = Field(
        default=20, ge=20, le=1000, description="gp3 storage; RDS's minimum for gp3 is 20 GiB. Autoscales to 2x."
    )
    multi_az: bool = Field(default=False, description="A synchronous standby in another AZ (prod).")
    backup_retention_days: int = Field(
        default=7, ge=7, le=35, description="Automated backups kept this many days (RDS allows up to 35)."
    )
    deletion_protection: bool = Field(default=False, description="Refuse to delete the instance (prod).")

    @field_validator("engine_version")
    @classmethod
    def _major(cls, value: str) -> str:
        if value not in RDS_POSTGRES_MAJORS:
            raise ValueError(f"unsupported major {value!r}; accepted: {', '.join(RDS_POSTGRES_MAJORS)}")
        return value

    @field_validator("instance_class")
    @classmethod
    def _class(cls, value: str) -> str:
        if value not in RDS_INSTANCE_CLASSES:
            raise ValueError(f"unknown instance class {value!r}; accepted: {', '.join(RDS_INSTANCE_CLASSES)}")
        return value


class ElastiCacheValkeyConfig(_Strict):
    """An ElastiCache for Valkey replication group: TLS in transit, an auth token, encryption at rest."""

    engine_version: Literal["7.2", "8.0"] = Field(default="8.0", description="Valkey version.")
    node_type: str = Field(default="cache.t4g.small", description=f"One of {', '.join(CACHE_NODE_TYPES)}.")
    replicas: int = Field(
        default=0, ge=0, le=5, description="Read replicas besides the primary; >= 1 enables automatic failover."
    )

    @field_validator("node_type")
    @classmethod
    def _node_type(cls, value: str) -> str:
        if value not in CACHE_NODE_TYPES:
            raise ValueError(f"unknown node type {value!r}; accepted: {', '.join(CACHE_NODE_TYPES)}")
        return value


class InClusterStoreConfig(_Strict):
    """A single-replica StatefulSet with a PVC (no failover: for `local` and cheap dev stacks)."""

    storage_gib: int = Field(default=1, ge=1, le=500, description="Size of the PVC.")
    storage_class: str | None = Field(default=None, description="StorageClass of the PVC; None = cluster default.")


class LedgerStoreConfig(_Strict):
    """The usage ledger's PostgreSQL: exactly one of `rds` or `in_cluster`."""

    rds: RdsPostgresConfig | None = None
    in_cluster: InClusterStoreConfig | None = None
    batch_max_rows: int = Field(default=500, ge=1, le=10_000, description="Rows per insert at most (gateway).")
    batch_max_delay_s: float = Field(default=1.0, gt=0, le=60, description="Longest a row waits for its batch.")
    spool_max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        le=8 * 1024**3,
        description="Bound of the pod's spool while PostgreSQL is away; the pod's emptyDir is sized to hold it.",
    )

    @model_validator(mode="after")
    def _one_store(self) -> LedgerStoreConfig:
        if (self.rds is None) == (self.in_cluster is None):
            raise ValueError("a ledger needs exactly one store: `rds` (AWS) or `in_cluster` (a StatefulSet)")
        return self


class LimitStoreConfig(_Strict):
    """The shared limits' Valkey: exactly one of `elasticache` or `in_cluster`."""

    elasticache: ElastiCacheValkeyConfig | None = None
    in_cluster: InClusterStoreConfig | None = None
    on_failure: Literal["open", "closed"] = Field(
        default="open",
        description="Store unreachable: open = each gateway replica enforces its share locally; closed = 503.",
    )
    timeout_s: float = Field(default=0.05, gt=0, le=5, description="Timeout of one call to the store.")

    @model_validator(mode="after")
    def _one_store(self) -> LimitStoreConfig:
        if (self.elasticache is None) == (self.in_cluster is None):
            raise ValueError("a limit store needs exactly one of `elasticache` (AWS) or `in_cluster` (a StatefulSet)")
        return self


class StoresConfig(_Strict):
    """The gateway's durable stores. Either may be absent: the gateway then keeps that state in memory per pod."""

    ledger: LedgerStoreConfig | None = Field(default=None, description="Usage ledger on PostgreSQL.")
    limits: LimitStoreConfig | None = Field(default=None, description="Fleet-wide limits on Valkey.")


def stores_problems(platform_key: str, stores: StoresConfig | None, has_aws: bool, has_network: bool) -> list[str]:
    """Cross-section checks: a managed store needs AWS and a VPC."""
    if stores is None:
        return []
    managed = []
    if stores.ledger is not None and stores.ledger.rds is not None:
        managed.append("stores.ledger.rds")
    if stores.limits is not None and stores.limits.elasticache is not None:
        managed.append("stores.limits.elasticache")
    if has_aws and has_network:
        return []
    return [
        f"{platform_key}.{path}: a managed AWS store needs `aws` and a `network` (private subnets); accepted: "
        f"`in_cluster` in a stack without AWS"
        for path in managed
    ]
