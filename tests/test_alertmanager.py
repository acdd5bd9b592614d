"""kube-prometheus-stack on EKS and Alertmanager's receivers: what the rendered release asks for, and that
Alertmanager itself (`amtool check-config`) accepts the configuration it will load."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.monitoring import AlertReceiver, alertmanager_config
from infra import render
from infra.config import PLATFORM_KEY, ConfigError
from infra.validation import parse_platform
from tests.conftest import rendered

EKS_STACKS = ["dev", "prod", "staging"]
# Components whose ServiceMonitors would find nothing on EKS; names are the chart's top-level value keys
# (prometheus-community/helm-charts@kube-prometheus-stack-78.2.1 charts/kube-prometheus-stack/values.yaml).
UNREACHABLE_ON_EKS = ("kubeEtcd", "kubeScheduler", "kubeControllerManager", "kubeProxy")


def kps_values(stack: str) -> dict[str, Any]:
    (values,) = [
        record.inputs["values"]
        for record in rendered(stack).resources
        if record.type == "kubernetes:helm.sh/v3:Release" and record.inputs["name"] == "kps"
    ]
    return values


def objects_named(stack: str, kind: str, name: str) -> list[dict[str, Any]]:
    return [
        obj for obj in rendered(stack).kubernetes_objects() if obj["kind"] == kind and obj["metadata"]["name"] == name
    ]


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_eks_stacks_do_not_scrape_the_control_plane_eks_hides(stack: str) -> None:
    values = kps_values(stack)
    for component in UNREACHABLE_ON_EKS:
        assert values.get(component) == {"enabled": False}, f"{stack}: {component} is scraped"


@pytest.mark.parametrize(
    ("stack", "routes"),
    [
        # Hand-copied from the stack files: which receiver gets which severities.
        ("prod", {"pagerduty-llm-oncall": "critical", "slack-llm-platform": "critical|warning"}),
        ("staging", {"slack-llm-staging": "critical|warning"}),
        ("dev", {}),
    ],
)
def test_receivers_and_severity_routes_follow_the_stack(stack: str, routes: dict[str, str]) -> None:
    config = kps_values(stack)["alertmanager"]["config"]
    rendered_routes = {
        route["receiver"]: re.fullmatch(r'severity =~ "(.+)"', route["matchers"][0]).group(1)  # type: ignore[union-attr]
        for route in config["route"]["routes"]
        if route["receiver"] != "null"
    }
    assert rendered_routes == routes
    assert config["route"]["receiver"] == "null"
    assert {receiver["name"] for receiver in config["receivers"]} == {"null", *routes}


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_receiver_urls_and_keys_stay_secret(stack: str) -> None:
    values = kps_values(stack)
    assert values["alertmanager"]["alertmanagerSpec"]["secrets"] == ["alertmanager-receivers"]
    (secret,) = objects_named(stack, "Secret", "alertmanager-receivers")
    assert secret["metadata"]["namespace"] == "monitoring"
    data = secret["stringData"]
    assert data == render.SECRET_MARK or set(data.values()) == {render.SECRET_MARK}
    # The stand-in URLs the render feeds in appear nowhere in clear (not in helm values, which helm stores in clear).
    assert "placeholder.invalid" not in str([record.inputs for record in rendered(stack).resources])
    for receiver in values["alertmanager"]["config"]["receivers"][1:]:
        ((_, configs),) = [(key, value) for key, value in receiver.items() if key.endswith("_configs")]
        file_keys = {key for key in configs[0] if key.endswith("_file")}
        assert len(file_keys) == 1
        assert configs[0][file_keys.pop()] == f"/etc/alertmanager/secrets/alertmanager-receivers/{receiver['name']}"


def test_local_light_stack_has_no_alertmanager() -> None:
    values = kps_values("local")
    assert values["alertmanager"] == {"enabled": False}
    assert not objects_named("local", "Secret", "alertmanager-receivers")


# --- amtool: Alertmanager's own parser over the rendered configuration -------------------------------------------


def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.skip("amtool is not installed: run scripts/install-alertmanager.sh")
    return path


def amtool_version() -> tuple[int, int]:
    out = subprocess.run([amtool(), "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"version (\d+)\.(\d+)", out.stdout + out.stderr)
    assert match, out
    return int(match.group(1)), int(match.group(2))


def check_config(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([amtool(), "check-config", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_amtool_accepts_the_rendered_alertmanager_config(stack: str, tmp_path: Path) -> None:
    result = check_config(kps_values(stack)["alertmanager"]["config"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_rejects_a_route_to_an_undefined_receiver(tmp_path: Path) -> None:
    # Control: the check above must be able to fail.
    config = copy.deepcopy(kps_values("prod")["alertmanager"]["config"])
    config["route"]["routes"][1]["receiver"] = "nobody"
    result = check_config(config, tmp_path)
    assert result.returncode != 0 and 'undefined receiver "nobody"' in result.stdout + result.stderr


def _receiver(kind: str) -> AlertReceiver:
    return AlertReceiver(name=f"{kind}-x", kind=kind, severities=["critical"], secret_value="s")


@pytest.mark.parametrize("kind", ["slack", "pagerduty", "webhook"])
def test_amtool_accepts_every_receiver_kind(kind: str, tmp_path: Path) -> None:
    config = alertmanager_config([_receiver(kind)])
    if kind == "webhook" and amtool_version() < (0, 26):
        # `url_file` exists in the Alertmanager the chart runs (prometheus/alertmanager@v0.28.1
        # config/notifiers.go: WebhookConfig.URLFile) but not in Debian's amtool 0.25: check the key by name, then
        # let this amtool check everything else with an inline `url` in its place.
        webhook = next(receiver for receiver in config["receivers"] if receiver.get("webhook_configs"))
        settings = webhook["webhook_configs"][0]
        assert set(settings) >= {"url_file"} and "url" not in settings
        settings["url"] = "https://alerts.example.invalid/hook"
        del settings["url_file"]
    result = check_config(config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- configuration errors ------------------------------------------------------------------------------------------


def _with_receivers(receivers: list[dict[str, Any]], light: bool = False) -> dict[str, Any]:
    raw = copy.deepcopy(render.read_stack_file("prod")[PLATFORM_KEY])
    raw["monitoring"]["alertmanager"] = {"receivers": receivers}
    if light:
        raw["monitoring"] = {"light": True, "alertmanager": {"receivers": receivers}}
    return raw


GOOD = {"name": "pager", "kind": "pagerduty", "secret": "alertPagerKey", "severities": ["critical"]}


@pytest.mark.parametrize(
    ("receivers", "light", "expected"),
    [
        (
            [{**GOOD, "kind": "email"}],
            False,
            "llm-serving:platform.monitoring.alertmanager.receivers[0].kind = 'email': accepted: "
            "'slack', 'pagerduty' or 'webhook'",
        ),
        ([{**GOOD, "secret": "vllmApiKey"}], False, "receivers[0].secret = 'vllmApiKey': 'vllmApiKey' is already"),
        ([{**GOOD, "secret": "https://hooks.slack.com/x"}], False, "is not a config key name"),
        ([{**GOOD, "channel": "#x"}], False, "`channel` applies to slack receivers only"),
        ([{**GOOD, "severities": ["page"]}], False, "receivers[0].severities[0] = 'page': accepted:"),
        ([GOOD, {**GOOD, "secret": "otherKey"}], False, "receiver names must be unique"),
        ([GOOD], True, "`light` monitoring runs no Alertmanager"),
    ],
)
def test_bad_receivers_fail_with_one_line_naming_the_key(
    receivers: list[dict[str, Any]], light: bool, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        parse_platform("prod", _with_receivers(receivers, light))
    assert any(expected in problem for problem in error.value.problems), error.value.problems


def test_a_receiver_without_its_secret_stops_the_program(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _with_receivers([GOOD])
    config = {**render.read_stack_file("prod"), PLATFORM_KEY: raw}
    secrets = render.placeholder_secrets(raw)
    del secrets["alertPagerKey"]
    # The render feeds every secret a stand-in; take this one away, as on a stack where nobody set it.
    monkeypatch.setattr(render, "placeholder_secrets", lambda _raw: secrets)
    with pytest.raises(pulumi.RunError, match=r"needs secret llm-serving:alertPagerKey: pulumi config set --secret"):
        render.run("prod", config=config)
