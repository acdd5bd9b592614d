"""Each component built on its own from minimal flat args under the mocks, without the program or a stack file.

A component is usable alone (STYLE.md: pulumi-awsx's "a component's args are its contract"): these tests build
one, then assert the children it registered, their names, and the inputs that carry its args.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi

from components.gateway import Gateway, GatewayArgs
from components.vllm_deployment import VllmDeployment, VllmDeploymentArgs, VllmServeOptions
from infra import render


def build(construct: Callable[[], object]) -> render.RenderResult:
    def program() -> None:
        construct()

    return render.record(program, stack="alone")


def children(result: render.RenderResult, component_type: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(type, name) -> inputs of every resource whose parent is the one component of `component_type`."""
    (component,) = [record for record in result.resources if record.type == component_type]
    return {(r.type, r.name): r.inputs for r in result.resources if r.parent == component.urn}


def test_vllm_deployment_alone() -> None:
    serve = VllmServeOptions(
        served_model_name="tiny",
        hf_model="org/tiny",
        revision=None,
        quantization=None,
        dtype="auto",
        max_model_len=2048,
        gpu_memory_utilization=0.9,
        tensor_parallel_size=1,
        max_num_seqs=16,
        enable_prefix_caching=True,
        kv_cache_dtype="auto",
        enforce_eager=False,
    )
    args = VllmDeploymentArgs(
        serve=serve,
        namespace="ns",
        api_key="k",
        hf_token=None,
        node_group_label="c-gpu",
        cpu="4",
        memory="16Gi",
        startup_budget_seconds=600,
        cache_size_gib=20,
        cache_kind="pvc",
    )
    result = build(lambda: VllmDeployment("tiny", args))
    objects = children(result, "llm-serving:index:VllmDeployment")
    assert sorted(objects) == [
        ("kubernetes:apps/v1:Deployment", "tiny"),
        ("kubernetes:core/v1:PersistentVolumeClaim", "tiny-cache"),
        ("kubernetes:core/v1:Secret", "tiny-credentials"),
        ("kubernetes:core/v1:Service", "tiny-pods"),
        ("kubernetes:core/v1:Service", "tiny-svc"),
        ("kubernetes:core/v1:ServiceAccount", "tiny"),
        ("kubernetes:policy/v1:PodDisruptionBudget", "tiny-pdb"),
    ]
    deployment = objects[("kubernetes:apps/v1:Deployment", "tiny")]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"llm-serving/node-group": "c-gpu"}
    assert pod["volumes"][0] == {"name": "model-cache", "persistentVolumeClaim": {"claimName": "tiny-cache"}}
    (container,) = pod["containers"]
    assert container["image"] == "vllm/vllm-openai:v0.32.0"
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    # 600 s / 10 s periods.
    assert container["startupProbe"]["failureThreshold"] == 60
    # A single replica with its own claim cannot surge: the claim is ReadWriteOnce.
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert objects[("kubernetes:core/v1:Service", "tiny-pods")]["spec"]["clusterIP"] == "None"
    assert objects[("kubernetes:core/v1:Service", "tiny-pods")]["metadata"]["name"] == "tiny-pods"
    assert objects[("kubernetes:core/v1:Secret", "tiny-credentials")]["stringData"] == {"vllmApiKey": "[secret]"}


def test_gateway_alone() -> None:
    args = GatewayArgs(
        namespace="ns",
        image="gw:1",
        replicas=1,
        max_replicas=3,
        config_yaml="routes: []\n",
        secret_env={"OPENAI_API_KEY": pulumi.Output.secret("sk")},
        ingress_kind="nlb",
        certificate_arn="arn:aws:acm:us-east-1:123456789012:certificate/x",
    )
    result = build(lambda: Gateway("gw", args))
    objects = children(result, "llm-serving:index:Gateway")
    assert sorted(objects) == [
        ("kubernetes:apps/v1:Deployment", "gw"),
        ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "gw"),
        ("kubernetes:core/v1:ConfigMap", "gw-config"),
        ("kubernetes:core/v1:Secret", "gw-credentials"),
        ("kubernetes:core/v1:Service", "gw"),
        ("kubernetes:core/v1:Service", "gw-nlb"),
        ("kubernetes:core/v1:ServiceAccount", "gw"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "default-deny-ingress"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "gw-ingress"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "vllm-from-gateway-only"),
        ("kubernetes:policy/v1:PodDisruptionBudget", "gw"),
    ]
    assert objects[("kubernetes:core/v1:ConfigMap", "gw-config")]["data"] == {"config.yaml": "routes: []\n"}
    template = objects[("kubernetes:apps/v1:Deployment", "gw")]["spec"]["template"]
    # sha256 of "routes: []\n", computed with `printf 'routes: []\n' | sha256sum`.
    assert template["metadata"]["annotations"]["checksum/config"] == (
        "53c772ade0170baffdebe3ab4e3302735401c3611535f3547361d29bd3223bd0"
    )
    (container,) = template["spec"]["containers"]
    assert container["image"] == "gw:1"
    assert container["env"] == [
        {"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "gw-credentials", "key": "OPENAI_API_KEY"}}}
    ]
    assert objects[("kubernetes:core/v1:Service", "gw-nlb")]["spec"]["type"] == "LoadBalancer"
