"""Offline render: run the real program in-process under the Pulumi SDK's mocks and write what it would create.

The program is `infra.program.main`, exactly what `pulumi up` runs; only the engine is replaced. Every resource the
program registers is recorded in its wire form (the form the engine would receive), where secrets are marked at the
leaf, so a secret is written as `[secret]` while the rest of its object stays readable and schema-valid.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from pulumi.runtime.mocks import MockMonitor

from infra.config import PLATFORM_KEY, PROJECT, SECRET_KEYS

ROOT = Path(__file__).resolve().parent.parent
STACKS_DIR = ROOT / "stacks"
SECRET_MARK = "[secret]"

# Signatures of the Pulumi wire format (pulumi/runtime/rpc.py).
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
_OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


@dataclass
class Recorded:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    # URNs this resource waits for (explicit `depends_on`, expanded through components, and input dependencies).
    dependencies: list[str] = field(default_factory=list)


@dataclass
class RenderResult:
    stack: str
    resources: list[Recorded]
    outputs: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def kubernetes_objects(self) -> list[dict[str, Any]]:
        return [record.inputs for record in self.resources if _is_kubernetes_object(record)]


def stack_names() -> list[str]:
    return sorted(path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in STACKS_DIR.glob("Pulumi.*.yaml"))


def read_stack_file(stack: str) -> dict[str, Any]:
    path = STACKS_DIR / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no stack {stack!r}: {path} does not exist (stacks: {', '.join(stack_names())})")
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: `config` must be a mapping")
    return config


def placeholder_secrets(platform_raw: Any) -> dict[str, Any]:
    """Stand-ins for secrets the render cannot decrypt; they are masked in every output anyway."""
    teams = []
    if isinstance(platform_raw, dict):
        gateway = platform_raw.get("gateway")
        if isinstance(gateway, dict) and isinstance(gateway.get("teams"), list):
            teams = [team.get("name") for team in gateway["teams"] if isinstance(team, dict)]
    values: dict[str, Any] = {key: f"placeholder-{key}" for key in SECRET_KEYS}
    values["teamKeys"] = {str(team): [f"placeholder-key-{team}"] for team in teams}
    # Alertmanager receivers name their own secret keys (monitoring.alertmanager.receivers[].secret).
    monitoring = platform_raw.get("monitoring") if isinstance(platform_raw, dict) else None
    alertmanager = monitoring.get("alertmanager") if isinstance(monitoring, dict) else None
    receivers = alertmanager.get("receivers") if isinstance(alertmanager, dict) else None
    for receiver in receivers if isinstance(receivers, list) else []:
        if isinstance(receiver, dict) and isinstance(receiver.get("secret"), str):
            values[receiver["secret"]] = f"https://placeholder.invalid/{receiver['secret']}"
    return values


def _clean(value: Any) -> Any:
    """Wire form -> plain data: secrets masked, resource references by URN, integral doubles back to ints."""
    if isinstance(value, dict):
        signature = value.get(_SIG_KEY)
        if signature == _SECRET_SIG:
            return _mask(value.get("value"))
        if signature == _RESOURCE_SIG:
            return value.get("urn", "")
        if signature == _OUTPUT_SIG:
            return _mask(value.get("value")) if value.get("secret") else _clean(value.get("value"))
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value == _UNKNOWN:
        return "[unknown]"
    return value


def _mask(value: Any) -> Any:
    """Mask every leaf of a secret but keep its shape (a Secret's keys stay readable and schema-valid)."""
    if isinstance(value, dict) and _SIG_KEY not in value:
        return {key: _mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask(item) for item in value]
    return SECRET_MARK


def _is_kubernetes_object(record: Recorded) -> bool:
    return (
        record.custom
        and record.type.startswith("kubernetes:")
        and not record.type.startswith("kubernetes:helm.sh")
        and "kind" in record.inputs
    )


def run(
    stack: str,
    secret_values: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    *,
    allow_placeholders: bool = True,
) -> RenderResult:
    """Run the program for `stack` under mocks; bad config raises `pulumi.RunError` with the ConfigError text.

    `config` replaces the stack file's `config:` mapping (tests and benchmarks render variations of a stack).
    The render keeps the stack files' example values (documentation CIDRs, the example account);
    `allow_placeholders=False` runs the program exactly as `pulumi up` does, which refuses them.
    """
    from pulumi.runtime.config import set_all_config

    if config is None:
        config = read_stack_file(stack)
    platform_raw = config.get(PLATFORM_KEY)
    secrets = placeholder_secrets(platform_raw) | (secret_values or {})
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue  # encrypted in the stack file: the render uses the stand-in
        flat[key] = value if isinstance(value, str) else json.dumps(value)
    secret_keys = []
    for key, value in secrets.items():
        flat[f"{PROJECT}:{key}"] = value if isinstance(value, str) else json.dumps(value)
        secret_keys.append(f"{PROJECT}:{key}")
    set_all_config(flat, secret_keys)

    region = "us-east-1"
    if isinstance(platform_raw, dict) and isinstance(platform_raw.get("aws"), dict):
        region = str(platform_raw["aws"].get("region", region))

    from infra.program import main

    return record(lambda: main(allow_placeholders=allow_placeholders), stack, region)


def record(program: Callable[[], None], stack: str, region: str = "us-east-1") -> RenderResult:
    """Run `program` in a fresh stack under the mocks and record every resource it registers.

    `run` passes the whole program; tests pass a single component's construction to check it alone.
    """
    from pulumi.runtime import mocks, settings
    from pulumi.runtime.stack import run_in_stack
    from pulumi.runtime.sync_await import _sync_await

    from infra.mocks import RenderMocks

    _ensure_event_loop()
    monitor = RecordingMonitor(RenderMocks(region))
    settings.reset_options(project=PROJECT, stack=stack, preview=False)
    mocks.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    # set_mocks registers a root stack of its own; the program gets a fresh one from run_in_stack, as under `up`.
    settings.ROOT.set(None)
    os.environ.setdefault("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
    try:
        _sync_await(run_in_stack(program))
    finally:
        settings.reset_options()
    resources = sorted(monitor.records, key=lambda record: record.urn)
    return RenderResult(stack=stack, resources=resources, outputs=monitor.stack_outputs)


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (embedded config files, dashboards) as literal blocks, so a diff shows changed lines."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ReadableDumper.add_representer(str, _represent_str)


def _ensure_event_loop() -> None:
    """The SDK registers resources on the thread's current event loop; after an `asyncio.run` (a test, a caller)
    the main thread has none, so give it a fresh one."""
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def _component_of(record: Recorded, by_urn: dict[str, Recorded]) -> str:
    parent = by_urn.get(record.parent)
    while parent is not None and parent.custom:
        parent = by_urn.get(parent.parent)
    if parent is None:
        return "platform"
    return parent.name


def write(result: RenderResult, out_dir: Path) -> dict[str, str]:
    """Write `<component>.yaml` per component, `plan.json` and `outputs.json`; returns name -> content."""
    by_urn = {record.urn: record for record in result.resources}
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in result.resources:
        if _is_kubernetes_object(record):
            groups.setdefault(_component_of(record, by_urn), []).append(record.inputs)
    files: dict[str, str] = {}
    for component, objects in sorted(groups.items()):
        objects.sort(
            key=lambda obj: (
                obj.get("kind", ""),
                obj.get("metadata", {}).get("namespace", ""),
                obj.get("metadata", {}).get("name", ""),
            )
        )
        files[f"{component}.yaml"] = yaml.dump_all(
            objects, Dumper=_ReadableDumper, sort_keys=True, default_flow_style=False, width=120
        )
    plan = [
        {
            "type": record.type,
            "name": record.name,
            "parent": record.parent,
            "urn": record.urn,
            "inputs": record.inputs,
        }
        for record in result.resources
    ]
    files["plan.json"] = json.dumps(plan, indent=2, sort_keys=True) + "\n"
    files["outputs.json"] = json.dumps(result.outputs, indent=2, sort_keys=True) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.yaml"):
        if stale.name not in files:
            stale.unlink()
    for name, content in files.items():
        (out_dir / name).write_text(content)
    result.files = files
    return files


def summary(result: RenderResult) -> str:
    counts = Counter(record.type for record in result.resources)
    lines = [f"stack {result.stack}: {len(result.resources)} resources"]
    lines += [f"  {count:4d}  {kind}" for kind, count in sorted(counts.items())]
    cost = result.outputs.get("cost", {})
    if isinstance(cost, dict):
        gpus = cost.get("gpus_by_type", {})
        if gpus:
            lines.append("GPUs: " + ", ".join(f"{count} x {gpu}" for gpu, count in sorted(gpus.items())))
        if "estimated_monthly_usd" in cost:
            lines.append(f"estimated monthly cost: ${cost['estimated_monthly_usd']:,.0f} ({cost.get('basis', '')})")
        stores = cost.get("stores", {})
        if isinstance(stores, dict) and stores:
            lines.append(
                "stores per month: " + ", ".join(f"{key}=${value:,.2f}" for key, value in sorted(stores.items()))
            )
        if "idle_monthly_usd" in cost:
            lines.append(
                f"monthly cost idle: ${cost['idle_monthly_usd']:,.0f} (models at their minimum, empty Karpenter "
                f"nodes gone); at full scale: ${cost['full_scale_monthly_usd']:,.0f} (models at their maximum)"
            )
    scaling = result.outputs.get("scaling", {})
    if isinstance(scaling, dict):
        for model, figures in sorted(scaling.items()):
            if isinstance(figures, dict):
                lines.append(
                    f"scaling {model}: " + ", ".join(f"{key}={value}" for key, value in sorted(figures.items()))
                )
    plans = result.outputs.get("capacity", {})
    if isinstance(plans, dict):
        for model, plan in sorted(plans.items()):
            if isinstance(plan, dict):
                lines.append(f"model {model}: " + ", ".join(f"{key}={value}" for key, value in sorted(plan.items())))
    return "\n".join(lines)


class RecordingMonitor(MockMonitor):
    """A MockMonitor that also keeps each registration's wire-form inputs and the stack's outputs."""

    def __init__(self, mocks: Any) -> None:
        super().__init__(mocks)
        self.records: list[Recorded] = []
        self.stack_outputs: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.records.append(
                Recorded(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=bool(request.custom),
                    inputs=_clean(json_format.MessageToDict(request.object)),
                    dependencies=sorted(
                        {
                            *request.dependencies,
                            *(urn for deps in request.propertyDependencies.values() for urn in deps.urns),
                        }
                    ),
                )
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        if request.urn.split("::")[2] == "pulumi:pulumi:Stack":
            self.stack_outputs = _clean(json_format.MessageToDict(request.outputs))
        return super().RegisterResourceOutputs(request)
