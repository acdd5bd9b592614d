"""A first `pulumi up` waits long enough for vLLM, and no claim waits for a pod that comes after it.

pulumi-kubernetes v4 awaits a Deployment for 10 minutes unless told otherwise (provider/pkg/await/deployment.go,
DefaultDeploymentTimeoutMins) and honours `pulumi.com/timeoutSeconds` (provider/pkg/metadata/overrides.go). A new
PersistentVolumeClaim is awaited until Bound unless `pulumi.com/skipAwait` is "true" (provider/pkg/await/
awaiters.go); a WaitForFirstConsumer claim binds only when its pod is scheduled.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra import render
from tests.conftest import rendered

PROVIDER_DEFAULT_SECONDS = 10 * 60
# Hand-worked from the figures in infra/serving.py: a GPU node (600 s) and the GPU image (600 s) come before the
# container starts; on the local stack, the CPU image (300 s) before a 900 s startup probe.
GPU_BEFORE_CONTAINER_SECONDS = 600 + 600
LOCAL_AWAIT_SECONDS = 300 + 900


def _vllm_deployments(result: render.RenderResult) -> list[dict[str, Any]]:
    return [
        obj
        for obj in result.kubernetes_objects()
        if obj["kind"] == "Deployment" and obj["metadata"]["labels"].get("app.kubernetes.io/name") == "vllm"
    ]


def _probe_window(deployment: dict[str, Any]) -> int:
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    return int(probe["periodSeconds"] * probe["failureThreshold"])


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_gpu_deployments_wait_for_node_image_and_the_startup_probe(stack: str) -> None:
    deployments = _vllm_deployments(rendered(stack))
    assert deployments
    for deployment in deployments:
        timeout = int(deployment["metadata"]["annotations"]["pulumi.com/timeoutSeconds"])
        assert timeout > PROVIDER_DEFAULT_SECONDS
        assert timeout >= GPU_BEFORE_CONTAINER_SECONDS + _probe_window(deployment) - 10, deployment["metadata"]
        # The Deployment's own progress deadline must not fail the rollout before Pulumi stops waiting.
        assert deployment["spec"]["progressDeadlineSeconds"] >= timeout


def test_local_deployment_waits_for_the_cpu_image_and_the_startup_probe() -> None:
    (deployment,) = _vllm_deployments(rendered("local"))
    assert deployment["metadata"]["annotations"]["pulumi.com/timeoutSeconds"] == str(LOCAL_AWAIT_SECONDS)
    assert _probe_window(deployment) == 900
    assert deployment["spec"]["progressDeadlineSeconds"] >= LOCAL_AWAIT_SECONDS


def test_cache_claims_do_not_block_on_binding_before_their_pod_exists(any_stack: render.RenderResult) -> None:
    objects = any_stack.kubernetes_objects()
    classes = {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "StorageClass"}
    claims = [
        obj
        for obj in objects
        if obj["kind"] == "PersistentVolumeClaim" and obj["metadata"]["labels"].get("app.kubernetes.io/name") == "vllm"
    ]
    for claim in claims:
        assert claim["metadata"].get("annotations", {}).get("pulumi.com/skipAwait") == "true", claim["metadata"]
        storage_class = classes.get(claim["spec"].get("storageClassName", ""))
        if storage_class is not None:
            assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"


def test_staging_has_a_cache_claim() -> None:
    """The claim test above proves something only if some stack renders a claim."""
    assert any(
        obj["kind"] == "PersistentVolumeClaim" and obj["metadata"]["labels"].get("app.kubernetes.io/name") == "vllm"
        for obj in rendered("staging").kubernetes_objects()
    )
