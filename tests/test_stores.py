"""The gateway's stores (issue 12, infrastructure): RDS/ElastiCache on AWS, StatefulSets in `local`, who reaches
them, the migration Job the gateway waits for, the gateway's ledger/limit_store config, spool volume and credentials,
Grafana's ledger datasource and the stores' cost.

Expected values come from the stack files (read here by hand) and from AWS's documented settings, not from the code
under test."""

from __future__ import annotations

import copy
import json
from typing import Any

import pulumi
import pytest
import yaml

from infra import render
from infra.config import PLATFORM_KEY
from tests.conftest import one, rendered, resources_of

AWS_STACKS = ["dev", "prod", "staging"]
RDS = "aws:rds/instance:Instance"
CACHE = "aws:elasticache/replicationGroup:ReplicationGroup"
RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
GATEWAY_LABELS = {"app.kubernetes.io/name": "llm-gateway", "app.kubernetes.io/component": "gateway"}


def k8s(stack: str, kind: str) -> dict[str, dict[str, Any]]:
    return {
        record.inputs["metadata"]["name"]: record.inputs
        for record in rendered(stack).resources
        if record.type.startswith("kubernetes:") and record.inputs.get("kind") == kind
    }


def gateway_config(stack: str) -> dict[str, Any]:
    text = k8s(stack, "ConfigMap")["llm-gateway-config"]["data"]["config.yaml"]
    return dict(yaml.safe_load(text))


# --- AWS: RDS -----------------------------------------------------------------------------------------------------


def test_prod_ledger_is_multi_az_protected_encrypted_private_and_backed_up_14_days() -> None:
    db = one(rendered("prod"), RDS)
    # stacks/Pulumi.prod.yaml: stores.ledger.rds
    assert (db["engine"], db["engineVersion"], db["instanceClass"], db["allocatedStorage"]) == (
        "postgres",
        "16",
        "db.m7g.large",
        100,
    )
    assert db["multiAz"] is True and db["deletionProtection"] is True
    assert db["storageEncrypted"] is True and db["publiclyAccessible"] is False
    assert db["backupRetentionPeriod"] == 14
    # A protected database leaves a final snapshot when deleted.
    assert db["skipFinalSnapshot"] is False and db["finalSnapshotIdentifier"]
    assert db["password"] == render.SECRET_MARK


@pytest.mark.parametrize(("stack", "multi_az", "retention"), [("staging", False, 7), ("dev", False, 7)])
def test_smaller_stacks_run_a_single_az_ledger_with_a_week_of_backups(
    stack: str, multi_az: bool, retention: int
) -> None:
    db = one(rendered(stack), RDS)
    assert db["multiAz"] is multi_az and db["backupRetentionPeriod"] == retention and db["storageEncrypted"] is True


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_ledger_lives_in_the_private_subnets_and_forces_tls(stack: str) -> None:
    result = rendered(stack)
    subnet_group = one(result, "aws:rds/subnetGroup:SubnetGroup")
    private = sorted(
        record.name for record in resources_of(result, "aws:ec2/subnet:Subnet") if "-private-" in record.name
    )
    assert private and sorted(subnet_group["subnetIds"]) == [f"{name}-id" for name in private]
    parameters = one(result, "aws:rds/parameterGroup:ParameterGroup")
    assert parameters["family"] == "postgres16"
    # https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/PostgreSQL.Concepts.General.SSL.html
    assert {"name": "rds.force_ssl", "value": "1"} in [
        {"name": p["name"], "value": p["value"]} for p in parameters["parameters"]
    ]
    db = one(result, RDS)
    assert db["parameterGroupName"] == parameters["name"] and db["dbSubnetGroupName"] == subnet_group["name"]


# --- AWS: ElastiCache ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "nodes", "failover"), [("prod", 2, True), ("staging", 1, False), ("dev", 1, False)])
def test_limits_run_on_valkey_with_tls_auth_token_and_encryption(stack: str, nodes: int, failover: bool) -> None:
    cache = one(rendered(stack), CACHE)
    assert cache["engine"] == "valkey"
    assert cache["transitEncryptionEnabled"] is True and cache["atRestEncryptionEnabled"] is True
    assert cache["authToken"] == render.SECRET_MARK
    assert cache["numCacheClusters"] == nodes and cache["automaticFailoverEnabled"] is failover


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_store_security_groups_admit_only_the_cluster_security_group_on_their_port(stack: str) -> None:
    result = rendered(stack)
    groups = {record.name: record.inputs for record in resources_of(result, "aws:ec2/securityGroup:SecurityGroup")}
    store_groups = {name for name in groups if name.endswith(("-ledger-db", "-limits-cache"))}
    assert len(store_groups) == 2
    rules = [
        rule.inputs
        for rule in resources_of(result, RULE)
        if rule.inputs["securityGroupId"] != f"sg-llm-serving-{stack}"
    ]
    # The mocks answer the EKS-created cluster security group as sg-<cluster name>.
    by_port = {rule["fromPort"]: rule for rule in rules}
    assert sorted(by_port) == [5432, 6379] and len(rules) == 2
    for port, rule in by_port.items():
        assert rule["toPort"] == port and rule["ipProtocol"] == "tcp"
        assert rule["referencedSecurityGroupId"] == f"sg-llm-serving-{stack}"
        assert "cidrIpv4" not in rule
    db, cache = one(result, RDS), one(result, CACHE)
    assert db["vpcSecurityGroupIds"] == [by_port[5432]["securityGroupId"]]
    assert cache["securityGroupIds"] == [by_port[6379]["securityGroupId"]]


def test_local_has_no_aws_store_but_both_statefulsets_with_volumes() -> None:
    result = rendered("local")
    assert not [record for record in result.resources if record.type.startswith("aws:")]
    sets = k8s("local", "StatefulSet")
    assert sorted(sets) == ["ledger-postgres", "limits-valkey"]
    for stateful_set in sets.values():
        (claim,) = stateful_set["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"  # stacks/Pulumi.local.yaml
        pod = stateful_set["spec"]["template"]["spec"]
        # Credentials come from the Secret as files, never as literal env values.
        assert not [
            env
            for c in pod["containers"]
            for env in c.get("env", [])
            if "PASSWORD" in env["name"] and "value" in env and "FILE" not in env["name"]
        ]
        assert any(volume.get("secret") for volume in pod["volumes"])
    assert not k8s("dev", "StatefulSet").keys() & {"ledger-postgres", "limits-valkey"}


def test_only_the_gateway_the_migration_job_and_grafana_reach_the_in_cluster_stores() -> None:
    policies = k8s("local", "NetworkPolicy")
    postgres = policies["ledger-postgres-ingress"]["spec"]
    (rule,) = postgres["ingress"]
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    peers = rule["from"]
    assert {"podSelector": {"matchLabels": GATEWAY_LABELS}} in peers
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "llm-gateway-migrate"}}} in peers
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}},
    } in peers
    assert len(peers) == 3
    valkey = policies["limits-valkey-ingress"]["spec"]
    assert valkey["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": GATEWAY_LABELS}}], "ports": [{"port": 6379, "protocol": "TCP"}]}
    ]
    # The namespace denies all other ingress already (components/gateway.py).
    assert "default-deny-ingress" in policies


# --- migration Job and the gateway ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", render.stack_names())
def test_the_gateway_deployment_waits_for_the_migration_job(stack: str) -> None:
    result = rendered(stack)
    (job,) = resources_of(result, "kubernetes:batch/v1:Job")
    container = job.inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "llm_gateway", "migrate"]
    assert container["env"] == [
        {"name": "LEDGER_DSN", "valueFrom": {"secretKeyRef": {"key": "ledger-dsn", "name": "llm-stores-credentials"}}}
    ]
    deployment = next(
        record for record in resources_of(result, "kubernetes:apps/v1:Deployment") if record.name == "llm-gateway"
    )
    assert job.urn in deployment.dependencies
    gateway_image = deployment.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["image"] == gateway_image


def _local_with_image(image: str) -> render.RenderResult:
    config = copy.deepcopy(render.read_stack_file("local"))
    config[PLATFORM_KEY]["gateway"]["image"] = image
    return render.run("local", config=config)


def test_a_new_gateway_image_is_a_new_migration_job_and_the_same_image_the_same_job() -> None:
    def job_name(result: render.RenderResult) -> str:
        (job,) = resources_of(result, "kubernetes:batch/v1:Job")
        return str(job.inputs["metadata"]["name"])

    first = job_name(_local_with_image("llm-gateway:0.1.0"))
    assert first.startswith("llm-gateway-migrate-")
    assert job_name(_local_with_image("llm-gateway:0.1.0")) == first
    assert job_name(_local_with_image("llm-gateway:0.2.0")) != first


@pytest.mark.parametrize(
    ("stack", "replicas", "on_failure", "spool_bytes"),
    # stacks/*.yaml: gateway.max_replicas, stores.limits.on_failure, stores.ledger.spool_max_bytes (default 256 MiB)
    [("prod", 10, "open", 256 * 2**20), ("local", 1, "open", 64 * 2**20)],
)
def test_the_gateway_config_names_the_stores(stack: str, replicas: int, on_failure: str, spool_bytes: int) -> None:
    config = gateway_config(stack)
    assert config["ledger"]["dsn_env"] == "LEDGER_DSN" and config["ledger"]["spool_max_bytes"] == spool_bytes
    assert config["limit_store"] == {
        "url_env": "LIMIT_STORE_URL",
        "on_failure": on_failure,
        "timeout_s": 0.05,
        "replicas": replicas,
    }
    pod = k8s(stack, "Deployment")["llm-gateway"]["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "spool"]
    assert config["ledger"]["spool_path"].startswith(mount["mountPath"] + "/")
    (volume,) = [v for v in pod["volumes"] if v["name"] == "spool"]
    limit = volume["emptyDir"]["sizeLimit"]
    assert limit.endswith("Mi") and int(limit[:-2]) * 2**20 >= spool_bytes
    # Hand-worked: 256 MiB x 1.10 = 281.6 -> 282Mi; 64 MiB x 1.10 = 70.4 -> 71Mi.
    assert limit == {256 * 2**20: "282Mi", 64 * 2**20: "71Mi"}[spool_bytes]


@pytest.mark.parametrize("stack", render.stack_names())
def test_the_gateway_reads_dsn_and_url_from_its_secret_and_rolls_when_they_change(stack: str) -> None:
    deployment = k8s(stack, "Deployment")["llm-gateway"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("LEDGER_DSN", "LIMIT_STORE_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"key": name, "name": "llm-gateway-credentials"}
    secret = k8s(stack, "Secret")["llm-gateway-credentials"]
    assert secret["stringData"]["LEDGER_DSN"] == render.SECRET_MARK
    assert "checksum/secret" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_a_rotated_ledger_password_rolls_the_gateway() -> None:
    def checksum(password: str) -> str:
        result = render.run("local", secret_values={"ledgerDbPassword": password})
        deployment = next(r for r in resources_of(result, "kubernetes:apps/v1:Deployment") if r.name == "llm-gateway")
        return str(deployment.inputs["spec"]["template"]["metadata"]["annotations"]["checksum/secret"])

    assert checksum("first-password-aaaaaaaa") != checksum("second-password-bbbbbbbb")


# --- Grafana -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", render.stack_names())
def test_grafana_gets_the_ledger_datasource_as_a_secret_and_the_spend_dashboard(stack: str) -> None:
    secret = k8s(stack, "Secret")["grafana-datasource-ledger"]
    assert secret["metadata"]["namespace"] == "monitoring"
    assert secret["metadata"]["labels"]["grafana_datasource"] == "1"
    assert secret["stringData"] == {"ledger-datasource.yaml": render.SECRET_MARK}
    dashboard = json.loads(k8s(stack, "ConfigMap")["grafana-dashboard-spend"]["data"]["spend.json"])
    assert dashboard["title"] == "Spend by team"


def test_the_spend_dashboard_carries_prod_budgets() -> None:
    dashboard = json.loads(k8s("prod", "ConfigMap")["grafana-dashboard-spend"]["data"]["spend.json"])
    sql = dashboard["panels"][0]["targets"][0]["rawSql"]
    # stacks/Pulumi.prod.yaml: search 2000, support-bot 5000, platform no budget.
    for row in ("('search', 2000.0::numeric)", "('support-bot', 5000.0::numeric)", "('platform', NULL::numeric)"):
        assert row in sql


# --- cost ----------------------------------------------------------------------------------------------------------


def test_prod_stores_cost_is_in_the_estimate() -> None:
    stores = rendered("prod").outputs["cost"]["stores"]
    # Hand-worked, us-east-1 list prices: db.m7g.large $0.168/h x 730 h + 100 GiB x $0.115, twice for Multi-AZ;
    # cache.m7g.large Valkey $0.1264/h x 730 h x 2 nodes.
    assert stores["rds_postgres_usd"] == pytest.approx(2 * (0.168 * 730 + 100 * 0.115), abs=0.005)
    assert stores["elasticache_valkey_usd"] == pytest.approx(2 * 0.1264 * 730, abs=0.005)
    assert "stores" not in rendered("local").outputs["cost"]


def test_summary_shows_the_stores_cost() -> None:
    assert "stores per month: elasticache_valkey_usd=$184.54" in render.summary(rendered("prod"))


# --- credentials ---------------------------------------------------------------------------------------------------


def test_a_ledger_without_its_password_secret_fails_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    original = render.placeholder_secrets

    def without_password(platform_raw: Any) -> dict[str, Any]:
        values = original(platform_raw)
        del values["ledgerDbPassword"]
        return values

    monkeypatch.setattr(render, "placeholder_secrets", without_password)
    with pytest.raises(pulumi.RunError, match=r"llm-serving:ledgerDbPassword"):
        render.run("local")


# --- DSN, URL, datasource (pure builders) --------------------------------------------------------------------------


def test_the_dsn_is_libpq_parsable_with_tls_required_and_the_password_encoded() -> None:
    from urllib.parse import unquote, urlsplit

    from infra.stores_wiring import dsn_text

    dsn = dsn_text("ledger.abc.us-east-1.rds.amazonaws.com", "p@ss/w:rd?", tls=True)
    parts = urlsplit(dsn)
    assert (parts.scheme, parts.username, parts.hostname, parts.port) == (
        "postgresql",
        "llm_gateway",
        "ledger.abc.us-east-1.rds.amazonaws.com",
        5432,
    )
    assert (
        unquote(parts.password or "") == "p@ss/w:rd?" and parts.path == "/ledger" and parts.query == "sslmode=require"
    )
    assert dsn_text("h", "x", tls=False).endswith("?sslmode=disable")


def test_the_limit_store_url_uses_tls_on_aws_and_encodes_the_token() -> None:
    from urllib.parse import unquote, urlsplit

    from infra.stores_wiring import url_text

    parts = urlsplit(url_text("master.limits.cache.amazonaws.com", "tok@en", tls=True))
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "rediss",
        "master.limits.cache.amazonaws.com",
        6379,
        "/0",
    )
    assert unquote(parts.password or "") == "tok@en"
    assert url_text("h", "t", tls=False).startswith("redis://")


def test_the_datasource_file_requires_tls_on_aws_and_keeps_the_password_in_secure_json() -> None:
    from components.spend_dashboard import datasource_provisioning

    (source,) = datasource_provisioning("db.example", 5432, "ledger", "llm_gateway", "pw", tls=True)["datasources"]
    assert source["type"] == "grafana-postgresql-datasource" and source["url"] == "db.example:5432"
    assert source["jsonData"]["sslmode"] == "require" and source["jsonData"]["database"] == "ledger"
    assert source["secureJsonData"] == {"password": "pw"} and "password" not in source


def test_valkey_config_file_sets_the_password_and_persistence() -> None:
    from components.stores import valkey_conf

    assert valkey_conf("s3cret").splitlines() == ["requirepass s3cret", "appendonly yes", "dir /data"]
