"""Each component built on its own from minimal flat args under the mocks, without the program or a stack file.

A component is usable alone (STYLE.md: pulumi-awsx's "a component's args are its contract"): these tests build
one, then assert the children it registered, their names, and the inputs that carry its args.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from components.alerts import AlertSettings
from components.cluster import Cluster, ClusterArgs
from components.cluster_addons import ClusterAddons, ClusterAddonsArgs
from components.device_plugin import DevicePlugin, DevicePluginArgs
from components.gateway import Gateway, GatewayArgs
from components.gpu_node_group import GpuNodeGroup, GpuNodeGroupArgs
from components.load_balancer_controller import LoadBalancerController, LoadBalancerControllerArgs
from components.metrics_server import MetricsServer, MetricsServerArgs
from components.monitoring import AutoscaledModel, Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
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


def test_network_alone() -> None:
    result = build(lambda: Network("net", NetworkArgs(cluster_name="c", availability_zones=2)))
    objects = children(result, "llm-serving:index:Network")
    names = sorted(name for _, name in objects)
    # Two zones, one NAT (single): 2 public + 2 private subnets, 3 route tables, 4 associations, 1 EIP + NAT.
    assert names == [
        "net-default-sg",
        "net-igw",
        "net-nat-a",
        "net-nat-a-eip",
        "net-private-a",
        "net-private-a-rt",
        "net-private-a-rta",
        "net-private-b",
        "net-private-b-rt",
        "net-private-b-rta",
        "net-public-a",
        "net-public-a-rta",
        "net-public-b",
        "net-public-b-rta",
        "net-public-rt",
        "net-vpc",
    ]
    assert objects[("aws:ec2/subnet:Subnet", "net-private-b")]["cidrBlock"] == "10.0.32.0/19"
    # The mocks' zones are us-east-1a, b, c.
    assert objects[("aws:ec2/subnet:Subnet", "net-private-b")]["availabilityZone"] == "us-east-1b"
    routes = objects[("aws:ec2/routeTable:RouteTable", "net-private-b-rt")]["routes"]
    assert routes == [{"cidrBlock": "0.0.0.0/0", "natGatewayId": "net-nat-a-id"}]


def test_network_alone_passes_an_existing_vpc_through_without_children() -> None:
    args = NetworkArgs(cluster_name="c", existing_vpc_id="vpc-1", existing_private_subnet_ids=["subnet-1"])
    result = build(lambda: Network("net", args))
    assert children(result, "llm-serving:index:Network") == {}


def test_cluster_alone() -> None:
    args = ClusterArgs(
        region="us-east-1",
        kubernetes_version="1.33",
        vpc_id="vpc-1",
        private_subnet_ids=["subnet-a", "subnet-b"],
        system_instance_types=["m7i.large"],
        system_min_size=1,
        system_desired_size=2,
        system_max_size=3,
        private_access_cidrs=["10.8.0.0/16"],
    )
    result = build(lambda: Cluster("c", args))
    objects = children(result, "llm-serving:index:Cluster")
    assert {
        ("aws:eks/cluster:Cluster", "c"),
        ("aws:iam/role:Role", "c-cluster-role"),
        ("aws:kms/key:Key", "c-secrets-key"),
        ("aws:iam/openIdConnectProvider:OpenIdConnectProvider", "c-oidc"),
        ("aws:eks/nodeGroup:NodeGroup", "c-system"),
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "c-api-from-cidr-0"),
        ("pulumi:providers:kubernetes", "c-k8s"),
        ("kubernetes:storage.k8s.io/v1:StorageClass", "gp3"),
    } <= set(objects)
    cluster = objects[("aws:eks/cluster:Cluster", "c")]
    assert cluster["version"] == "1.33"
    assert cluster["vpcConfig"]["subnetIds"] == ["subnet-a", "subnet-b"]
    assert cluster["encryptionConfig"]["provider"]["keyArn"].endswith(":key/c-secrets-key")
    nodes = objects[("aws:eks/nodeGroup:NodeGroup", "c-system")]
    assert nodes["scalingConfig"] == {"minSize": 1, "desiredSize": 2, "maxSize": 3}
    assert nodes["instanceTypes"] == ["m7i.large"]
    rule = objects[("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "c-api-from-cidr-0")]
    # The mocks report the EKS-created security group as sg-<cluster>.
    assert (rule["cidrIpv4"], rule["fromPort"], rule["securityGroupId"]) == ("10.8.0.0/16", 443, "sg-c")


def test_device_plugin_alone_with_time_slicing() -> None:
    result = build(lambda: DevicePlugin("dp", DevicePluginArgs(time_slicing_replicas=4)))
    objects = children(result, "llm-serving:index:DevicePlugin")
    assert sorted(objects) == [
        ("kubernetes:apps/v1:DaemonSet", "dp"),
        ("kubernetes:core/v1:ConfigMap", "dp-config"),
    ]
    config = yaml.safe_load(objects[("kubernetes:core/v1:ConfigMap", "dp-config")]["data"]["config.yaml"])
    assert config["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    daemonset = objects[("kubernetes:apps/v1:DaemonSet", "dp")]
    assert daemonset["metadata"]["namespace"] == "kube-system"
    template = daemonset["spec"]["template"]
    assert set(template["metadata"]["annotations"]) == {"llm-serving/config-sha256"}
    assert template["spec"]["containers"][0]["image"] == "nvcr.io/nvidia/k8s-device-plugin:v0.18.2"


def test_monitoring_alone_on_a_gpu_cluster_with_one_autoscaled_model() -> None:
    alerts = AlertSettings(
        serving_namespace="serving",
        model_deployments=["m"],
        requests_waiting=5,
        requests_waiting_for_minutes=5,
        kv_cache_usage_ratio=0.9,
        kv_cache_for_minutes=10,
        gateway_error_ratio=0.05,
        fallback_ratio=0.2,
        team_budget_ratio=0.8,
        pod_not_ready_minutes=10,
        min_gpu_nodes=1,
    )
    args = MonitoringArgs(
        serving_namespace="serving",
        alerts=alerts,
        grafana_admin_password="pw",
        gpu_nodes=True,
        managed_control_plane=True,
        autoscaled_models=[AutoscaledModel("m", 1, 3, 4.0)],
    )
    result = build(lambda: Monitoring("mon", args))
    objects = children(result, "llm-serving:index:Monitoring")
    kinds = sorted({kind for kind, _ in objects})
    assert kinds == [
        "kubernetes:apps/v1:DaemonSet",
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:core/v1:Namespace",
        "kubernetes:core/v1:Secret",
        "kubernetes:core/v1:Service",
        "kubernetes:helm.sh/v3:Release",
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
        "kubernetes:monitoring.coreos.com/v1:PodMonitor",
        "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
        "kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    ]
    names = {name for _, name in objects}
    assert {"mon-kube-prometheus-stack", "mon-keda", "mon-dcgm-exporter", "mon-scaledobject-m"} <= names
    release = objects[("kubernetes:helm.sh/v3:Release", "mon-kube-prometheus-stack")]
    assert release["namespace"] == "monitoring"
    # On a managed control plane the chart's scrapes of what EKS hides are off.
    assert release["values"]["kubeScheduler"] == {"enabled": False}
    scaled = objects[("kubernetes:keda.sh/v1alpha1:ScaledObject", "mon-scaledobject-m")]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 3)
    assert scaled["spec"]["triggers"][0]["metadata"]["threshold"] == "4"


def test_gpu_node_group_alone() -> None:
    args = GpuNodeGroupArgs(
        cluster_name="c",
        subnet_ids=["subnet-a"],
        instance_types=["g6e.xlarge"],
        gpu_model="L40S",
        capacity_type="SPOT",
        min_size=0,
        desired_size=1,
        max_size=4,
        disk_size_gib=200,
    )
    result = build(lambda: GpuNodeGroup("c-l40s", args))
    objects = children(result, "llm-serving:index:GpuNodeGroup")
    assert {
        ("aws:eks/nodeGroup:NodeGroup", "c-l40s"),
        ("aws:ec2/launchTemplate:LaunchTemplate", "c-l40s-lt"),
    } <= set(objects)
    group = objects[("aws:eks/nodeGroup:NodeGroup", "c-l40s")]
    assert group["capacityType"] == "SPOT"
    assert group["scalingConfig"] == {"minSize": 0, "desiredSize": 1, "maxSize": 4}
    assert group["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert group["labels"] == {
        "llm-serving/node-group": "c-l40s",
        "llm-serving/gpu-model": "L40S",
        "nvidia.com/gpu.present": "true",
    }


def test_cluster_addons_alone() -> None:
    result = build(lambda: ClusterAddons("c", ClusterAddonsArgs(cluster_name="c", kubernetes_version="1.33")))
    objects = children(result, "llm-serving:index:ClusterAddons")
    assert sorted(name for _, name in objects) == ["c-coredns", "c-eks-pod-identity-agent", "c-kube-proxy", "c-vpc-cni"]
    vpc_cni = objects[("aws:eks/addon:Addon", "c-vpc-cni")]
    assert vpc_cni["clusterName"] == "c"
    # NetworkPolicy enforcement is off in the VPC CNI by default (EKS docs: cni-network-policy-configure).
    assert json.loads(vpc_cni["configurationValues"])["enableNetworkPolicy"] == "true"


def test_load_balancer_controller_alone() -> None:
    def construct() -> None:
        args = LoadBalancerControllerArgs(
            cluster_name="c",
            region="us-east-1",
            vpc_id="vpc-1",
            aws_provider=aws.Provider("aws", region="us-east-1"),
            kubernetes_provider=k8s.Provider("k8s", kubeconfig="{}"),
        )
        LoadBalancerController("lbc", args)

    result = build(construct)
    objects = children(result, "llm-serving:index:LoadBalancerController")
    assert {
        ("aws:iam/policy:Policy", "lbc-policy"),
        ("aws:iam/role:Role", "lbc-role"),
        ("aws:eks/podIdentityAssociation:PodIdentityAssociation", "lbc-pod-identity"),
        ("kubernetes:helm.sh/v3:Release", "lbc-release"),
        ("kubernetes:networking.k8s.io/v1:IngressClass", "lbc-ingress-class"),
    } <= set(objects)
    association = objects[("aws:eks/podIdentityAssociation:PodIdentityAssociation", "lbc-pod-identity")]
    assert (association["namespace"], association["serviceAccount"]) == ("kube-system", "aws-load-balancer-controller")
    values = objects[("kubernetes:helm.sh/v3:Release", "lbc-release")]["values"]
    assert (values["clusterName"], values["region"], values["vpcId"]) == ("c", "us-east-1", "vpc-1")
    ingress_class = objects[("kubernetes:networking.k8s.io/v1:IngressClass", "lbc-ingress-class")]
    # The controller name the AWS Load Balancer Controller watches IngressClasses for.
    assert ingress_class["spec"]["controller"] == "ingress.k8s.aws/alb"


def test_metrics_server_alone() -> None:
    result = build(lambda: MetricsServer("ms", MetricsServerArgs(kubelet_insecure_tls=True)))
    objects = children(result, "llm-serving:index:MetricsServer")
    ((kind, _), inputs), *rest = objects.items()
    assert (kind, rest) == ("kubernetes:helm.sh/v3:Release", [])
    assert inputs["namespace"] == "kube-system"
    assert inputs["values"]["args"] == ["--kubelet-insecure-tls"]
