"""Compare two renders the way a reviewer reads a PR: resources added, removed, and changed field by field.

Before diffing, each resource's inputs are put in the shape a reviewer thinks in (`normalize`):
- lists that Kubernetes merges by key are matched by that key, not by position, so one inserted env var or volume
  shows as one addition rather than every later item changed;
- a container's `args` become a flag -> value map (`args --max-model-len: 32768 -> 65536`);
- embedded documents (a ConfigMap's `config.yaml`, a dashboard's `.json`) are parsed and diffed by key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dictdiffer
import yaml

# Merge keys of the lists Kubernetes patches by key, in order of preference. Upstream: the `patchMergeKey` tags in
# kubernetes/api core/v1/types.go (PodSpec.containers/initContainers/ephemeralContainers/volumes by "name",
# Container.env by "name", Container.ports by "containerPort", Container.volumeMounts by "mountPath",
# ServiceSpec.ports by "port"). `name` comes first where the items carry one: it is what a reviewer reads, and
# the fallback keeps the match when names repeat (a volume mounted twice).
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("name", "mountPath"),
    "ports": ("name", "containerPort", "port"),
}
# Keys whose string value is a document of its own (ConfigMap data entries).
_EMBEDDED_SUFFIXES = (".yaml", ".yml", ".json")


class ItemKey(str):
    """A list item matched by its merge key; shown as `[key]`."""


class Flag(str):
    """A command-line flag of a container's `args`; shown as ` --flag`."""


FLAG_SET = "(set)"  # a flag given without a value (`--enable-prefix-caching`)


def _keyed(items: list[Any], candidates: tuple[str, ...]) -> dict[str, Any] | None:
    for key in candidates:
        if items and all(isinstance(item, dict) and key in item for item in items):
            values = [str(item[key]) for item in items]
            if len(set(values)) == len(values):
                return {ItemKey(value): item for value, item in zip(values, items, strict=True)}
    return None


def parse_args(args: list[str]) -> dict[str, Any]:
    """`["--model", "m", "--enable-prefix-caching", "--port=8000"]` -> {"--model": "m", ...}; a repeated flag keeps
    every value in a list, a token before any flag keeps its position (`#0`)."""
    flags: dict[str, Any] = {}
    index = 0
    while index < len(args):
        token = args[index]
        if token.startswith("--"):
            name, equals, value = token.partition("=")
            if not equals:
                following = args[index + 1] if index + 1 < len(args) else None
                if following is not None and not following.startswith("--"):
                    value, index = following, index + 1
                else:
                    value = FLAG_SET
            key = Flag(name)
            if key in flags:
                previous = flags[key]
                flags[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                flags[key] = value
        else:
            flags[Flag(f"#{index}")] = token
        index += 1
    return flags


def normalize(value: Any, key: str | None = None) -> Any:
    """Inputs in a reviewer's shape (see the module docstring); pure, the render's files are untouched."""
    if isinstance(value, dict):
        return {k: normalize(v, k) for k, v in value.items()}
    if isinstance(value, list):
        if key == "args" and all(isinstance(item, str) for item in value) and any(i.startswith("--") for i in value):
            return parse_args(value)
        items = [normalize(item) for item in value]
        keyed = _keyed(items, MERGE_KEYS.get(key or "", ("name",)))
        return keyed if keyed is not None else items
    if isinstance(value, str) and key is not None and key.endswith(_EMBEDDED_SUFFIXES):
        try:
            document = yaml.safe_load(value)  # JSON is YAML
        except yaml.YAMLError:
            return value
        return normalize(document) if isinstance(document, dict | list) else value
    return value


@dataclass
class PlanDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    # The stack outputs on each side (cost, capacity) for the markdown summary.
    before_outputs: dict[str, Any] = field(default_factory=dict)
    after_outputs: dict[str, Any] = field(default_factory=dict)
    before_count: int = 0
    after_count: int = 0

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

    def to_json(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed, "outputs": self.outputs}


def _segment(part: Any, first: bool) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    if isinstance(part, ItemKey):
        return f"[{part}]"
    if isinstance(part, Flag):
        return f" {part}"
    text = str(part)
    if "." in text or " " in text:
        return f"[{json.dumps(text)}]"
    return text if first else f".{text}"


def _path(parts: Any) -> str:
    if isinstance(parts, str):
        parts = [parts] if parts else []
    return "".join(_segment(part, index == 0) for index, part in enumerate(parts))


def _show(value: Any, flag: bool = False) -> str:
    if flag and isinstance(value, str):
        return value  # `--max-model-len: 32768 -> 65536`, as the flag is written
    return json.dumps(value, sort_keys=True)


def field_changes(before: Any, after: Any) -> list[str]:
    """One line per changed leaf: `path: old -> new`, `path: + value`, `path: - value`."""
    lines: list[str] = []
    for kind, where, detail in dictdiffer.diff(before, after, dot_notation=False):
        parts = list(where) if isinstance(where, list | tuple) else ([where] if where != "" else [])
        if kind == "change":
            old, new = detail
            flag = bool(parts) and isinstance(parts[-1], Flag)
            lines.append(f"{_path(parts)}: {_show(old, flag)} -> {_show(new, flag)}")
        else:
            sign = "+" if kind == "add" else "-"
            for key, value in detail:
                lines.append(f"{_path([*parts, key])}: {sign} {_show(value, isinstance(key, Flag))}")
    return lines


def _label(resource: dict[str, Any]) -> str:
    return f"{resource['type']} {resource['name']}"


def diff_dirs(before_dir: Path, after_dir: Path) -> PlanDiff:
    before = {item["urn"]: item for item in _load(before_dir / "plan.json")}
    after = {item["urn"]: item for item in _load(after_dir / "plan.json")}
    result = PlanDiff(before_count=len(before), after_count=len(after))
    result.added = sorted(_label(after[urn]) for urn in after.keys() - before.keys())
    result.removed = sorted(_label(before[urn]) for urn in before.keys() - after.keys())
    for urn in sorted(before.keys() & after.keys()):
        changes = field_changes(normalize(before[urn]["inputs"]), normalize(after[urn]["inputs"]))
        if changes:
            result.changed[_label(after[urn])] = changes
    before_outputs, after_outputs = before_dir / "outputs.json", after_dir / "outputs.json"
    if before_outputs.exists() and after_outputs.exists():
        result.before_outputs, result.after_outputs = _load(before_outputs), _load(after_outputs)
        result.outputs = field_changes(result.before_outputs, result.after_outputs)
    return result


def diff_trees(before_root: Path, after_root: Path, skip: set[str] | None = None) -> dict[str, PlanDiff]:
    """Diff two render directories: one stack (`plan.json` at the top) or one sub-directory per stack (`render all`).

    A stack present on one side only is diffed against an empty render, so all its resources show as added/removed.
    """
    if (before_root / "plan.json").exists() or (after_root / "plan.json").exists():
        return {after_root.name: diff_dirs(_or_empty(before_root), _or_empty(after_root))}
    names = sorted(
        {p.parent.name for root in (before_root, after_root) if root.is_dir() for p in root.glob("*/plan.json")}
    )
    if not names and not skip:
        raise FileNotFoundError(f"no plan.json in {before_root} or {after_root}: are they `llm-serving render` output?")
    return {
        name: diff_dirs(_or_empty(before_root / name), _or_empty(after_root / name))
        for name in names
        if name not in (skip or set())
    }


_EMPTY = Path(__file__).resolve().parent / "_empty_render"


def _or_empty(path: Path) -> Path:
    return path if (path / "plan.json").exists() else _EMPTY


def _load(path: Path) -> Any:
    if path.parent == _EMPTY:
        return [] if path.name == "plan.json" else {}
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {path.parent} a directory written by `llm-serving render`?")
    return json.loads(path.read_text())


# ---- markdown: what the pull-request comment shows ----


def _money(value: Any) -> str:
    return f"${value:,.0f}" if isinstance(value, int | float) else "–"


def _number(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "–"


def _gpus(outputs: dict[str, Any]) -> str:
    gpus = (outputs.get("cost") or {}).get("gpus_by_type") or {}
    return ", ".join(f"{count} × {gpu}" for gpu, count in sorted(gpus.items())) or "none"


def _row(name: str, before: str, after: str) -> str:
    mark = "" if before == after else " **changed**"
    return f"| {name} | {before} | {after}{mark} |"


def summary_table(diff: PlanDiff) -> list[str]:
    before, after = diff.before_outputs, diff.after_outputs
    lines = [
        "| | before | after |",
        "|---|---:|---:|",
        f"| resources | {diff.before_count} | {diff.after_count} "
        f"(+{len(diff.added)} ~{len(diff.changed)} −{len(diff.removed)}) |",
        _row("GPUs", _gpus(before), _gpus(after)),
    ]
    before_cost, after_cost = before.get("cost") or {}, after.get("cost") or {}
    # Every monthly figure the stack reports (estimated, and idle/full-scale where a stack has both).
    for key in sorted({k for k in (*before_cost, *after_cost) if k.endswith("monthly_usd")}):
        label = "$/month" if key == "estimated_monthly_usd" else f"$/month ({key.removesuffix('_monthly_usd')})"
        lines.append(_row(label, _money(before_cost.get(key)), _money(after_cost.get(key))))
    before_cap, after_cap = before.get("capacity") or {}, after.get("capacity") or {}
    for model in sorted({*before_cap, *after_cap}):
        old, new = before_cap.get(model) or {}, after_cap.get(model) or {}
        lines.append(
            _row(f"`{model}` KV tokens", _number(old.get("kv_cache_tokens")), _number(new.get("kv_cache_tokens")))
        )
        lines.append(
            _row(
                f"`{model}` full-length sequences",
                _number(old.get("full_length_sequences")),
                _number(new.get("full_length_sequences")),
            )
        )
    return lines


def to_markdown(diffs: dict[str, PlanDiff], errors: dict[str, str] | None = None) -> str:
    """The pull-request comment: a summary table per stack, then each resource's changes collapsed."""
    out = ["## Platform diff", ""]
    for stack, message in sorted((errors or {}).items()):
        out += [f"### ❌ `{stack}`: render failed", "", "```", message.strip(), "```", ""]
    for stack, diff in diffs.items():
        out += [f"### `{stack}`" + (" — no changes" if diff.empty else ""), ""]
        if diff.empty:
            continue
        out += [*summary_table(diff), ""]
        sections: list[tuple[str, list[str]]] = [(f"+ {label}", []) for label in diff.added]
        sections += [(f"− {label}", []) for label in diff.removed]
        sections += [(f"~ {label}", lines) for label, lines in diff.changed.items()]
        if diff.outputs:
            sections.append(("~ stack outputs", diff.outputs))
        listed = [f"- `{title}`" for title, lines in sections if not lines]
        out += [*listed, ""] if listed else []
        for title, lines in sections:
            if not lines:
                continue
            out += [f"<details><summary><code>{title}</code> ({len(lines)})</summary>", "", "```diff"]
            out += lines
            out += ["```", "</details>"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
