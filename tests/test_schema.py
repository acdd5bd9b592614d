"""Every rendered Kubernetes object validates, strictly, against the official schema of the stack's cluster version."""

from __future__ import annotations

import kubernetes_validate
import pytest

from infra import render
from infra.config import PLATFORM_KEY
from infra.validation import parse_platform
from tests.conftest import rendered

# Custom resources have no schema in the official OpenAPI documents; their operators validate them on admission.
CUSTOM_RESOURCE_GROUPS = ("monitoring.coreos.com/", "keda.sh/", "karpenter.sh/", "karpenter.k8s.aws/")


@pytest.mark.parametrize("stack", render.stack_names())
def test_rendered_objects_validate_strictly_against_the_cluster_version(stack: str) -> None:
    version = parse_platform(stack, render.read_stack_file(stack)[PLATFORM_KEY]).cluster_version
    objects = rendered(stack).kubernetes_objects()
    assert objects
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith(CUSTOM_RESOURCE_GROUPS):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{stack}: {obj['kind']} {obj['metadata'].get('name')}: {error.message} at {error.path}")
        checked += 1
    assert checked > 0


def test_the_validator_catches_a_misspelt_field() -> None:
    # Guards the test above: strict mode must reject what a typo in a component would produce.
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "c", "image": "i:1"}], "toleration": []},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.33", strict=True)
