"""No secret value reaches any file the render writes: not in clear, not base64-encoded (as in a Secret's `data`),
not inside a base64 blob that holds more than the secret.

Every stack is rendered with distinctive values for every key of `infra.config.SECRET_KEYS`; every byte of every
file `render.write` produces is then searched.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import render
from infra.config import PLATFORM_KEY, SECRET_KEYS

STACKS = render.stack_names()
# Long enough that an accidental match is impossible; only [A-Za-z0-9-] so JSON/YAML quoting cannot alter them.
CANARY = "canary-7f3a9c1e5b"
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


def secret_values(stack: str) -> dict[str, Any]:
    platform = render.read_stack_file(stack).get(PLATFORM_KEY) or {}
    teams = [team["name"] for team in (platform.get("gateway") or {}).get("teams", [])]
    values: dict[str, Any] = {key: f"{CANARY}-{key}-{stack}" for key in SECRET_KEYS if key != "teamKeys"}
    values["teamKeys"] = {team: [f"{CANARY}-key-{team}-{n}" for n in range(2)] for team in teams}
    return values


def flat_values(values: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for value in values.values():
        if isinstance(value, dict):
            flat += [key for keys in value.values() for key in keys]
        else:
            flat.append(value)
    return flat


def encodings(value: str) -> list[bytes]:
    """The value itself and its base64 forms, also at the three alignments it can have inside a longer blob."""
    raw = value.encode()
    forms = [raw]
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"x" * pad + raw)
            # Drop the characters that depend on the bytes before and after the value.
            start = {0: 0, 1: 2, 2: 3}[pad]
            forms.append(encoded[start:-4])
    return forms


def leaks(content: bytes, values: list[str]) -> list[str]:
    found = []
    for value in values:
        if any(form in content for form in encodings(value)):
            found.append(value)
    # Belt and braces: decode every base64-looking run and search the decoded bytes too.
    for run in _BASE64_RUN.findall(content):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(run + b"=" * (-len(run) % 4))
            except ValueError:
                continue
            found += [value for value in values if value.encode() in decoded and value not in found]
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_value_in_any_rendered_file(stack: str, tmp_path: Path) -> None:
    values = secret_values(stack)
    result = render.run(stack, secret_values=values)
    render.write(result, tmp_path)
    files = sorted(path for path in tmp_path.rglob("*") if path.is_file())
    assert {"plan.json", "outputs.json"} <= {path.name for path in files}
    everything = flat_values(values)
    leaked = {str(path.relative_to(tmp_path)): leaks(path.read_bytes(), everything) for path in files}
    assert not {name: found for name, found in leaked.items() if found}, f"{stack}: secrets written in clear"
    # The secrets did reach the program and were masked, not dropped (else this test would prove nothing).
    plan = (tmp_path / "plan.json").read_text()
    assert render.SECRET_MARK in plan, f"{stack}: no secret reached any resource"


@pytest.mark.parametrize("stack", [s for s in STACKS if (render.read_stack_file(s)[PLATFORM_KEY]).get("models")])
def test_vllm_api_key_reaches_a_kubernetes_secret_masked(stack: str, tmp_path: Path) -> None:
    result = render.run(stack, secret_values=secret_values(stack))
    render.write(result, tmp_path)
    secrets = [
        document
        for path in tmp_path.glob("*.yaml")
        for document in yaml.safe_load_all(path.read_text())
        if document and document.get("kind") == "Secret"
    ]
    masked = [
        secret
        for secret in secrets
        # The whole map or single entries may be masked, depending on how the component built it.
        if render.SECRET_MARK in yaml.safe_dump([secret.get("stringData"), secret.get("data")])
    ]
    assert masked, f"{stack}: no Kubernetes Secret carries a masked value; where did vllmApiKey go?"


def test_the_detector_finds_planted_values() -> None:
    """The search is only worth something if it finds a value in every form a render could write it."""
    value = f"{CANARY}-planted"
    assert not leaks(b"nothing to see " * 50, [value])
    assert leaks(f"env: {value}\n".encode(), [value]) == [value]
    assert leaks(b"data: " + base64.b64encode(value.encode()), [value]) == [value]
    for prefix in (b"", b"a", b"ab", b'{"token": "'):
        blob = base64.b64encode(prefix + value.encode() + b'", "more": 1}')
        assert leaks(b"config.json: " + blob, [value]) == [value], prefix
        assert leaks(base64.urlsafe_b64encode(prefix + value.encode()), [value]) == [value], prefix


@pytest.mark.parametrize("stack", STACKS)
def test_team_keys_reach_the_gateway_as_hashes_only(stack: str, tmp_path: Path) -> None:
    """The positive side of the leak test for teamKeys: each key's SHA-256 is rendered, the key never is."""
    values = secret_values(stack)
    result = render.run(stack, secret_values=values)
    files = render.write(result, tmp_path)
    everything = "".join(files.values())
    keys = [key for team_keys in values["teamKeys"].values() for key in team_keys]
    assert keys, f"{stack}: the stack defines no teams"
    missing = [key for key in keys if hashlib.sha256(key.encode()).hexdigest() not in everything]
    assert not missing, f"{stack}: the gateway's config lacks the hashes of {missing}"
    assert not any(key in everything for key in keys)
