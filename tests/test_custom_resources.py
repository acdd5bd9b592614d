"""Every custom resource of every stack's render validates against its published CRD schema.

kubernetes-validate (tests/test_schema.py) knows only built-in kinds; the operators check custom resources on
admission, i.e. during `pulumi up`, too late. npm's @kubernetes-models packages ship each CRD's OpenAPI schema
compiled to a validator; scripts/install-crd-validators.sh installs them (pinned) and tests/crd_validate.mjs runs
them under node over a whole render at once.

Adding a kind is one row in VALIDATORS. A custom kind with no row fails the test instead of passing unchecked.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra import render
from tests.conftest import rendered

ROOT = Path(__file__).resolve().parent.parent
VALIDATORS_DIR = ROOT / ".crd-validators"
SCRIPT = Path(__file__).parent / "crd_validate.mjs"

# (apiVersion, kind) -> (module under node_modules, exported class). Packages and versions:
# scripts/install-crd-validators.sh. Schemas: @kubernetes-models/prometheus-operator 6.0.0 (prometheus-operator CRDs),
# @kubernetes-models/keda 2.0.0 (KEDA CRDs), @kubernetes-models/karpenter 2.0.0 (Karpenter v1 CRDs).
VALIDATORS: dict[tuple[str, str], tuple[str, str]] = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): (
        "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule",
        "PrometheusRule",
    ),
    ("monitoring.coreos.com/v1", "PodMonitor"): (
        "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor",
        "PodMonitor",
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
        "ServiceMonitor",
    ),
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): (
        "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1alpha1/AlertmanagerConfig",
        "AlertmanagerConfig",
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): ("@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): (
        "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication",
        "TriggerAuthentication",
    ),
    # @kubernetes-models/karpenter 2.0.0 (Karpenter v1 CRDs).
    ("karpenter.sh/v1", "NodePool"): ("@kubernetes-models/karpenter/karpenter.sh/v1/NodePool", "NodePool"),
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): (
        "@kubernetes-models/karpenter/karpenter.k8s.aws/v1/EC2NodeClass",
        "EC2NodeClass",
    ),
}


def is_custom(api_version: str) -> bool:
    """Built-in kinds live in the core group (`v1`), in dot-less groups (apps, batch, policy, autoscaling) or in
    `*.k8s.io` groups; anything else (monitoring.coreos.com, keda.sh, karpenter.sh, elbv2.k8s.aws) is a CRD's."""
    if "/" not in api_version:
        return False
    group = api_version.split("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def validate(objects: list[dict[str, Any]]) -> list[str | None]:
    """One node run for all objects: None where valid, else the validator's message."""
    node = shutil.which("node")
    if node is None or not (VALIDATORS_DIR / "node_modules").is_dir():
        pytest.skip("CRD validators are not installed: run scripts/install-crd-validators.sh (needs node)")
    items = []
    for obj in objects:
        module, export = VALIDATORS[(obj["apiVersion"], obj["kind"])]
        items.append({"module": module, "export": export, "object": obj})
    result = subprocess.run(
        [node, str(SCRIPT), str(VALIDATORS_DIR)],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [None if entry["ok"] else entry["error"] for entry in json.loads(result.stdout)]


@pytest.mark.parametrize("stack", render.stack_names())
def test_every_custom_resource_validates_against_its_crd_schema(stack: str) -> None:
    custom = [obj for obj in rendered(stack).kubernetes_objects() if is_custom(obj["apiVersion"])]
    assert custom, f"{stack}: no custom resources rendered (PodMonitor, PrometheusRule expected at least)"
    unknown = sorted({(obj["apiVersion"], obj["kind"]) for obj in custom} - set(VALIDATORS))
    assert not unknown, f"{stack}: custom kinds with no schema validator (add a row to VALIDATORS): {unknown}"
    problems = [
        f"{obj['kind']} {obj['metadata'].get('name')}: {error}"
        for obj, error in zip(custom, validate(custom), strict=True)
        if error is not None
    ]
    assert not problems, f"{stack}: custom resources rejected by their CRD schema:\n" + "\n".join(problems)


def test_every_validator_row_loads_and_rejects_a_broken_object() -> None:
    # Control case: a wrong type deep in a real rendered object must be rejected, and for every row (a mistyped
    # module path would otherwise be caught only when that kind first appears in a render).
    prod = {(obj["apiVersion"], obj["kind"]): obj for obj in rendered("prod").kubernetes_objects()}
    broken: list[dict[str, Any]] = []
    for api_version, kind in VALIDATORS:
        obj = copy.deepcopy(prod.get((api_version, kind), {"apiVersion": api_version, "kind": kind}))
        obj.setdefault("metadata", {"name": "broken"})
        # `spec` is an object in every one of these CRDs; a string there violates each schema.
        obj["spec"] = "not-an-object"
        broken.append(obj)
    errors = validate(broken)
    for obj, error in zip(broken, errors, strict=True):
        assert error is not None and "spec" in error, f"{obj['kind']}: broken object accepted ({error})"


def test_a_scaled_object_with_a_string_replica_count_is_rejected() -> None:
    # Measured control (docs NOTES "Custom resources"): KEDA's schema types minReplicaCount as an integer.
    obj = copy.deepcopy(next(o for o in rendered("prod").kubernetes_objects() if o["kind"] == "ScaledObject"))
    assert validate([obj]) == [None]
    obj["spec"]["minReplicaCount"] = "zero"
    assert validate([obj]) == ["data/spec/minReplicaCount must be integer"]


@pytest.mark.parametrize(
    ("api_version", "custom"),
    [
        ("v1", False),
        ("apps/v1", False),
        ("networking.k8s.io/v1", False),
        ("monitoring.coreos.com/v1", True),
        ("keda.sh/v1alpha1", True),
        ("elbv2.k8s.aws/v1beta1", True),
        ("karpenter.sh/v1", True),
        ("karpenter.k8s.aws/v1", True),
    ],
)
def test_custom_groups_are_told_from_built_in_ones(api_version: str, custom: bool) -> None:
    assert is_custom(api_version) is custom


def _rendered_pool_objects() -> dict[str, dict[str, Any]]:
    return {
        obj["kind"]: obj for obj in rendered("dev").kubernetes_objects() if obj["kind"] in ("NodePool", "EC2NodeClass")
    }


def test_a_node_pool_without_its_node_class_reference_is_rejected() -> None:
    # The NodePool schema requires spec.template.spec.nodeClassRef (measured control, docs NOTES "Custom resources").
    pool = copy.deepcopy(_rendered_pool_objects()["NodePool"])
    assert validate([pool]) == [None]
    del pool["spec"]["template"]["spec"]["nodeClassRef"]
    error = validate([pool])[0]
    assert error is not None and "nodeClassRef" in error


def test_an_ec2_node_class_with_a_bad_hop_limit_or_a_too_long_alias_is_rejected() -> None:
    # Karpenter v1's CRD (aws/karpenter-provider-aws@1d927085 pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml):
    # httpPutResponseHopLimit "Possible values are integers from 1 to 64"; an alias is at most 30 characters.
    node_class = _rendered_pool_objects()["EC2NodeClass"]
    hops = copy.deepcopy(node_class)
    hops["spec"]["metadataOptions"]["httpPutResponseHopLimit"] = 0
    alias = copy.deepcopy(node_class)
    alias["spec"]["amiSelectorTerms"] = [{"alias": "al2023@v" + "2" * 30}]
    first, second = validate([hops, alias])
    assert first is not None and "httpPutResponseHopLimit" in first
    assert second is not None and "alias" in second
