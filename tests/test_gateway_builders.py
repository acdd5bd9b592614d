"""The pure builders behind the Gateway component, called directly, with the expected manifests written out."""

from __future__ import annotations

import dataclasses

from components.gateway import (
    GatewayArgs,
    alb_annotations,
    cpu_autoscaler_spec,
    gateway_container,
    gateway_spreading,
    ingress_spec,
    nlb_annotations,
    secret_env,
)
from tests.plain import plain

ARGS = GatewayArgs(namespace="serving", image="gw:1", replicas=2, max_replicas=6, config_yaml="routes: []\n")


def test_secret_env_reads_each_variable_from_the_key_of_its_name_in_sorted_order() -> None:
    assert plain(secret_env("gw-credentials", ["B_KEY", "A_KEY"])) == [
        {"name": "A_KEY", "valueFrom": {"secretKeyRef": {"name": "gw-credentials", "key": "A_KEY"}}},
        {"name": "B_KEY", "valueFrom": {"secretKeyRef": {"name": "gw-credentials", "key": "B_KEY"}}},
    ]


def test_container_runs_the_image_entrypoint_hardened_with_probes_on_the_http_port() -> None:
    container = plain(gateway_container(ARGS, []))
    assert container["command"] == ["python", "-m", "llm_gateway"]
    assert container["args"] == ["--config", "/etc/llm-gateway/config.yaml"]
    assert "env" not in container  # no secrets, no env list at all
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "512Mi"},
    }
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 5,
        "failureThreshold": 2,
    }
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_spreading_over_zones_and_hosts_only_with_several_replicas() -> None:
    assert gateway_spreading(1) is None
    assert [item["topologyKey"] for item in plain(gateway_spreading(3))] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]


def test_autoscaler_never_goes_below_the_configured_replicas() -> None:
    spec = plain(cpu_autoscaler_spec("gw", dataclasses.replace(ARGS, replicas=4, max_replicas=2)))
    assert (spec["minReplicas"], spec["maxReplicas"]) == (4, 4)
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gw"}
    assert spec["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def test_load_balancers_terminate_tls_with_the_certificate_and_follow_the_scheme() -> None:
    arn = "arn:aws:acm:us-east-1:123456789012:certificate/x"
    public = dataclasses.replace(ARGS, certificate_arn=arn, internal=False)
    nlb = nlb_annotations(public)
    assert nlb["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internet-facing"
    assert nlb["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"] == arn
    alb = alb_annotations(dataclasses.replace(public, internal=True))
    assert alb["alb.ingress.kubernetes.io/scheme"] == "internal"
    assert alb["alb.ingress.kubernetes.io/certificate-arn"] == arn
    # The ALB's idle timeout (60 s by default) would cut long streams.
    assert alb["alb.ingress.kubernetes.io/load-balancer-attributes"] == "idle_timeout.timeout_seconds=600"


def test_ingress_routes_only_the_openai_api_of_the_host() -> None:
    spec = plain(ingress_spec("gw", dataclasses.replace(ARGS, ingress_host="llm.example.com")))
    assert spec == {
        "ingressClassName": "alb",
        "tls": [{"hosts": ["llm.example.com"]}],
        "rules": [
            {
                "host": "llm.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/v1",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "gw", "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ],
    }
