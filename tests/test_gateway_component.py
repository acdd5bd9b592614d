"""The gateway component under the Pulumi mocks: the Deployment's hardening, its config, secrets and policies."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pulumi
import pytest
import yaml
from llm_gateway.config import parse_config

from infra import render
from infra.config import PLATFORM_KEY
from tests.conftest import rendered


def _object(result: render.RenderResult, kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in result.kubernetes_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def _config(result: render.RenderResult) -> dict[str, Any]:
    return yaml.safe_load(_object(result, "ConfigMap", "llm-gateway-config")["data"]["config.yaml"])


def test_prod_gateway_runs_three_hardened_replicas_on_the_system_nodes() -> None:
    deployment = _object(rendered("prod"), "Deployment", "llm-gateway")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"llm-serving/node-role": "system"}
    assert pod["automountServiceAccountToken"] is False
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_local_gateway_has_one_replica_and_no_node_selector() -> None:
    pod = _object(rendered("local"), "Deployment", "llm-gateway")
    assert pod["spec"]["replicas"] == 1
    assert "nodeSelector" not in pod["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in pod["spec"]["template"]["spec"]


def test_pdb_and_cpu_hpa_bound_the_replicas_from_config() -> None:
    result = rendered("prod")
    pdb = _object(result, "PodDisruptionBudget", "llm-gateway")
    assert pdb["spec"]["maxUnavailable"] == 1
    hpa = _object(result, "HorizontalPodAutoscaler", "llm-gateway")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_config_map_holds_a_config_the_gateway_itself_accepts_with_routes_from_the_stack() -> None:
    config = parse_config(_config(rendered("prod")))
    route = next(route for route in config.routes if route.model == "llama-3-1-8b")
    assert {(t.backend, t.weight) for t in route.targets} == {("llama-3-1-8b", 80.0), ("openai", 20.0)}
    assert route.fallbacks == ["openai"]
    vllm = next(backend for backend in config.backends if backend.name == "llama-3-3-70b")
    assert vllm.dns is not None and vllm.dns.host == "llama-3-3-70b-pods.llm-serving.svc.cluster.local"
    assert config.aliases[0].complex_route == "llama-3-3-70b"
    assert config.stream_recovery is True
    assert config.audit.include_prompts is False


def test_local_default_routes_one_per_model() -> None:
    config = parse_config(_config(rendered("local")))
    assert [route.model for route in config.routes] == ["qwen2-5-0-5b"]


def test_checksum_annotation_follows_the_config_so_a_change_rolls_the_pods() -> None:
    result = rendered("prod")
    text = _object(result, "ConfigMap", "llm-gateway-config")["data"]["config.yaml"]
    annotations = _object(result, "Deployment", "llm-gateway")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/config"] == hashlib.sha256(text.encode()).hexdigest()
    config = copy.deepcopy(render.read_stack_file("prod"))
    config[PLATFORM_KEY]["gateway"]["routes"][0]["targets"][0]["weight"] = 70
    changed = render.run("prod", config=config)
    new = _object(changed, "Deployment", "llm-gateway")["spec"]["template"]["metadata"]["annotations"]
    assert new["checksum/config"] != annotations["checksum/config"]


def test_team_keys_reach_the_config_only_as_sha256_hashes() -> None:
    keys = {"platform": ["sk-platform-1"], "search": ["sk-search-1", "sk-search-2"], "support-bot": ["sk-bot"]}
    result = render.run("prod", secret_values={"teamKeys": keys})
    teams = {team["name"]: team for team in _config(result)["teams"]}
    assert teams["search"]["key_sha256"] == sorted(hashlib.sha256(k.encode()).hexdigest() for k in keys["search"])
    assert teams["search"]["requests_per_minute"] == 600 and teams["search"]["monthly_budget_usd"] == 2000
    text = str(result.kubernetes_objects())
    assert all(key not in text for team_keys in keys.values() for key in team_keys)


def test_a_team_without_a_key_is_a_clear_error() -> None:
    with pytest.raises(pulumi.RunError, match=r"teamKeys must give every team.*missing: \['support-bot'\]"):
        render.run("prod", secret_values={"teamKeys": {"platform": ["a"], "search": ["b"]}})


def test_provider_and_vllm_keys_come_from_a_secret_by_reference() -> None:
    result = rendered("prod")
    secret = _object(result, "Secret", "llm-gateway-credentials")
    # The provider marks the whole map secret; the render masks each value and keeps the keys.
    # The ledger's DSN and the limit store's URL carry the RDS password and the ElastiCache token: secrets too.
    assert secret["stringData"] == {
        "LEDGER_DSN": "[secret]",
        "LIMIT_STORE_URL": "[secret]",
        "OPENAI_API_KEY": "[secret]",
        "VLLM_API_KEY": "[secret]",
    }
    env = _object(result, "Deployment", "llm-gateway")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all("value" not in variable for variable in env)
    assert {v["valueFrom"]["secretKeyRef"]["name"] for v in env} == {"llm-gateway-credentials"}


def test_network_policies_deny_by_default_and_let_only_the_gateway_and_prometheus_reach_vllm() -> None:
    result = rendered("prod")
    deny = _object(result, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"]["podSelector"] == {} and deny["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny["spec"]
    vllm = _object(result, "NetworkPolicy", "vllm-from-gateway-only")
    assert vllm["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "vllm"}
    sources = [rule["from"][0] for rule in vllm["spec"]["ingress"]]
    assert sources[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "llm-gateway"
    assert sources[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert all(rule["ports"] == [{"port": 8000}] for rule in vllm["spec"]["ingress"])


def test_prod_exposes_an_internal_nlb_with_tls_from_acm() -> None:
    service = _object(rendered("prod"), "Service", "llm-gateway-nlb")
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"].startswith("arn:aws:acm:")
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "http"}]
    assert not [o for o in rendered("dev").kubernetes_objects() if o["metadata"]["name"] == "llm-gateway-nlb"]


def test_the_gateway_knows_each_models_context_length_and_prod_sends_longer_prompts_to_openai() -> None:
    # Stack files: prod serves both Llama models with max_model_len 32768, dev its 8B with 8192; gpt-4o-mini (the
    # managed fallback) takes 128k tokens, so prod routes a prompt too long for a Llama model there before any attempt.
    prod = parse_config(_config(rendered("prod")))
    assert {b.name: b.max_model_len for b in prod.backends} == {
        "llama-3-3-70b": 32768,
        "llama-3-1-8b": 32768,
        "openai": None,
    }
    assert {r.model: r.context_fallbacks for r in prod.routes} == {
        "llama-3-1-8b": ["openai"],
        "llama-3-3-70b": ["openai"],
    }
    dev = parse_config(_config(rendered("dev")))
    assert [(b.name, b.max_model_len) for b in dev.backends] == [("llama-3-1-8b", 8192)]


def test_a_model_may_choose_its_balancing_policy_and_the_gateway_gets_only_what_the_stack_says() -> None:
    config = copy.deepcopy(render.read_stack_file("dev"))
    config[PLATFORM_KEY]["models"][0]["balancing"] = {"policy": "prefix_aware", "load_margin": 4}
    raw = _config(render.run("dev", config=config))
    (model,) = parse_config(raw).backends
    assert model.balancing.policy == "prefix_aware" and model.balancing.load_margin == 4
    assert raw["backends"][0]["balancing"] == {"policy": "prefix_aware", "load_margin": 4}
    # Unset: no balancing key at all, so the gateway's default (least_outstanding) applies and the render of the
    # stacks that say nothing stays as it was.
    assert "balancing" not in _config(rendered("dev"))["backends"][0]
