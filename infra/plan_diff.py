"""Compare two renders the way a reviewer reads a PR: resources added, removed, and changed field by field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dictdiffer


@dataclass
class PlanDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.outputs)

    def render(self) -> str:
        lines = [f"+ {label}" for label in self.added]
        lines += [f"- {label}" for label in self.removed]
        for label, fields in self.changed.items():
            lines.append(f"~ {label}")
            lines += [f"    {line}" for line in fields]
        if self.outputs:
            lines.append("~ stack outputs")
            lines += [f"    {line}" for line in self.outputs]
        lines.append(f"{len(self.added)} to add, {len(self.removed)} to remove, {len(self.changed)} to change")
        return "\n".join(lines)


def _path(parts: Any) -> str:
    if isinstance(parts, str):
        parts = [parts] if parts else []
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def field_changes(before: Any, after: Any) -> list[str]:
    """One line per changed leaf: `path: old -> new`, `path: + value`, `path: - value`."""
    lines: list[str] = []
    for kind, where, detail in dictdiffer.diff(before, after):
        if kind == "change":
            old, new = detail
            lines.append(f"{_path(where)}: {_show(old)} -> {_show(new)}")
        else:
            sign = "+" if kind == "add" else "-"
            base = _path(where)
            for key, value in detail:
                key_path = f"{base}[{key}]" if isinstance(key, int) else (f"{base}.{key}" if base else str(key))
                lines.append(f"{key_path}: {sign} {_show(value)}")
    return lines


def _label(resource: dict[str, Any]) -> str:
    return f"{resource['type']} {resource['name']}"


def diff_dirs(before_dir: Path, after_dir: Path) -> PlanDiff:
    before = {item["urn"]: item for item in _load(before_dir / "plan.json")}
    after = {item["urn"]: item for item in _load(after_dir / "plan.json")}
    result = PlanDiff()
    result.added = sorted(_label(after[urn]) for urn in after.keys() - before.keys())
    result.removed = sorted(_label(before[urn]) for urn in before.keys() - after.keys())
    for urn in sorted(before.keys() & after.keys()):
        changes = field_changes(before[urn]["inputs"], after[urn]["inputs"])
        if changes:
            result.changed[_label(after[urn])] = changes
    before_outputs, after_outputs = before_dir / "outputs.json", after_dir / "outputs.json"
    if before_outputs.exists() and after_outputs.exists():
        result.outputs = field_changes(_load(before_outputs), _load(after_outputs))
    return result


def _load(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {path.parent} a directory written by `llm-serving render`?")
    return json.loads(path.read_text())
