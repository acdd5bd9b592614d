"""Every rendered object that only works if a controller serves it has that controller in the same render.

The table below is the contract: an object kind (and the field that selects a controller) -> what must be installed.
The expected chart names, classes and configuration keys come from the controllers' own docs, cited per row.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from infra import render
from infra.config import PLATFORM_KEY
from tests.conftest import one, rendered, resources_of

HELM = "kubernetes:helm.sh/v3:Release"
ADDON = "aws:eks/addon:Addon"


def _charts(result: render.RenderResult) -> dict[str, render.Recorded]:
    return {record.inputs["chart"]: record for record in resources_of(result, HELM)}


def _objects(result: render.RenderResult, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in result.kubernetes_objects() if obj["kind"] == kind]


def _network_policy_enforcer(result: render.RenderResult) -> str | None:
    # EKS: the VPC CNI add-on with its network-policy agent on; the configuration key and its string value are the
    # add-on's own (https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy-configure.html).
    for addon in resources_of(result, ADDON):
        if addon.inputs["addonName"] == "vpc-cni":
            config = json.loads(addon.inputs.get("configurationValues") or "{}")
            return "vpc-cni network policy agent" if config.get("enableNetworkPolicy") == "true" else None
    # A local cluster brings its own CNI: the stack must state which one enforces NetworkPolicy (kindnet does since
    # kind v0.24.0: https://github.com/kubernetes-sigs/kind/issues/842#issuecomment "available now, in .../v0.24.0").
    prerequisite = result.outputs.get("cluster_prerequisites", {}).get("network_policy", "")
    return "kindnet" if "kind >= v0.24.0" in prerequisite else None


def problems(result: render.RenderResult) -> list[str]:
    """Objects in `result` whose controller is missing, one line each."""
    found: list[str] = []
    charts = _charts(result)
    lbc = charts.get("aws-load-balancer-controller")

    def waits_for(record: render.Recorded, dependency: render.Recorded) -> bool:
        return dependency.urn in record.dependencies

    services = [r for r in result.resources if r.type == "kubernetes:core/v1:Service"]
    for record in services:
        # service.k8s.aws/nlb is the AWS Load Balancer Controller's class (its chart: loadBalancerClass default).
        if record.inputs.get("spec", {}).get("loadBalancerClass") == "service.k8s.aws/nlb":
            if lbc is None:
                found.append(f"Service {record.name}: class service.k8s.aws/nlb but no aws-load-balancer-controller")
            elif not waits_for(record, lbc):
                found.append(f"Service {record.name}: does not wait for the aws-load-balancer-controller release")
    classes = {obj["metadata"]["name"]: obj["spec"]["controller"] for obj in _objects(result, "IngressClass")}
    for record in (r for r in result.resources if r.type == "kubernetes:networking.k8s.io/v1:Ingress"):
        name = record.inputs.get("spec", {}).get("ingressClassName")
        controller = classes.get(name or "")
        if controller is None:
            found.append(f"Ingress {record.name}: ingressClassName {name!r} names no rendered IngressClass")
        # ingress.k8s.aws/alb is the controller string the AWS Load Balancer Controller serves (eks-charts
        # stable/aws-load-balancer-controller/templates/ingressclass.yaml).
        elif controller == "ingress.k8s.aws/alb" and (lbc is None or not waits_for(record, lbc)):
            found.append(f"Ingress {record.name}: class {name} needs the aws-load-balancer-controller release first")
    if _objects(result, "NetworkPolicy") and _network_policy_enforcer(result) is None:
        found.append("NetworkPolicy rendered but nothing enforces it (vpc-cni enableNetworkPolicy / kindnet)")
    resource_hpas = [
        obj["metadata"]["name"]
        for obj in _objects(result, "HorizontalPodAutoscaler")
        if any(metric["type"] in ("Resource", "ContainerResource") for metric in obj["spec"].get("metrics", []))
    ]
    if resource_hpas and "metrics-server" not in charts:
        found.append(f"HPA {resource_hpas} scales on resource metrics but no metrics-server serves metrics.k8s.io")
    if _objects(result, "ScaledObject") and "keda" not in charts:
        found.append("ScaledObject rendered but KEDA is not installed")
    monitors = [obj["kind"] for obj in result.kubernetes_objects() if obj["apiVersion"] == "monitoring.coreos.com/v1"]
    if monitors and "kube-prometheus-stack" not in charts:
        found.append(f"{sorted(set(monitors))} rendered but no Prometheus Operator (kube-prometheus-stack)")
    return found


@pytest.mark.parametrize("stack", render.stack_names())
def test_every_object_that_needs_a_controller_has_it(stack: str) -> None:
    assert problems(rendered(stack)) == []


def _without(result: render.RenderResult, keep: Callable[[render.Recorded], bool]) -> render.RenderResult:
    return render.RenderResult(result.stack, [r for r in result.resources if keep(r)], dict(result.outputs))


def test_the_table_catches_each_missing_controller() -> None:
    # Guards the test above: strip each controller from real renders and the table must name what broke.
    prod = rendered("prod")
    no_lbc = _without(prod, lambda r: r.inputs.get("chart") != "aws-load-balancer-controller")
    assert any("service.k8s.aws/nlb" in line for line in problems(no_lbc))
    no_cni = _without(prod, lambda r: not (r.type == ADDON and r.inputs["addonName"] == "vpc-cni"))
    assert any("nothing enforces" in line for line in problems(no_cni))
    no_metrics = _without(prod, lambda r: r.inputs.get("chart") != "metrics-server")
    assert any("metrics-server" in line for line in problems(no_metrics))
    no_keda = _without(prod, lambda r: r.inputs.get("chart") != "keda")
    assert any("KEDA" in line for line in problems(no_keda))
    no_operator = _without(prod, lambda r: r.inputs.get("chart") != "kube-prometheus-stack")
    assert any("Prometheus Operator" in line for line in problems(no_operator))
    local = rendered("local")
    no_prerequisite = render.RenderResult("local", local.resources, {})
    assert any("nothing enforces" in line for line in problems(no_prerequisite))


def test_only_exposed_stacks_get_the_load_balancer_controller() -> None:
    assert "aws-load-balancer-controller" in _charts(rendered("prod"))
    for stack in ("dev", "staging", "local"):
        assert "aws-load-balancer-controller" not in _charts(rendered(stack))


def test_load_balancer_controller_is_pinned_on_system_nodes_with_cluster_region_vpc_and_its_own_policy() -> None:
    result = rendered("prod")
    release = _charts(result)["aws-load-balancer-controller"].inputs
    # aws/eks-charts@5239609 stable/aws-load-balancer-controller/Chart.yaml
    assert release["version"] == "3.5.0"
    assert release["repositoryOpts"]["repo"] == "https://aws.github.io/eks-charts"
    values = release["values"]
    assert values["clusterName"] == "llm-serving-prod"
    assert values["region"] == "us-east-1"
    assert values["vpcId"]
    assert values["nodeSelector"] == {"llm-serving/node-role": "system"}
    assert values["enableServiceMutatorWebhook"] is False
    policy = next(r for r in resources_of(result, "aws:iam/policy:Policy") if r.name == "llm-serving-prod-lbc-policy")
    statements = json.loads(policy.inputs["policy"])["Statement"]
    actions = {action for statement in statements for action in _as_list(statement["Action"])}
    # The controller creates and tags load balancers and target groups (upstream iam_policy.json at v3.5.0).
    assert {"elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"} <= actions
    association = one(
        result, "aws:eks/podIdentityAssociation:PodIdentityAssociation", "llm-serving-prod-lbc-pod-identity"
    )
    assert (association["namespace"], association["serviceAccount"]) == ("kube-system", "aws-load-balancer-controller")
    assert values["serviceAccount"]["name"] == association["serviceAccount"]


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_eks_addons_are_declared_versioned_with_network_policy_on() -> None:
    for stack in ("dev", "staging", "prod"):
        addons = {r.inputs["addonName"]: r.inputs for r in resources_of(rendered(stack), ADDON)}
        assert {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver"} <= set(addons)
        assert json.loads(addons["vpc-cni"]["configurationValues"]) == {"enableNetworkPolicy": "true"}
        # The stacks run 1.35: EKS user guide tables (components/cluster_addons.py cites them). No cited vpc-cni
        # version lists 1.35 yet, so EKS installs its default for the cluster's version.
        assert addons["coredns"]["addonVersion"] == "v1.14.3-eksbuild.3"
        assert addons["kube-proxy"]["addonVersion"] == "v1.35.3-eksbuild.13"
        assert addons["vpc-cni"].get("addonVersion") is None
        for name in ("vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent"):
            assert addons[name]["resolveConflictsOnCreate"] == "OVERWRITE"


def test_every_supported_version_from_1_32_to_1_35_pins_coredns_and_kube_proxy_of_its_own_minor() -> None:
    from components.cluster_addons import addon_version

    for version in ("1.32", "1.33", "1.34", "1.35"):
        # kube-proxy's add-on version carries the Kubernetes minor it was built for.
        assert (addon_version(version, "kube-proxy") or "").startswith(f"v{version}.")
        assert (addon_version(version, "coredns") or "").startswith("v1.1")


def test_metrics_server_on_every_stack_and_kind_skips_kubelet_tls_verification() -> None:
    for stack in render.stack_names():
        release = _charts(rendered(stack))["metrics-server"].inputs
        # kubernetes-sigs/metrics-server charts/metrics-server/Chart.yaml at tag metrics-server-helm-chart-3.13.1
        assert release["version"] == "3.13.1"
        insecure = "--kubelet-insecure-tls" in release["values"].get("args", [])
        assert insecure == (stack == "local"), stack


def _prod_with_ingress() -> render.RenderResult:
    config = copy.deepcopy(render.read_stack_file("prod"))
    ingress = config[PLATFORM_KEY]["gateway"]["ingress"]
    config[PLATFORM_KEY]["gateway"]["ingress"] = {
        "kind": "ingress",
        "host": "llm.example.com",
        "certificate_arn": ingress["certificate_arn"],
        "internal": True,
    }
    return render.run("prod", config=config)


def test_the_ingress_variant_is_an_alb_of_the_installed_controller_with_a_long_idle_timeout() -> None:
    result = _prod_with_ingress()
    assert problems(result) == []
    (ingress,) = _objects(result, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "alb"
    annotations = ingress["metadata"]["annotations"]
    # Streams last minutes; the ALB's default idle timeout is 60 s (controller annotations doc, example 600 s).
    assert annotations["alb.ingress.kubernetes.io/load-balancer-attributes"] == "idle_timeout.timeout_seconds=600"
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"].startswith("arn:aws:acm:")
    (ingress_class,) = _objects(result, "IngressClass")
    assert ingress_class["spec"]["controller"] == "ingress.k8s.aws/alb"


def test_config_refuses_exposure_that_no_installed_controller_would_serve() -> None:
    from infra.config import ConfigError
    from infra.validation import parse_platform

    local = copy.deepcopy(render.read_stack_file("local")[PLATFORM_KEY])
    local["gateway"]["ingress"] = {"kind": "nlb", "certificate_arn": "arn:aws:acm:us-east-1:1:certificate/x"}
    with pytest.raises(ConfigError, match=r"without `aws`, gateway\.ingress\.kind must be `none`"):
        parse_platform("local", local)
    prod = copy.deepcopy(render.read_stack_file("prod")[PLATFORM_KEY])
    prod["gateway"]["ingress"] = {"kind": "ingress", "host": "llm.example.com", "tls_secret_name": "tls"}
    with pytest.raises(ConfigError, match=r"gateway\.ingress.*certificate_arn"):
        parse_platform("prod", prod)
