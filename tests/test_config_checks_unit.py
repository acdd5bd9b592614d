"""The config checks through parse_platform alone (no Pulumi render): the shipped stack files pass, and one small
mistake at a time fails with one line that names the stack, the key path, the bad value and what is accepted.

Fast enough to run against every mutant of infra/config.py and infra/semantics.py (bench/mutation.py config). The
expected lines are the house format (infra/config.py ConfigError) written out by hand; the accepted values are the
stack files' own names and the catalogs' lists, never the output of the check under test."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import PLATFORM_KEY, ConfigError, PlatformConfig
from infra.validation import parse_platform

STACKS = Path(__file__).resolve().parents[1] / "stacks"


def stack(name: str) -> dict[str, Any]:
    document = yaml.safe_load((STACKS / f"Pulumi.{name}.yaml").read_text())
    return copy.deepcopy(document["config"][PLATFORM_KEY])


def problems(name: str, platform: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_platform(name, platform)
    assert str(caught.value).startswith(f"stack {name!r}: {len(caught.value.problems)} problem(s)")
    return caught.value.problems


@pytest.mark.parametrize("name", ["dev", "staging", "prod", "local"])
def test_the_shipped_stacks_pass(name: str) -> None:
    platform = parse_platform(name, stack(name))
    assert isinstance(platform, PlatformConfig) and platform.environment == name


P = PLATFORM_KEY


def only_problem(name: str, platform: dict[str, Any]) -> str:
    found = problems(name, platform)
    assert len(found) == 1, found
    return found[0]


def test_a_platform_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_platform("dev", ["environment", "dev"])
    assert caught.value.stack == "dev"
    assert caught.value.problems == [f"{P}: must be a mapping, got list"]


# ---- how pydantic's errors are described: key path, value as written, what is accepted


def test_a_missing_key_is_named_by_its_path() -> None:
    platform = stack("dev")
    del platform["aws"]["region"]
    assert only_problem("dev", platform) == f"{P}.aws.region: required key is missing"


def test_a_literal_lists_the_accepted_values() -> None:
    platform = stack("dev")
    platform["models"][0]["quantization"] = "int3"
    # pydantic's literal_error context: the choices quoted, the last one after "or".
    assert (
        only_problem("dev", platform)
        == f"{P}.models[0].quantization = 'int3': accepted: 'none', 'awq', 'gptq' or 'fp8'"
    )


def test_a_validator_message_loses_pydantics_value_error_prefix() -> None:
    platform = stack("dev")
    platform["aws"]["region"] = "mars-north-1"
    assert only_problem("dev", platform) == (
        f"{P}.aws.region = 'mars-north-1': unknown region 'mars-north-1'; accepted: us-east-1, us-east-2, "
        "us-west-2, eu-west-1, eu-central-1, eu-north-1, ap-northeast-1, ap-southeast-2"
    )


def test_a_mapping_value_is_shown_as_sorted_json() -> None:
    platform = stack("dev")
    platform["gpu_node_groups"][0]["scaling"] = {"min_size": 3, "desired_size": 2, "max_size": 1}
    assert only_problem("dev", platform) == (
        f'{P}.gpu_node_groups[0].scaling = {{"desired_size": 2, "max_size": 1, "min_size": 3}}: '
        "min_size 3 <= desired_size 2 <= max_size 1 must hold"
    )


def test_a_key_with_capitals_stays_a_dotted_path_and_one_with_a_space_is_quoted() -> None:
    platform = stack("dev")
    platform["aws"]["tags"] = {"Team": 5, "cost center": 6}
    assert problems("dev", platform) == [
        f"{P}.aws.tags.Team = 5: Input should be a valid string",
        f"{P}.aws.tags['cost center'] = 6: Input should be a valid string",
    ]


@pytest.mark.parametrize(
    ("length", "shown"),
    [
        # repr adds two quotes: 118 characters show as 120, the most that is shown whole.
        (118, "'" + "x" * 118 + "'"),
        # 119 characters show as 121: cut to 117 characters and "...".
        (119, "'" + "x" * 116 + "..."),
    ],
)
def test_a_long_value_is_cut_at_120_characters(length: int, shown: str) -> None:
    platform = stack("dev")
    platform["aws"]["region"] = "x" * length
    line = only_problem("dev", platform)
    assert line.startswith(f"{P}.aws.region = {shown}: unknown region "), line


# ---- the API endpoint's private allow-list (EKS publicAccessCidrs / cluster security group rules)


@pytest.mark.parametrize(
    ("cidrs", "message"),
    [
        (["10.0.0.0/8", "not-a-cidr"], "'not-a-cidr' is not an IPv4 CIDR such as 10.0.0.0/8"),
        (["0.0.0.0/0"], "0.0.0.0/0 opens the API server to everyone; list your office/VPN/runner CIDRs"),
    ],
)
def test_private_access_cidrs(cidrs: list[str], message: str) -> None:
    platform = stack("prod")
    platform["cluster"]["private_access_cidrs"] = cidrs
    shown = "[" + ", ".join(f'"{cidr}"' for cidr in cidrs) + "]"
    assert only_problem("prod", platform) == f"{P}.cluster.private_access_cidrs = {shown}: {message}"


# ---- catalogs and placement (infra/semantics.py)


def test_unknown_cpu_instance_type_lists_the_catalog() -> None:
    from infra.instances import CPU_INSTANCE_TYPES

    platform = stack("dev")
    platform["cluster"]["system_nodes"]["instance_types"] = ["m6i.large", "m9.huge"]
    assert only_problem("dev", platform) == (
        f"{P}.cluster.system_nodes.instance_types[1] = 'm9.huge': not a known CPU instance type; accepted: "
        + ", ".join(CPU_INSTANCE_TYPES)
    )


def test_unknown_gpu_instance_type_lists_the_catalog() -> None:
    from infra.instances import GPU_INSTANCE_TYPES

    platform = stack("dev")
    platform["gpu_node_groups"][0]["instance_types"] = ["g9.mega"]
    assert only_problem("dev", platform) == (
        f"{P}.gpu_node_groups[0].instance_types[0] = 'g9.mega': not a known GPU instance type; accepted: "
        + ", ".join(GPU_INSTANCE_TYPES)
    )


def test_a_node_group_may_not_mix_gpu_shapes() -> None:
    # g5.xlarge: 1 x A10G; g6e.xlarge: 1 x L40S (AWS's instance type pages).
    platform = stack("dev")
    platform["gpu_node_groups"][0]["instance_types"] = ["g5.xlarge", "g6e.xlarge"]
    assert only_problem("dev", platform) == (
        f"{P}.gpu_node_groups[0].instance_types = ['g5.xlarge', 'g6e.xlarge']: mixes GPU shapes "
        "['1 x A10G', '1 x L40S']; accepted: types with the same GPU model and count (vLLM's memory plan is per GPU)"
    )


def test_a_model_on_aws_needs_a_node_group() -> None:
    platform = stack("prod")
    platform["models"][1]["node_group"] = None
    assert only_problem("prod", platform) == (
        f"{P}.models[1].node_group = None: a model on AWS runs on a GPU node group; accepted: gpu-l40s, gpu-l40s-x4"
    )
    platform = stack("dev")
    platform["models"][0]["node_group"] = None
    platform["gpu_node_groups"] = []
    assert only_problem("dev", platform) == (
        f"{P}.models[0].node_group = None: a model on AWS runs on a GPU node group; accepted: "
        "(define gpu_node_groups first)"
    )


def test_a_model_names_a_node_group_that_exists() -> None:
    platform = stack("prod")
    platform["models"][1]["node_group"] = "gpu-h100"
    assert only_problem("prod", platform) == (
        f"{P}.models[1].node_group = 'gpu-h100': no such GPU node group; accepted: gpu-l40s, gpu-l40s-x4"
    )
    platform = stack("local")
    platform["models"][0]["node_group"] = "gpu-a10g"
    assert only_problem("local", platform) == (
        f"{P}.models[0].node_group = 'gpu-a10g': no such GPU node group; accepted: "
        "(none defined; the local stack runs models on the CPU)"
    )


@pytest.mark.parametrize("gpus", [1, 2])
def test_time_slicing_allows_one_gpu_per_model(gpus: int) -> None:
    # NVIDIA's device plugin with time-slicing refuses a pod that asks for more than one shared GPU
    # (https://github.com/NVIDIA/k8s-device-plugin#shared-access-to-gpus, failRequestsGreaterThanOne).
    platform = stack("dev")
    platform["device_plugin"] = {"time_slicing_replicas": 4}
    platform["models"][0]["gpus"] = gpus
    if gpus == 1:
        parse_platform("dev", platform)
        return
    assert only_problem("dev", platform) == (
        f"{P}.models[0].gpus = 2: with device_plugin.time_slicing_replicas = 4 the device plugin refuses requests "
        "for more than one shared GPU; accepted: gpus = 1, or no time-slicing"
    )


def test_an_unknown_catalog_key_lists_the_catalog() -> None:
    from infra.models import MODEL_CATALOG

    platform = stack("dev")
    platform["models"][0]["catalog"] = "llama-9-1t"
    assert only_problem("dev", platform) == (
        f"{P}.models[0].catalog = 'llama-9-1t': not in the model catalog; accepted: "
        + ", ".join(sorted(MODEL_CATALOG))
        + ", or give `architecture` instead"
    )


# ---- the gateway block against the models (routes, aliases, pricing, replicas)


def test_route_targets_and_fallbacks_name_known_backends() -> None:
    platform = stack("prod")
    platform["gateway"]["routes"][0]["targets"][1]["backend"] = "gpt-5"
    platform["gateway"]["routes"][1]["fallbacks"] = ["openai", "claude"]
    backends = "llama-3-1-8b, llama-3-3-70b, openai"
    assert problems("prod", platform) == [
        f"{P}.gateway.routes[0].targets[1].backend = 'gpt-5': is not defined; known: {backends}",
        f"{P}.gateway.routes[1].fallbacks[1] = 'claude': is not defined; known: {backends}",
    ]


def test_a_route_needs_one_positive_weight() -> None:
    platform = stack("prod")
    platform["gateway"]["routes"][1]["targets"][0]["weight"] = 0
    assert only_problem("prod", platform) == (
        f'{P}.gateway.routes[1].targets = [{{"backend": "llama-3-3-70b", "weight": 0}}]: every weight is 0; '
        "at least one target's weight must be > 0"
    )


def test_aliases_point_at_routes_and_do_not_shadow_one() -> None:
    platform = stack("prod")
    platform["gateway"]["aliases"][0]["complex_route"] = "llama-9"
    assert only_problem("prod", platform) == (
        f"{P}.gateway.aliases[0].complex_route = 'llama-9': is not defined; known: llama-3-1-8b, llama-3-3-70b"
    )
    platform = stack("prod")
    platform["gateway"]["aliases"][0]["model"] = "llama-3-1-8b"
    assert only_problem("prod", platform) == (
        f"{P}.gateway.aliases[0].model = 'llama-3-1-8b': is also a route; pick another name"
    )


def test_pricing_names_a_route_or_a_managed_model() -> None:
    platform = stack("prod")
    platform["gateway"]["pricing"]["gpt-9"] = {"input_per_million": 1, "output_per_million": 2}
    assert only_problem("prod", platform) == (
        f"{P}.gateway.pricing.gpt-9 = 'gpt-9': is not defined; known: gpt-4o-mini, llama-3-1-8b, llama-3-3-70b"
    )


def test_a_managed_api_may_not_take_a_models_name() -> None:
    platform = stack("prod")
    platform["gateway"]["managed_apis"][0]["name"] = "llama-3-1-8b"
    found = problems("prod", platform)
    assert found[0] == f"{P}.gateway.managed_apis[0].name = 'llama-3-1-8b': appears twice; names must be unique"


@pytest.mark.parametrize("replicas", [1, 2])
def test_prod_runs_two_gateway_replicas_at_least(replicas: int) -> None:
    platform = stack("prod")
    platform["gateway"]["replicas"] = replicas
    if replicas == 2:
        parse_platform("prod", platform)
        return
    assert only_problem("prod", platform) == (
        f"{P}.gateway.replicas = 1: prod needs >= 2 gateway replicas (one per AZ)"
    )


def test_the_gateway_autoscaler_ceiling_is_not_below_its_replicas() -> None:
    platform = stack("prod")
    platform["gateway"]["max_replicas"] = 2
    assert only_problem("prod", platform) == (f"{P}.gateway.max_replicas = 2: below replicas 3; accepted: >= replicas")


def test_a_managed_api_name_the_gateway_refuses_is_named_by_its_stack_key() -> None:
    # The gateway's name rule (llm_gateway/config.py NAME_PATTERN) is stricter than the stack's length limit: its
    # refusal of the rendered backend comes back as the stack key of the managed API's name.
    platform = stack("prod")
    platform["gateway"]["managed_apis"][0]["name"] = "open ai"
    for route in platform["gateway"]["routes"]:
        route["fallbacks"] = ["open ai"]
        route["context_fallbacks"] = ["open ai"]
        route["targets"] = [t if t["backend"] != "openai" else {**t, "backend": "open ai"} for t in route["targets"]]
    pattern = "^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"
    assert problems("prod", platform) == [
        f"{P}.gateway.managed_apis[0].name = 'open ai': String should match pattern '{pattern}'; accepted: a string "
        f"matching {pattern}"
    ]


def test_a_stack_without_aws_must_name_the_gateway_image() -> None:
    platform = stack("local")
    del platform["gateway"]["image"]
    assert problems("local", platform) == [
        f"{P}.gateway.image = None: a stack without `aws` must name the gateway image; accepted: an image the cluster "
        "can pull, e.g. llm-gateway:0.1.0 loaded with `kind load docker-image` (README)"
    ]
