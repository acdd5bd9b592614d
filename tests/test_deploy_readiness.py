"""What a first real `pulumi up` needs beyond a valid render (issue 9, AWS side): no example values reach AWS,
prod has a way in to its private API server, resources wait for what they need, the weight volumes deliver the
planner's read rate, and the cluster's version and upgrade policy are ones EKS will keep and bill as estimated."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import kubernetes_validate.utils
import pulumi
import pytest

from infra import eks_versions, render
from infra.capacity import STARTUP_READ_BYTES_PER_SECOND
from infra.config import KUBERNETES_VERSIONS, PLATFORM_KEY, ConfigError
from infra.placeholders import cluster_version_problems, placeholder_problems
from infra.planning import cost_outputs
from infra.program import refuse_placeholders
from infra.storage import gp3_problems
from infra.validation import parse_platform
from tests.conftest import one, rendered, resources_of

MIB = 2**20


def _config(stack: str) -> dict[str, Any]:
    return copy.deepcopy(render.read_stack_file(stack))


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    registered: list[str] = []
    original = render.RecordingMonitor.RegisterResource

    def counting(self: render.RecordingMonitor, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            registered.append(request.type)
        return original(self, request)

    monkeypatch.setattr(render.RecordingMonitor, "RegisterResource", counting)
    return registered


# --- placeholders (issue 9, item 5) -----------------------------------------------------------------------------

# (stack, key path, value) that each stack file carries as an example and a real run must refuse.
EXAMPLE_VALUES = [
    ("dev", "cluster.public_access_cidrs[0]", "'203.0.113.0/24'"),
    ("staging", "cluster.public_access_cidrs[0]", "'203.0.113.0/24'"),
    ("prod", "cluster.private_access_cidrs[0]", "'198.51.100.0/24'"),
    (
        "prod",
        "gateway.ingress.certificate_arn",
        "'arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000'",
    ),
]
# A gateway image in a real account, for tests that want only one example value left.
REAL_IMAGE = "210987654321.dkr.ecr.us-east-1.amazonaws.com/llm-gateway:0.1.0"


@pytest.mark.parametrize(("stack", "key_path", "value"), EXAMPLE_VALUES)
def test_a_real_run_refuses_the_stack_files_example_values_before_registering_anything(
    monkeypatch: pytest.MonkeyPatch, stack: str, key_path: str, value: str
) -> None:
    registered = _counting(monkeypatch)
    with pytest.raises(pulumi.RunError) as caught:
        render.run(stack, allow_placeholders=False)
    assert registered == []
    message = str(caught.value)
    assert message.startswith(f"stack {stack!r}: ")
    line = next(line for line in message.splitlines() if f"{PLATFORM_KEY}.{key_path} = {value}" in line)
    assert "; set " in line, f"the line must say what to set: {line}"


def test_the_offline_render_keeps_rendering_the_example_values() -> None:
    dev = one(rendered("dev"), "aws:eks/cluster:Cluster")
    assert dev["vpcConfig"]["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_a_real_run_with_real_values_goes_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    registered = _counting(monkeypatch)
    config = _config("dev")
    config[PLATFORM_KEY]["cluster"]["public_access_cidrs"] = ["81.2.69.0/24"]
    config[PLATFORM_KEY]["gateway"]["image"] = REAL_IMAGE
    render.run("dev", config=config, allow_placeholders=False)
    assert "aws:eks/cluster:Cluster" in registered


@pytest.mark.parametrize(
    ("path", "value"),
    [
        # Any field: an ECR image of AWS's example account (the gateway image is not special-cased).
        (("gateway", "image"), "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-gateway:0.1.0"),
        # A host inside TEST-NET-1 (RFC 5737), not only the whole /24.
        (("cluster", "public_access_cidrs"), ["192.0.2.7/32"]),
        (("aws", "tags", "owner-account"), "arn:aws:iam::123456789012:root"),
    ],
)
def test_placeholders_are_found_in_any_field(path: tuple[str, ...], value: Any) -> None:
    raw = _config("staging")[PLATFORM_KEY]
    raw["cluster"]["public_access_cidrs"] = ["81.2.69.0/24"]
    raw["gateway"]["image"] = REAL_IMAGE
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    problems = placeholder_problems(parse_platform("staging", raw))
    expected_path = ".".join(path) + ("[0]" if isinstance(value, list) else "")
    assert [problem.split(" = ")[0] for problem in problems] == [f"{PLATFORM_KEY}.{expected_path}"]


def test_real_looking_values_are_not_placeholders() -> None:
    raw = _config("prod")[PLATFORM_KEY]
    raw["cluster"]["private_access_cidrs"] = ["10.8.0.0/16", "192.0.3.0/24"]
    raw["gateway"]["ingress"]["certificate_arn"] = (
        "arn:aws:acm:us-east-1:210987654321:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
    )
    raw["gateway"]["image"] = REAL_IMAGE
    assert placeholder_problems(parse_platform("prod", raw)) == []


# --- prod's way in ------------------------------------------------------------------------------------------------


def _api_rules(result: render.RenderResult) -> list[render.Recorded]:
    """Ingress rules of the cluster security group (the mocks answer sg-<cluster name>), not of the stores' groups."""
    rules = resources_of(result, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    return [rule for rule in rules if rule.inputs["securityGroupId"].startswith("sg-")]


def test_prod_private_endpoint_admits_the_configured_network_on_443_through_the_cluster_security_group() -> None:
    result = rendered("prod")
    rules = _api_rules(result)
    assert [rule.inputs["cidrIpv4"] for rule in rules] == ["198.51.100.0/24"]
    rule = rules[0].inputs
    assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 443, 443)
    # The mocks answer the EKS-created cluster security group as sg-<cluster name>.
    assert rule["securityGroupId"] == "sg-llm-serving-prod"


def test_a_runner_security_group_gets_its_own_rule() -> None:
    config = _config("prod")
    config[PLATFORM_KEY]["cluster"]["private_access_security_group_ids"] = ["sg-0123456789abcdef0"]
    rules = _api_rules(render.run("prod", config=config))
    assert sorted(rule.inputs.get("referencedSecurityGroupId", "") for rule in rules) == ["", "sg-0123456789abcdef0"]


def test_a_private_only_endpoint_without_a_way_in_is_bad_config() -> None:
    raw = _config("prod")[PLATFORM_KEY]
    del raw["cluster"]["private_access_cidrs"]
    with pytest.raises(ConfigError) as caught:
        parse_platform("prod", raw)
    (line,) = caught.value.problems
    assert line.startswith(f"{PLATFORM_KEY}.cluster = ")
    assert "private_access_cidrs" in line and "private_access_security_group_ids" in line


# --- explicit dependencies (item 8, AWS part) --------------------------------------------------------------------


def _urn(result: render.RenderResult, type_: str, name: str) -> str:
    (record,) = [record for record in result.resources if record.type == type_ and record.name == name]
    return record.urn


@pytest.mark.parametrize(
    ("stack", "group"), [("prod", "llm-serving-prod-gpu-l40s-x4"), ("dev", "llm-serving-dev-system")]
)
def test_node_groups_wait_for_every_policy_attachment_of_their_role(stack: str, group: str) -> None:
    result = rendered(stack)
    (node_group,) = [r for r in resources_of(result, "aws:eks/nodeGroup:NodeGroup") if r.name == group]
    attachments = [
        record.urn
        for record in resources_of(result, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if record.name.startswith(f"{group}-")
    ]
    assert len(attachments) == 3
    assert set(attachments) <= set(node_group.dependencies)


def test_karpenter_nodes_access_entry_waits_for_every_policy_attachment_of_their_role() -> None:
    # Nodes Karpenter launches join through the access entry: it must not exist before their role can join.
    result = rendered("dev")
    (entry,) = resources_of(result, "aws:eks/accessEntry:AccessEntry")
    attachments = [
        record.urn
        for record in resources_of(result, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if record.inputs["role"] == "llm-serving-dev-karpenter-node-role"
    ]
    assert len(attachments) == 3
    assert set(attachments) <= set(entry.dependencies)


@pytest.mark.parametrize(
    ("stack", "model", "group_type", "group"),
    [
        # A Karpenter pool: the NodePool (its nodes come when the pods ask).
        ("staging", "llama-3-1-8b", "kubernetes:karpenter.sh/v1:NodePool", "llm-serving-staging-gpu-l40s-node-pool"),
        ("prod", "llama-3-3-70b", "aws:eks/nodeGroup:NodeGroup", "llm-serving-prod-gpu-l40s-x4"),
    ],
)
def test_vllm_workloads_wait_for_their_gpu_nodes_the_device_plugin_and_the_gp3_storage_class(
    stack: str, model: str, group_type: str, group: str
) -> None:
    result = rendered(stack)
    (deployment,) = [r for r in resources_of(result, "llm-serving:index:VllmDeployment") if r.name == model]
    plugin_daemonsets = [
        record.urn
        for record in resources_of(result, "kubernetes:apps/v1:DaemonSet")
        if "nvidia-device-plugin" in record.urn.split("::")[-1] or "nvidia-device-plugin" in record.parent
    ]
    assert plugin_daemonsets
    expected = {
        _urn(result, group_type, group),
        _urn(result, "kubernetes:storage.k8s.io/v1:StorageClass", "gp3"),
        *plugin_daemonsets,
    }
    assert expected <= set(deployment.dependencies)


def test_the_ebs_csi_addon_waits_for_its_policy_and_for_nodes_to_run_on() -> None:
    result = rendered("staging")
    (addon,) = [r for r in resources_of(result, "aws:eks/addon:Addon") if r.inputs["addonName"] == "aws-ebs-csi-driver"]
    assert _urn(result, "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "llm-serving-staging-ebs-csi-policy") in (
        addon.dependencies
    )
    assert _urn(result, "aws:eks/nodeGroup:NodeGroup", "llm-serving-staging-system") in addon.dependencies


# --- gp3 throughput (item 9) -------------------------------------------------------------------------------------


def test_the_gp3_rules_as_the_ebs_docs_state_them() -> None:
    # Hand-worked from the EBS User Guide: 0.25 MiB/s per IOPS, so 1,000 MiB/s needs 4,000 IOPS.
    assert gp3_problems(250, 3000) == []
    assert gp3_problems(1000, 4000) == []
    assert any("4000 IOPS" in problem for problem in gp3_problems(1000, 3000))
    assert gp3_problems(124, 3000) and gp3_problems(250, 2999)


def test_weight_volumes_are_provisioned_at_the_rate_the_start_up_budget_assumes() -> None:
    for stack in ("dev", "staging", "prod"):
        result = rendered(stack)
        (storage_class,) = [obj for obj in result.kubernetes_objects() if obj["kind"] == "StorageClass"]
        parameters = storage_class["parameters"]
        # 250 MiB/s: twice gp3's 125 MiB/s baseline; 3,000 IOPS, the free baseline, allows up to 750 MiB/s.
        assert (parameters["throughput"], parameters["iops"]) == ("250", "3000")
        assert int(parameters["throughput"]) * MIB == STARTUP_READ_BYTES_PER_SECOND
        assert gp3_problems(int(parameters["throughput"]), int(parameters["iops"])) == []
        for template in resources_of(result, "aws:ec2/launchTemplate:LaunchTemplate"):
            ebs = template.inputs["blockDeviceMappings"][0]["ebs"]
            if "-gpu-" in template.name:
                assert (ebs["throughput"], ebs["iops"]) == (250, 3000)
                assert gp3_problems(ebs["throughput"], ebs["iops"], ebs["volumeSize"]) == []
            else:
                assert "throughput" not in ebs, "system nodes read no weights: gp3's baseline is enough"


# --- versions, upgrade policy and the control-plane fee (item 11) -----------------------------------------------


def test_every_accepted_version_has_schemas_in_the_bundled_validator() -> None:
    for version in KUBERNETES_VERSIONS:
        assert kubernetes_validate.utils.major_minor(version) in [
            kubernetes_validate.utils.major_minor(known) for known in kubernetes_validate.utils.all_versions()
        ], version


def test_support_phases_follow_the_eks_calendar() -> None:
    # Calendar (kubernetes-versions.adoc): 1.33 standard support ends 2026-07-29, 1.34 on 2026-12-02, extended
    # support of 1.31 on 2026-11-26; billing for extended support starts at the beginning of the end date (UTC).
    assert eks_versions.support_phase("1.33", date(2026, 7, 28)) == "standard"
    assert eks_versions.support_phase("1.33", date(2026, 7, 29)) == "extended"
    assert eks_versions.support_phase("1.34", date(2026, 12, 1)) == "standard"
    assert eks_versions.support_phase("1.34", date(2026, 12, 2)) == "extended"
    assert eks_versions.support_phase("1.31", date(2026, 11, 26)) == "ended"
    assert eks_versions.versions_in_standard_support(date(2026, 12, 2)) == ["1.35"]


def test_every_cluster_sets_its_upgrade_policy_explicitly() -> None:
    for stack in ("dev", "staging", "prod"):
        cluster = one(rendered(stack), "aws:eks/cluster:Cluster")
        assert cluster["upgradePolicy"] == {"supportType": "STANDARD"}
        assert cluster["version"] == "1.35"


@pytest.fixture
def on_2026_12_02(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eks_versions, "utc_today", lambda: date(2026, 12, 2))


def _dev(version: str, support_type: str | None = None) -> dict[str, Any]:
    raw = _config("dev")[PLATFORM_KEY]
    raw["cluster"]["kubernetes_version"] = version
    if support_type is not None:
        raw["cluster"]["upgrade_policy"] = {"support_type": support_type}
    return raw


@pytest.mark.usefixtures("on_2026_12_02")
def test_a_version_past_standard_support_with_the_standard_policy_is_refused_by_a_real_run() -> None:
    (line,) = cluster_version_problems(parse_platform("dev", _dev("1.33")))
    assert line.startswith(f"{PLATFORM_KEY}.cluster.kubernetes_version = '1.33': ")
    assert "2026-07-29" in line and "(1.35)" in line and "EXTENDED" in line
    assert cluster_version_problems(parse_platform("dev", _dev("1.33", "EXTENDED"))) == []


@pytest.mark.usefixtures("on_2026_12_02")
def test_a_version_past_extended_support_is_refused_whatever_the_policy() -> None:
    (line,) = cluster_version_problems(parse_platform("dev", _dev("1.31", "EXTENDED")))
    assert "2026-11-26" in line


def test_the_calendar_alone_never_breaks_the_offline_render(monkeypatch: pytest.MonkeyPatch) -> None:
    # After 1.35 leaves standard support (2027-03-27) the stack files still render offline (a warning), while a
    # real preview/up refuses them before registering anything.
    monkeypatch.setattr(eks_versions, "utc_today", lambda: date(2027, 6, 1))
    raw = _config("dev")
    assert render.run("dev", config=raw).resources
    platform = parse_platform("dev", raw[PLATFORM_KEY])
    (line,) = cluster_version_problems(platform)
    # Real values in place of the stack file's examples, so that only the version stops the run.
    raw[PLATFORM_KEY]["cluster"]["public_access_cidrs"] = ["100.64.0.0/16"]
    raw[PLATFORM_KEY]["gateway"]["image"] = REAL_IMAGE
    platform = parse_platform("dev", raw[PLATFORM_KEY])
    assert placeholder_problems(platform) == []
    assert "1.35 left EKS standard support on 2027-03-27" in line
    with pytest.raises(pulumi.RunError, match=r"1\.35 left EKS standard support"):
        refuse_placeholders(platform)


@pytest.mark.usefixtures("on_2026_12_02")
def test_the_control_plane_is_priced_by_its_support_phase() -> None:
    standard = cost_outputs(parse_platform("dev", _dev("1.35")))
    extended = cost_outputs(parse_platform("dev", _dev("1.34", "EXTENDED")))
    # AWS: $0.10 per cluster-hour in standard support, $0.60 in extended support.
    assert standard["eks_control_plane"] == {
        "kubernetes_version": "1.35",
        "support_phase": "standard",
        "usd_per_hour": 0.1,
    }
    assert extended["eks_control_plane"]["usd_per_hour"] == 0.6
    # The estimate rounds to cents: allow one.
    assert extended["estimated_hourly_usd"] - standard["estimated_hourly_usd"] == pytest.approx(0.5, abs=0.011)
