"""Wiring of the LLM gateway: the stack's `gateway` section rendered into the gateway's own config schema.

The schema belongs to the gateway (gateway_image/llm_gateway/config.py); the rendered file is validated with it
here, so a preview fails on a config the gateway would refuse at start.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pulumi
import yaml
from llm_gateway.config import ConfigError as GatewayConfigError
from llm_gateway.config import parse_config

from components.cluster import SYSTEM_NODE_LABEL
from components.gateway import LABELS, PORT, Gateway, GatewayArgs
from components.naming import VLLM_PORT, vllm_headless_host
from infra.config import PlatformConfig
from infra.elastic import wake_config
from infra.plan import traces_url
from infra.secrets import Secrets
from infra.stores_wiring import StoreEndpoints, gateway_store_sections, wire_gateway_stores

# The build context of the gateway image, relative to the working directory: `pulumi up` runs in the project root,
# so the docker-build provider and the render both see `gateway_image` (and the render stays the same everywhere).
GATEWAY_IMAGE_DIR = Path(__file__).resolve().parents[1] / "gateway_image"
# The system nodes that run the gateway use the x86_64 AMI (components/cluster.py, ami_type AL2023_x86_64_STANDARD).
GATEWAY_IMAGE_PLATFORMS = ["linux/amd64"]
VLLM_KEY_ENV = "VLLM_API_KEY"
OPENAI_KEY_ENV = "OPENAI_API_KEY"


def gateway_config(platform: PlatformConfig, team_key_hashes: dict[str, list[str]]) -> dict[str, Any]:
    """The gateway's config file as a plain dict (teams carry only SHA-256 hashes of their keys)."""
    gateway = platform.gateway
    ns = platform.namespace
    backends: list[dict[str, Any]] = [
        {
            "name": model.name,
            "kind": "vllm",
            # The headless Service: one A record per ready pod, so the gateway balances pods itself.
            "dns": {"host": vllm_headless_host(model.name, ns), "port": VLLM_PORT, "refresh_s": 5.0},
            "api_key_env": VLLM_KEY_ENV,
            "model": model.name,
            # The same limit vLLM is started with: a prompt clearly longer goes to the route's context_fallbacks
            # before any attempt, instead of costing a 400 from vLLM first.
            "max_model_len": model.max_model_len,
            # Only what the stack sets (none: the gateway's default, least_outstanding), as for aliases below.
            **({"balancing": model.balancing.model_dump(mode="json", exclude_unset=True)} if model.balancing else {}),
            # A model that may sit at zero replicas: the gateway holds its requests while it wakes (infra/elastic.py).
            **wake_config(platform, model),
        }
        for model in platform.models
    ]
    backends += [
        {"name": api.name, "kind": "openai", "url": api.base_url, "api_key_env": OPENAI_KEY_ENV, "model": api.model}
        for api in gateway.managed_apis
    ]
    # Routes, aliases, teams and prices are the gateway's own models already: they are written as the stack says
    # them (a drained target, weight 0, included), so the i-th route here is the stack's i-th route.
    routes = [route.model_dump(mode="json") for route in gateway.routes] or [
        {"model": model.name, "targets": [{"backend": model.name, "weight": 1.0}]} for model in platform.models
    ]
    teams = [
        {**team.model_dump(mode="json", exclude_none=True), "key_sha256": sorted(team_key_hashes.get(team.name, []))}
        for team in gateway.teams
    ]
    return {
        "server": {
            "host": "0.0.0.0",
            "port": PORT,
            "max_body_bytes": gateway.max_body_bytes,
            "request_timeout_s": gateway.request_timeout_s,
        },
        "backends": backends,
        "routes": routes,
        # Only what the stack sets: the defaults are the same model's, and a `rules` block stays as short as written.
        "aliases": [alias.model_dump(mode="json", exclude_unset=True) for alias in gateway.aliases],
        "teams": teams,
        "pricing": {name: price.model_dump(mode="json") for name, price in sorted(gateway.pricing.items())},
        # Standard output: the node's log pipeline keeps each line even if the pod dies right after answering.
        "audit": {"path": "-", "include_prompts": gateway.audit_include_prompts},
        "stream_recovery": gateway.stream_recovery,
        **gateway_store_sections(platform),
        **tracing_block(platform),
    }


def tracing_block(platform: PlatformConfig) -> dict[str, Any]:
    """The gateway's `tracing` section when the stack traces requests; absent otherwise (the gateway's default: off)."""
    url = traces_url(platform)
    if url is None:
        return {}
    return {"tracing": {"enabled": True, "endpoint": url, "sample_ratio": platform.monitoring.tracing.sample_ratio}}


def hash_team_keys(stack: str, teams: list[str], keys: dict[str, Any]) -> dict[str, list[str]]:
    unknown = sorted(set(keys) - set(teams))
    missing = [team for team in teams if not keys.get(team)]
    if unknown or missing:
        raise pulumi.RunError(
            f"stack {stack!r}: secret llm-serving:teamKeys must give every team in gateway.teams at least one key "
            f"and name no other team (missing: {missing or 'none'}, unknown: {unknown or 'none'})"
        )
    return {team: [hashlib.sha256(str(key).encode()).hexdigest() for key in keys[team]] for team in teams}


def render_config_yaml(platform: PlatformConfig, hashes: dict[str, list[str]]) -> str:
    config = gateway_config(platform, hashes)
    try:
        parse_config(config, source=f"stack {pulumi.get_stack()!r}: rendered gateway config")
    except GatewayConfigError as error:
        raise pulumi.RunError(str(error)) from None
    return yaml.safe_dump(config, sort_keys=True)


def gateway_image(platform: PlatformConfig, aws_provider: pulumi.ProviderResource | None) -> pulumi.Input[str]:
    """The stack's named image, or the one `pulumi up` builds from gateway_image/ into the stack's ECR repository."""
    if platform.gateway.image is not None:
        return platform.gateway.image
    # Imported here: the local stack (which always names its image) never loads the AWS SDK.
    from components.gateway_image import GatewayImage, GatewayImageArgs

    # The embedding scorer's model and torch come with the `semantic` extra: built in only when an alias uses it.
    semantic = any(alias.scorer == "embedding" for alias in platform.gateway.aliases)
    image = GatewayImage(
        "llm-gateway-image",
        GatewayImageArgs(
            repository_name=f"llm-serving-{platform.environment}/llm-gateway",
            context_dir=os.path.relpath(GATEWAY_IMAGE_DIR),
            platforms=GATEWAY_IMAGE_PLATFORMS,
            build_args={"SEMANTIC": "true" if semantic else "false"},
        ),
        opts=pulumi.ResourceOptions(providers=[aws_provider] if aws_provider else []),
    )
    return image.ref


def wire_gateway(
    platform: PlatformConfig,
    secrets: Secrets,
    opts: pulumi.ResourceOptions,
    exposure_depends_on: list[pulumi.Resource] | None = None,
    aws_provider: pulumi.ProviderResource | None = None,
    store_endpoints: StoreEndpoints | None = None,
) -> dict[str, object]:
    stack = pulumi.get_stack()
    if secrets.team_keys is None:
        raise pulumi.RunError(
            f"stack {stack!r}: secret llm-serving:teamKeys is not set; set it to a JSON object "
            '{"<team>": ["<key>", ...]} for the teams in gateway.teams (pulumi config set --secret ...)'
        )
    teams = [team.name for team in platform.gateway.teams]
    # Only SHA-256 hashes of high-entropy keys leave the secret: they identify a key but cannot be turned back
    # into one, so they may live in the ConfigMap (and in the checksum that rolls the pods).
    hashes = pulumi.Output.unsecret(secrets.team_keys.apply(lambda keys: hash_team_keys(stack, teams, keys or {})))
    config_yaml = hashes.apply(lambda value: render_config_yaml(platform, value))
    secret_env: dict[str, pulumi.Output[str]] = {}
    if secrets.vllm_api_key is not None:
        secret_env[VLLM_KEY_ENV] = secrets.vllm_api_key
    if platform.gateway.managed_apis:
        if secrets.openai_api_key is None:
            raise pulumi.RunError(
                f"stack {stack!r}: gateway.managed_apis needs secret llm-serving:openaiApiKey "
                "(pulumi config set --secret llm-serving:openaiApiKey <key>)"
            )
        secret_env[OPENAI_KEY_ENV] = secrets.openai_api_key
    ingress = platform.gateway.ingress
    image = gateway_image(platform, aws_provider)
    node_selector = dict(SYSTEM_NODE_LABEL) if platform.aws is not None else None
    stores = wire_gateway_stores(
        platform, secrets, opts, image, store_endpoints or StoreEndpoints(), LABELS, node_selector
    )
    secret_env |= stores.secret_env
    gateway = Gateway(
        "llm-gateway",
        GatewayArgs(
            namespace=platform.namespace,
            image=image,
            replicas=platform.gateway.replicas,
            max_replicas=platform.gateway.max_replicas,
            config_yaml=config_yaml,
            secret_env=secret_env,
            node_selector=node_selector,
            spool_dir=stores.spool_dir,
            spool_size_limit=stores.spool_size_limit,
            deployment_depends_on=stores.depends_on,
            ingress_kind=ingress.kind,
            ingress_host=ingress.host,
            ingress_tls_secret=ingress.tls_secret_name,
            certificate_arn=ingress.certificate_arn,
            internal=ingress.internal,
            exposure_depends_on=list(exposure_depends_on or []),
        ),
        opts=opts,
    )
    return {"gateway_url": gateway.service_url}
