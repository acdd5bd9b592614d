"""Wiring of the stack's `stores`: RDS/ElastiCache on AWS or StatefulSets in the cluster, the migration Job, the
gateway's `ledger:` / `limit_store:` sections, its spool volume and the credentials it reads as LEDGER_DSN and
LIMIT_STORE_URL.

Credentials: the PostgreSQL password and the Valkey AUTH token are Pulumi secrets of the stack (`ledgerDbPassword`,
`limitStoreAuthToken`; pulumi_random is not a dependency of this project). The DSN and URL built from them stay
secret outputs and reach pods only through Kubernetes Secrets.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pulumi
import yaml

from components.stores import (
    LEDGER_DATABASE,
    LEDGER_USER,
    POSTGRES_PORT,
    VALKEY_PORT,
    InClusterStore,
    Stores,
    StoresArgs,
    postgres_host,
    valkey_host,
)
from infra.config import PROJECT, PlatformConfig
from infra.secrets import Secrets

if TYPE_CHECKING:
    from components.cluster import Cluster
    from components.network import Network

# The gateway's own names (gateway_image/llm_gateway/config.py LedgerConfig.dsn_env, LimitStoreConfig.url_env).
LEDGER_DSN_ENV = "LEDGER_DSN"
LIMIT_STORE_URL_ENV = "LIMIT_STORE_URL"
# The spool lives on an emptyDir mounted here (the root filesystem is read-only).
SPOOL_DIR = "/var/lib/llm-gateway"
SPOOL_PATH = f"{SPOOL_DIR}/spool"
# Room beyond spool_max_bytes for the spool's segment being written and its index: the kubelet evicts a pod whose
# emptyDir exceeds its sizeLimit, which must never happen before the gateway's own bound stops the spool.
SPOOL_HEADROOM = 1.10
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "gateway_image" / "llm_gateway" / "migrations"


@dataclass
class StoreEndpoints:
    """Hosts of the managed stores (AWS), filled by `wire_aws_stores`; None = in the cluster or absent."""

    postgres_host: pulumi.Output[str] | None = None
    valkey_host: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class GatewayStores:
    """What the gateway Deployment gets from the stores."""

    secret_env: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    spool_dir: str | None = None
    spool_size_limit: str | None = None


@dataclass(frozen=True)
class LedgerAccess:
    """How Grafana reaches the ledger database (its PostgreSQL datasource)."""

    host: pulumi.Input[str]
    password: pulumi.Output[str]
    tls: bool
    budgets: dict[str, float | None]


def gateway_store_sections(platform: PlatformConfig) -> dict[str, Any]:
    """The gateway config's `ledger` and `limit_store` (the gateway's schema; absent = in-memory per pod)."""
    stores = platform.stores
    sections: dict[str, Any] = {}
    if stores is not None and stores.ledger is not None:
        ledger = stores.ledger
        sections["ledger"] = {
            "dsn_env": LEDGER_DSN_ENV,
            "batch_max_rows": ledger.batch_max_rows,
            "batch_max_delay_s": ledger.batch_max_delay_s,
            "spool_path": SPOOL_PATH,
            "spool_max_bytes": ledger.spool_max_bytes,
        }
    if stores is not None and stores.limits is not None:
        limits = stores.limits
        sections["limit_store"] = {
            "url_env": LIMIT_STORE_URL_ENV,
            "on_failure": limits.on_failure,
            "timeout_s": limits.timeout_s,
            # Failing open, each replica enforces limit / replicas locally: the HPA's ceiling, so the fleet stays
            # within the limit in total even at its largest (a smaller fleet is stricter while the store is away).
            "replicas": max(platform.gateway.max_replicas, platform.gateway.replicas),
        }
    return sections


def spool_size_limit(spool_max_bytes: int) -> str:
    """The emptyDir's sizeLimit in MiB: the spool's bound plus headroom."""
    return f"{math.ceil(spool_max_bytes * SPOOL_HEADROOM / 2**20)}Mi"


def dsn_text(host: str, password: str, tls: bool) -> str:
    """libpq's URI form (https://www.postgresql.org/docs/16/libpq-connect.html#LIBPQ-CONNSTRING-URIS), the password
    percent-encoded. RDS forces TLS (rds.force_ssl); the in-cluster server has no certificate, and its traffic stays
    in the cluster behind a NetworkPolicy."""
    sslmode = "require" if tls else "disable"
    return (
        f"postgresql://{LEDGER_USER}:{quote(password, safe='')}@{host}:{POSTGRES_PORT}/{LEDGER_DATABASE}"
        f"?sslmode={sslmode}"
    )


def url_text(host: str, token: str, tls: bool) -> str:
    """redis-py's URL form (`rediss://` = TLS; the AUTH password after the colon, percent-encoded), database 0."""
    return f"{'rediss' if tls else 'redis'}://:{quote(token, safe='')}@{host}:{VALKEY_PORT}/0"


def ledger_dsn(host: pulumi.Input[str], password: pulumi.Output[str], tls: bool) -> pulumi.Output[str]:
    return pulumi.Output.secret(
        pulumi.Output.all(host, password).apply(lambda parts: dsn_text(str(parts[0]), str(parts[1]), tls))
    )


def limit_store_url(host: pulumi.Input[str], token: pulumi.Output[str], tls: bool) -> pulumi.Output[str]:
    return pulumi.Output.secret(
        pulumi.Output.all(host, token).apply(lambda parts: url_text(str(parts[0]), str(parts[1]), tls))
    )


def migrations_digest() -> str:
    """SHA-256 over the gateway's migration files (empty when the package has none yet)."""
    digest = hashlib.sha256()
    if MIGRATIONS_DIR.is_dir():
        for path in sorted(p for p in MIGRATIONS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(MIGRATIONS_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def migration_id(image: pulumi.Input[str]) -> pulumi.Output[str]:
    """10 hex digits of the image reference and the migrations: a new version of either is a new Job name."""
    migrations = migrations_digest()
    return pulumi.Output.from_input(image).apply(
        lambda ref: hashlib.sha256(f"{ref}\0{migrations}".encode()).hexdigest()[:10]
    )


def _required(value: pulumi.Output[str] | None, key: str, what: str) -> pulumi.Output[str]:
    if value is None:
        raise pulumi.RunError(
            f"stack {pulumi.get_stack()!r}: {what} needs secret {PROJECT}:{key}: pulumi config set --secret "
            f"{PROJECT}:{key} \"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\""
        )
    return value


def wire_aws_stores(
    platform: PlatformConfig,
    secrets: Secrets,
    network: Network,
    cluster: Cluster,
    provider: pulumi.ProviderResource,
    tags: dict[str, str],
) -> StoreEndpoints:
    """RDS and ElastiCache for the stores the stack wants managed; their hosts for the Kubernetes side."""
    from components.aws_stores import AwsStores, AwsStoresArgs, RdsArgs, ValkeyArgs

    stores = platform.stores
    rds = stores.ledger.rds if stores is not None and stores.ledger is not None else None
    cache = stores.limits.elasticache if stores is not None and stores.limits is not None else None
    if rds is None and cache is None:
        return StoreEndpoints()
    postgres = None
    if rds is not None:
        password = _required(secrets.ledger_db_password, "ledgerDbPassword", "stores.ledger.rds")
        postgres = RdsArgs(**rds.model_dump(), password=password)
    valkey = None
    if cache is not None:
        token = _required(secrets.limit_store_auth_token, "limitStoreAuthToken", "stores.limits.elasticache")
        valkey = ValkeyArgs(**cache.model_dump(), auth_token=token)
    component = AwsStores(
        f"{PROJECT}-{platform.environment}",
        AwsStoresArgs(
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            cluster_security_group_id=cluster.cluster_security_group_id,
            postgres=postgres,
            valkey=valkey,
            tags=tags,
        ),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )
    return StoreEndpoints(postgres_host=component.postgres_address, valkey_host=component.valkey_address)


def _in_cluster(storage_gib: int, storage_class: str | None, password: pulumi.Output[str]) -> InClusterStore:
    return InClusterStore(storage_gib=storage_gib, storage_class=storage_class, password=password)


def wire_gateway_stores(
    platform: PlatformConfig,
    secrets: Secrets,
    opts: pulumi.ResourceOptions,
    image: pulumi.Input[str],
    endpoints: StoreEndpoints,
    gateway_labels: dict[str, str],
    node_selector: dict[str, str] | None,
) -> GatewayStores:
    """The Kubernetes side of the stores; what the gateway Deployment needs from them."""
    stores = platform.stores
    if stores is None or (stores.ledger is None and stores.limits is None):
        return GatewayStores()
    ns = platform.namespace
    secret_env: dict[str, pulumi.Output[str]] = {}
    postgres = valkey = None
    dsn = None
    if stores.ledger is not None:
        password = _required(secrets.ledger_db_password, "ledgerDbPassword", "stores.ledger")
        host = endpoints.postgres_host or postgres_host(ns)
        dsn = secret_env[LEDGER_DSN_ENV] = ledger_dsn(host, password, tls=endpoints.postgres_host is not None)
        if stores.ledger.in_cluster is not None:
            postgres = _in_cluster(
                stores.ledger.in_cluster.storage_gib, stores.ledger.in_cluster.storage_class, password
            )
    if stores.limits is not None:
        token = _required(secrets.limit_store_auth_token, "limitStoreAuthToken", "stores.limits")
        host = endpoints.valkey_host or valkey_host(ns)
        secret_env[LIMIT_STORE_URL_ENV] = limit_store_url(host, token, tls=endpoints.valkey_host is not None)
        if stores.limits.in_cluster is not None:
            valkey = _in_cluster(stores.limits.in_cluster.storage_gib, stores.limits.in_cluster.storage_class, token)
    component = Stores(
        "llm-stores",
        StoresArgs(
            namespace=ns,
            image=image,
            migration_id=migration_id(image),
            gateway_labels=gateway_labels,
            ledger_dsn=dsn,
            postgres=postgres,
            valkey=valkey,
            node_selector=node_selector,
        ),
        opts=opts,
    )
    ledger = stores.ledger
    return GatewayStores(
        secret_env=secret_env,
        depends_on=[component.migration_job] if component.migration_job is not None else [],
        spool_dir=SPOOL_DIR if ledger is not None else None,
        spool_size_limit=spool_size_limit(ledger.spool_max_bytes) if ledger is not None else None,
    )


def ledger_access(platform: PlatformConfig, secrets: Secrets, endpoints: StoreEndpoints) -> LedgerAccess | None:
    """Grafana's way to the ledger (None without one): the same user as the gateway (see docs/stores.md)."""
    if platform.stores is None or platform.stores.ledger is None:
        return None
    password = _required(secrets.ledger_db_password, "ledgerDbPassword", "stores.ledger")
    host = endpoints.postgres_host or postgres_host(platform.namespace)
    budgets = {team.name: team.monthly_budget_usd for team in platform.gateway.teams}
    return LedgerAccess(host=host, password=password, tls=endpoints.postgres_host is not None, budgets=budgets)


def ledger_view(ledger: LedgerAccess | None) -> dict[str, Any]:
    """MonitoringArgs' `ledger_datasource_yaml` and `spend_dashboard` (nothing without a ledger)."""
    if ledger is None:
        return {}
    from components.spend_dashboard import datasource_provisioning, spend_dashboard

    yaml_text = pulumi.Output.all(ledger.host, ledger.password).apply(
        lambda parts: yaml.safe_dump(
            datasource_provisioning(
                str(parts[0]), POSTGRES_PORT, LEDGER_DATABASE, LEDGER_USER, str(parts[1]), ledger.tls
            ),
            sort_keys=True,
        )
    )
    return {
        "ledger_datasource_yaml": pulumi.Output.secret(yaml_text),
        "spend_dashboard": spend_dashboard(ledger.budgets),
    }
