"""Karpenter pools and scale to zero in the stacks' renders (issue 13, infrastructure).

Expected values come from the stack files themselves (read as YAML, not through the planner), from the upstream
Karpenter template and docs (cited), and from figures worked by hand in the comments.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
import yaml

from infra import render
from infra.config import PLATFORM_KEY
from tests.conftest import one, rendered, resources_of

AWS_STACKS = ["dev", "staging", "prod"]
# GPUs per instance, from the EC2 instance type pages (g5.xlarge: 1 x A10G; g6e.xlarge/2xlarge: 1 x L40S).
GPUS_PER_INSTANCE = {"g5.xlarge": 1, "g6e.xlarge": 1, "g6e.2xlarge": 1, "g6e.12xlarge": 4}


def _groups(stack: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = render.read_stack_file(stack)[PLATFORM_KEY]["gpu_node_groups"]
    return groups


def _objects(stack: str, kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in rendered(stack).kubernetes_objects() if obj["kind"] == kind}


def _gateway_config(stack: str) -> dict[str, Any]:
    config_map = next(
        obj
        for obj in rendered(stack).kubernetes_objects()
        if obj["kind"] == "ConfigMap" and "config.yaml" in obj.get("data", {})
    )
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return config


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_each_karpenter_group_is_a_node_pool_and_node_class_with_its_types_limit_and_taint(stack: str) -> None:
    pools, classes = _objects(stack, "NodePool"), _objects(stack, "EC2NodeClass")
    karpenter_groups = [g for g in _groups(stack) if g.get("provisioner", "karpenter") == "karpenter"]
    names = {f"llm-serving-{stack}-{group['name']}" for group in karpenter_groups}
    assert set(pools) == names and set(classes) == names
    for group in karpenter_groups:
        name = f"llm-serving-{stack}-{group['name']}"
        spec = pools[name]["spec"]
        requirements = {r["key"]: r for r in spec["template"]["spec"]["requirements"]}
        # Exactly the configured types, each of which the planner checks (infra/semantics.py).
        assert requirements["node.kubernetes.io/instance-type"]["values"] == group["instance_types"]
        assert requirements["node.kubernetes.io/instance-type"]["operator"] == "In"
        # Karpenter prefers spot over on-demand when a pool allows both (concepts/nodepools.md:277).
        spot = group.get("capacity_type") == "SPOT"
        assert requirements["karpenter.sh/capacity-type"]["values"] == (
            ["spot", "on-demand"] if spot else ["on-demand"]
        )
        gpus = group["scaling"]["max_size"] * GPUS_PER_INSTANCE[group["instance_types"][0]]
        assert spec["limits"] == {"nvidia.com/gpu": gpus}
        assert spec["template"]["spec"]["taints"] == [
            {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
        ]
        assert spec["template"]["spec"]["nodeClassRef"] == {
            "group": "karpenter.k8s.aws",
            "kind": "EC2NodeClass",
            "name": name,
        }
        # Consolidation only of empty nodes: never evicts a serving vLLM pod to pack tighter.
        assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
        assert spec["disruption"]["budgets"] == [{"nodes": "1"}]


def test_the_gpu_limits_by_hand() -> None:
    # dev: 1 x g5.xlarge (1 GPU); staging: 2 x g6e.xlarge (the cap; its model uses 1); prod's gpu-l40s: 4 x g6e.xlarge.
    assert _objects("dev", "NodePool")["llm-serving-dev-gpu-a10g"]["spec"]["limits"] == {"nvidia.com/gpu": 1}
    assert _objects("staging", "NodePool")["llm-serving-staging-gpu-l40s"]["spec"]["limits"] == {"nvidia.com/gpu": 2}
    assert _objects("prod", "NodePool")["llm-serving-prod-gpu-l40s"]["spec"]["limits"] == {"nvidia.com/gpu": 4}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_vllm_pods_select_the_pool_labels_and_tolerate_its_taints(stack: str) -> None:
    pools = _objects(stack, "NodePool")
    for deployment in _objects(stack, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        selector = pod.get("nodeSelector", {})
        pool = next(
            (p for p in pools.values() if selector.items() <= p["spec"]["template"]["metadata"]["labels"].items()),
            None,
        )
        if pool is None or not selector:
            continue
        for taint in pool["spec"]["template"]["spec"]["taints"]:
            assert any(
                t["key"] == taint["key"]
                and t.get("effect") == taint["effect"]
                and (t.get("operator") == "Exists" or t.get("value") == taint["value"])
                for t in pod["tolerations"]
            ), f"{deployment['metadata']['name']} does not tolerate {taint}"
    # Every vLLM model on a Karpenter group selects the labels of some pool.
    karpenter = {g["name"] for g in _groups(stack) if g.get("provisioner", "karpenter") == "karpenter"}
    models = [
        m["name"] for m in render.read_stack_file(stack)[PLATFORM_KEY]["models"] if m.get("node_group") in karpenter
    ]
    deployments = _objects(stack, "Deployment")
    for model in models:
        selector = deployments[model]["spec"]["template"]["spec"]["nodeSelector"]
        assert any(selector.items() <= p["spec"]["template"]["metadata"]["labels"].items() for p in pools.values())


def test_node_class_is_imdsv2_hop_limit_1_encrypted_gp3_and_found_by_discovery_tags() -> None:
    node_class = _objects("dev", "EC2NodeClass")["llm-serving-dev-gpu-a10g"]["spec"]
    assert node_class["amiSelectorTerms"] == [{"alias": "al2023@latest"}]
    assert node_class["metadataOptions"]["httpTokens"] == "required"
    assert node_class["metadataOptions"]["httpPutResponseHopLimit"] == 1
    ebs = node_class["blockDeviceMappings"][0]["ebs"]
    assert (ebs["volumeType"], ebs["encrypted"], ebs["volumeSize"]) == ("gp3", True, "100Gi")
    # The same gp3 performance as the weight volumes (infra/storage.py: 250 MiB/s, 3,000 IOPS).
    assert (ebs["throughput"], ebs["iops"]) == (250, 3000)
    assert node_class["role"] == "llm-serving-dev-karpenter-node-role"
    discovery = [{"tags": {"karpenter.sh/discovery": "llm-serving-dev"}}]
    assert node_class["subnetSelectorTerms"] == discovery and node_class["securityGroupSelectorTerms"] == discovery
    result = rendered("dev")
    private = [r for r in resources_of(result, "aws:ec2/subnet:Subnet") if "private" in r.name]
    assert private and all(r.inputs["tags"]["karpenter.sh/discovery"] == "llm-serving-dev" for r in private)
    public = [r for r in resources_of(result, "aws:ec2/subnet:Subnet") if "public" in r.name]
    assert all("karpenter.sh/discovery" not in r.inputs["tags"] for r in public)
    tag = one(result, "aws:ec2/tag:Tag", "llm-serving-dev-karpenter-discovery-cluster-sg")
    assert (tag["key"], tag["value"]) == ("karpenter.sh/discovery", "llm-serving-dev")


def test_the_interruption_queue_gets_the_four_kinds_of_events() -> None:
    result = rendered("dev")
    queue = one(result, "aws:sqs/queue:Queue")
    assert queue["name"] == "llm-serving-dev"
    patterns = [
        json.loads(r.inputs["eventPattern"]) for r in resources_of(result, "aws:cloudwatch/eventRule:EventRule")
    ]
    detail_types = {(p["source"][0], p["detail-type"][0]) for p in patterns}
    # The event kinds Karpenter handles (karpenter.sh docs, "Interruption": spot interruption warnings, scheduled
    # change health events, instance state changes, rebalance recommendations).
    assert {
        ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
        ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
        ("aws.ec2", "EC2 Instance State-change Notification"),
        ("aws.health", "AWS Health Event"),
    } <= detail_types
    targets = resources_of(result, "aws:cloudwatch/eventTarget:EventTarget")
    assert len(targets) == len(patterns)
    assert len({t.inputs["arn"] for t in targets}) == 1 and "interruption-queue" in targets[0].inputs["arn"]
    policy = json.loads(one(result, "aws:sqs/queuePolicy:QueuePolicy")["policy"])
    senders = policy["Statement"][0]
    assert senders["Action"] == "sqs:SendMessage" and "events.amazonaws.com" in senders["Principal"]["Service"]


def test_the_controller_chart_settings_identity_and_node_access() -> None:
    result = rendered("dev")
    release = next(
        r.inputs for r in resources_of(result, "kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "karpenter"
    )
    # aws/karpenter-provider-aws@1d927085 charts/karpenter/Chart.yaml: version 1.14.1, published to public ECR.
    assert (release["chart"], release["version"]) == ("oci://public.ecr.aws/karpenter/karpenter", "1.14.1")
    assert release["namespace"] == "kube-system"
    values = release["values"]
    assert values["settings"]["clusterName"] == "llm-serving-dev"
    assert values["settings"]["interruptionQueue"] == one(result, "aws:sqs/queue:Queue")["name"]
    assert values["nodeSelector"] == {"llm-serving/node-role": "system"}
    association = one(
        result, "aws:eks/podIdentityAssociation:PodIdentityAssociation", "llm-serving-dev-karpenter-pod-identity"
    )
    assert (association["namespace"], association["serviceAccount"]) == (
        "kube-system",
        values["serviceAccount"]["name"],
    )
    entry = one(result, "aws:eks/accessEntry:AccessEntry")
    assert entry["type"] == "EC2_LINUX"
    assert entry["principalArn"].endswith("llm-serving-dev-karpenter-node-role")
    policies = {
        r.name: json.loads(r.inputs["policy"])
        for r in resources_of(result, "aws:iam/policy:Policy")
        if r.name.startswith("llm-serving-dev-karpenter-")
    }
    text = json.dumps(policies)
    assert "${" not in text, "an unfilled CloudFormation variable"
    actions = {
        action
        for document in policies.values()
        for statement in document["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    # Launching and ending nodes, handing them their role, reading the queue (the upstream template's policies).
    assert {
        "ec2:CreateFleet",
        "ec2:RunInstances",
        "ec2:TerminateInstances",
        "iam:PassRole",
        "sqs:ReceiveMessage",
    } <= actions
    assert '"aws:ResourceTag/kubernetes.io/cluster/llm-serving-dev": "owned"' in text.replace("\\", "")


def test_only_stacks_with_a_karpenter_group_install_karpenter() -> None:
    assert not _objects("local", "NodePool")
    assert not [r for r in rendered("local").resources if r.type == "llm-serving:index:Karpenter"]
    prod = rendered("prod")
    # prod has both: the fixed 4-GPU managed group and the Karpenter pool of the 8B model.
    assert [r.name for r in resources_of(prod, "aws:eks/nodeGroup:NodeGroup") if "gpu" in r.name] == [
        "llm-serving-prod-gpu-l40s-x4"
    ]
    assert list(_objects("prod", "NodePool")) == ["llm-serving-prod-gpu-l40s"]


def test_a_model_at_zero_wakes_on_the_gateways_waiting_count_and_idles_back_to_zero() -> None:
    scaled = _objects("dev", "ScaledObject")["llama-3-1-8b"]["spec"]
    assert scaled["minReplicaCount"] == 0 and scaled["maxReplicaCount"] == 1
    # idle_minutes defaults to 15.
    assert scaled["cooldownPeriod"] == 15 * 60
    triggers = {t.get("name"): t for t in scaled["triggers"]}
    waiting = triggers["gateway-waiting"]["metadata"]
    assert 'llm_gateway_requests_waiting{namespace="llm-serving", backend="llama-3-1-8b"}' in waiting["query"]
    assert waiting["activationThreshold"] == "0"
    # A model busy with requests that never queue is not idle.
    assert "vllm:num_requests_running" in triggers["in-use"]["metadata"]["query"]
    # prod's models keep their minimum of 2: one trigger, as before.
    prod = _objects("prod", "ScaledObject")["llama-3-1-8b"]["spec"]
    assert prod["minReplicaCount"] == 2 and len(prod["triggers"]) == 1


def test_the_gateway_holds_requests_for_a_model_at_zero_up_to_its_cold_start() -> None:
    backends = {b["name"]: b for b in _gateway_config("dev")["backends"]}
    # 600 s node launch + 600 s image pull (infra/sizing.py) + ceil(90 + 5.33 GiB / 250 MiB/s) = 112 s.
    startup = math.ceil(90 + 5.33 * 1024 / 250)
    assert backends["llama-3-1-8b"]["wake"] == {"deadline_s": 600 + 600 + startup}
    assert rendered("dev").outputs["scaling"]["llama-3-1-8b"]["cold_start_s"] == 1312
    prod = {b["name"]: b for b in _gateway_config("prod")["backends"]}
    assert "wake" not in prod["llama-3-1-8b"]


def test_idle_and_full_scale_cost_by_hand() -> None:
    # On-demand us-east-1: g5.xlarge $1.006/h (spot at the catalog's 50% discount), g6e.xlarge $1.861/h; 730 h.
    dev = rendered("dev").outputs["cost"]
    assert dev["full_scale_monthly_usd"] - dev["idle_monthly_usd"] == pytest.approx(1.006 * 0.5 * 730, abs=1)
    staging = rendered("staging").outputs["cost"]
    assert staging["full_scale_monthly_usd"] - staging["idle_monthly_usd"] == pytest.approx(1.861 * 730, abs=1)
    # At zero the idle stack pays no GPU: idle equals the estimate at the (zero) desired GPU nodes.
    assert dev["idle_monthly_usd"] == dev["estimated_monthly_usd"]
    assert "monthly cost idle" in render.summary(rendered("dev"))


def test_a_pool_may_launch_only_types_the_planner_checked() -> None:
    # The pool launches any of its types, so they must share the GPU model and count the planner sized vLLM for.
    from infra.config import ConfigError
    from infra.validation import parse_platform

    platform = copy.deepcopy(render.read_stack_file("staging")[PLATFORM_KEY])
    platform["gpu_node_groups"][0]["instance_types"] = ["g6e.xlarge", "g5.xlarge"]
    with pytest.raises(ConfigError) as caught:
        parse_platform("staging", platform)
    assert any(
        "gpu_node_groups[0].instance_types" in line and "mixes GPU shapes" in line for line in caught.value.problems
    )


def _alone(construct: Any, component_type: str) -> dict[tuple[str, str], dict[str, Any]]:
    result = render.record(construct, stack="alone")
    (component,) = [record for record in result.resources if record.type == component_type]
    return {(r.type, r.name): r.inputs for r in result.resources if r.parent == component.urn}


def test_karpenter_and_a_pool_alone() -> None:
    import pulumi
    import pulumi_aws as aws
    import pulumi_kubernetes as k8s

    from components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
    from components.karpenter import Karpenter, KarpenterArgs

    def karpenter() -> None:
        args = KarpenterArgs(
            cluster_name="c",
            region="eu-west-1",
            cluster_name_output="c",
            cluster_security_group_id="sg-0123456789abcdef0",
            aws_provider=aws.Provider("aws", region="eu-west-1"),
            kubernetes_provider=k8s.Provider("k8s", kubeconfig="{}"),
            existing_subnet_ids=["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        )
        Karpenter("k", args)

    objects = _alone(karpenter, "llm-serving:index:Karpenter")
    # An existing VPC's subnets and the cluster security group get the discovery tag.
    tags = sorted(inputs["resourceId"] for (kind, _), inputs in objects.items() if kind == "aws:ec2/tag:Tag")
    assert tags == ["sg-0123456789abcdef0", "subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    assert objects[("aws:sqs/queue:Queue", "k-interruption-queue")]["name"] == "c"
    # The template's region variable is filled with the component's region, never the stacks' us-east-1.
    lifecycle = objects[("aws:iam/policy:Policy", "k-node-lifecycle-policy")]["policy"]
    assert "arn:aws:ec2:eu-west-1::image/*" in lifecycle and "us-east-1" not in lifecycle

    def pool() -> None:
        args = GpuNodePoolArgs(
            node_group_label="c-gpu",
            cluster_name="c",
            node_role_name="c-node-role",
            instance_types=["g6e.12xlarge"],
            capacity_type="ON_DEMAND",
            gpu_model="L40S",
            max_nodes=3,
            gpus_per_node=4,
            disk_size_gib=200,
        )
        GpuNodePool("p", args, opts=pulumi.ResourceOptions(provider=k8s.Provider("k8s", kubeconfig="{}")))

    objects = _alone(pool, "llm-serving:index:GpuNodePool")
    spec = objects[("kubernetes:karpenter.sh/v1:NodePool", "p-node-pool")]["spec"]
    # 3 nodes x 4 GPUs.
    assert spec["limits"] == {"nvidia.com/gpu": 12}
    node_class = objects[("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", "p-node-class")]["spec"]
    # No provisioned figures given: gp3's baseline (nothing set), 200 GiB.
    assert node_class["blockDeviceMappings"][0]["ebs"] == {
        "volumeSize": "200Gi",
        "volumeType": "gp3",
        "encrypted": True,
        "deleteOnTermination": True,
    }
