"""The platform's secrets, read once from the stack config; each stays a Pulumi secret Output end to end."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class Secrets:
    """Every secret the platform uses, as Pulumi secret outputs (None when the stack does not set it)."""

    hf_token: pulumi.Output[str] | None
    vllm_api_key: pulumi.Output[str] | None
    openai_api_key: pulumi.Output[str] | None
    grafana_admin_password: pulumi.Output[str] | None
    team_keys: pulumi.Output[dict[str, list[str]]] | None
    # The stores of `stores:` (infra/stores_wiring.py); None when the stack sets none.
    ledger_db_password: pulumi.Output[str] | None = None
    limit_store_auth_token: pulumi.Output[str] | None = None


def read_secrets(config: pulumi.Config) -> Secrets:
    """The keys of SECRET_KEYS (infra/config.py), each a Pulumi secret."""
    return Secrets(
        hf_token=config.get_secret("hfToken"),
        vllm_api_key=config.get_secret("vllmApiKey"),
        openai_api_key=config.get_secret("openaiApiKey"),
        grafana_admin_password=config.get_secret("grafanaAdminPassword"),
        team_keys=config.get_secret_object("teamKeys"),
        ledger_db_password=config.get_secret("ledgerDbPassword"),
        limit_store_auth_token=config.get_secret("limitStoreAuthToken"),
    )
