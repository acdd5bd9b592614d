"""What the managed stores cost per month: RDS for PostgreSQL and ElastiCache for Valkey, us-east-1 list prices.

Prices are on-demand USD per hour in us-east-1 from https://aws.amazon.com/rds/postgresql/pricing/ (Single-AZ;
a Multi-AZ instance with one standby bills twice the instance and twice the storage) and
https://aws.amazon.com/elasticache/pricing/ (node-based Valkey, priced 20% below the same Redis OSS node), as
published in 2025 and carried on 2026-12-02 without a re-check (this machine cannot reach the pricing pages): an
estimate to compare stacks, not a quote. In-cluster stores cost their PVC and a share of the system nodes only.
"""

from __future__ import annotations

from typing import Any

from infra.stores_config import CACHE_NODE_TYPES, RDS_INSTANCE_CLASSES, StoresConfig

HOURS_PER_MONTH = 730
RDS_POSTGRES_USD_PER_HOUR: dict[str, float] = {
    "db.t4g.micro": 0.016,
    "db.t4g.small": 0.032,
    "db.t4g.medium": 0.065,
    "db.t4g.large": 0.129,
    "db.m7g.large": 0.168,
    "db.m7g.xlarge": 0.337,
    "db.r7g.large": 0.239,
}
# gp3 storage, Single-AZ, per GiB-month (Multi-AZ doubles it); backup storage up to the database's size is free.
RDS_GP3_USD_PER_GIB_MONTH = 0.115
VALKEY_USD_PER_NODE_HOUR: dict[str, float] = {
    "cache.t4g.micro": 0.0128,
    "cache.t4g.small": 0.0256,
    "cache.t4g.medium": 0.052,
    "cache.m7g.large": 0.1264,
    "cache.r7g.large": 0.1752,
}
assert set(RDS_POSTGRES_USD_PER_HOUR) == set(RDS_INSTANCE_CLASSES)
assert set(VALKEY_USD_PER_NODE_HOUR) == set(CACHE_NODE_TYPES)


def stores_monthly_usd(stores: StoresConfig | None) -> dict[str, Any]:
    """Monthly USD of each managed store and their sum (empty when the stack has none)."""
    result: dict[str, Any] = {}
    if stores is not None and stores.ledger is not None and stores.ledger.rds is not None:
        rds = stores.ledger.rds
        copies = 2 if rds.multi_az else 1
        instance = RDS_POSTGRES_USD_PER_HOUR[rds.instance_class] * HOURS_PER_MONTH
        storage = rds.storage_gib * RDS_GP3_USD_PER_GIB_MONTH
        result["rds_postgres_usd"] = round(copies * (instance + storage), 2)
    if stores is not None and stores.limits is not None and stores.limits.elasticache is not None:
        cache = stores.limits.elasticache
        nodes = 1 + cache.replicas
        result["elasticache_valkey_usd"] = round(nodes * VALKEY_USD_PER_NODE_HOUR[cache.node_type] * HOURS_PER_MONTH, 2)
    if result:
        result["monthly_usd"] = round(sum(result.values()), 2)
    return result
