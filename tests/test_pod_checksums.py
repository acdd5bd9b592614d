"""A rotated secret reaches the pods: each pod template carries a checksum of the secret values its env reads.

Env vars from a Secret are resolved once when the container starts (kubernetes.io/docs/concepts/configuration/
secret/#using-secrets-as-environment-variables: "a container does not see a change to a Secret's value until it
restarts"), so the checksum must change with the values, and only with them. It must also stay readable in the
render (a secret-derived value would be masked, and with it the whole Deployment in a real preview).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest

from infra import render
from infra.config import PLATFORM_KEY, SECRET_KEYS

STACKS = render.stack_names()
ANNOTATION = "checksum/secret"


def _values(**rotated: str) -> dict[str, Any]:
    values: dict[str, Any] = {key: f"value-{key}" for key in SECRET_KEYS if key != "teamKeys"}
    return values | rotated


@cache
def _checksums(stack: str, rotated: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """Deployment name -> its pod template's secret checksum."""
    platform = render.read_stack_file(stack)[PLATFORM_KEY]
    teams = {team["name"]: [f"key-{team['name']}"] for team in platform["gateway"]["teams"]}
    result = render.run(stack, secret_values=_values(**dict(rotated)) | {"teamKeys": teams})
    return {
        obj["metadata"]["name"]: obj["spec"]["template"]["metadata"].get("annotations", {}).get(ANNOTATION, "")
        for obj in result.kubernetes_objects()
        if obj["kind"] == "Deployment" and obj["metadata"].get("namespace") == platform.get("namespace", "llm-serving")
    }


def _expected_readers(stack: str, key: str) -> set[str]:
    """Which Deployments read each secret, from the stack file (independent of the components)."""
    platform = render.read_stack_file(stack)[PLATFORM_KEY]
    models = {model["name"] for model in platform.get("models", [])}
    managed_apis = bool(platform["gateway"].get("managed_apis"))
    return {
        # The vLLM servers check it; the gateway sends it to them.
        "vllmApiKey": models | {"llm-gateway"},
        "hfToken": models,
        "openaiApiKey": {"llm-gateway"} if managed_apis else set(),
    }[key]


@pytest.mark.parametrize("stack", STACKS)
def test_equal_secret_values_give_equal_readable_checksums(stack: str) -> None:
    first = _checksums(stack)
    platform = render.read_stack_file(stack)[PLATFORM_KEY]
    assert set(first) == {model["name"] for model in platform["models"]} | {"llm-gateway"}
    for name, checksum in first.items():
        assert re.fullmatch(r"[0-9a-f]{64}", checksum), f"{stack}: {name} has {ANNOTATION} = {checksum!r}"
    # A second, separate run of the program with the same values.
    _checksums.cache_clear()
    assert _checksums(stack) == first


@pytest.mark.parametrize("key", ["vllmApiKey", "hfToken", "openaiApiKey"])
@pytest.mark.parametrize("stack", STACKS)
def test_a_rotated_secret_changes_the_checksum_of_exactly_the_pods_that_read_it(stack: str, key: str) -> None:
    before = _checksums(stack)
    after = _checksums(stack, ((key, f"rotated-{key}"),))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == _expected_readers(stack, key), f"{stack}: rotating {key} changed {changed}"
