"""Benchmark: time to render each stack, and how render time grows from 1 to 20 models.

Run: .venv/bin/python bench/render.py               (prints a table; results go in docs/benchmarks.md)
     .venv/bin/python bench/render.py --update-doc  (writes the resource counts of docs/benchmarks.md, no timing)

Each figure is the median of several in-process renders after one warm-up (imports and provider schemas load
once per process, as in `pulumi up`, which also pays them once). The first, cold render is reported separately.
Resource counts do not depend on the machine: tests/test_benchmarks_doc.py fails when the doc's differ from a fresh
render, and `--update-doc` rewrites them (the timings stay those of the dated run).
"""

from __future__ import annotations

import copy
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra import render
from infra.config import PLATFORM_KEY

REPEATS = 5
MODEL_COUNTS = (1, 2, 5, 10, 20)
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# A row of the doc's two render tables: `| dev | 76 | 0.314 |` and `| 1 | 93 | 0.316 | 0.316 | 1.00 |`.
_ROW = re.compile(r"^\| (?P<key>[a-z]+|\d+) \| (?P<resources>\d+) \|", re.MULTILINE)


def timed(stack: str, config: dict | None = None) -> float:
    start = time.perf_counter()
    render.run(stack, config=config)
    return time.perf_counter() - start


def median(stack: str, config: dict | None = None) -> float:
    return statistics.median(timed(stack, config) for _ in range(REPEATS))


def with_models(count: int) -> dict:
    """The prod stack with `count` 8B models (each its own Deployment, Services, PDB, route) on one node group."""
    config = copy.deepcopy(render.read_stack_file("prod"))
    platform = config[PLATFORM_KEY]
    template = next(model for model in platform["models"] if model["name"] == "llama-3-1-8b")
    group = next(group for group in platform["gpu_node_groups"] if group["name"] == "gpu-l40s")
    group["scaling"]["max_size"] = 100
    models = []
    for index in range(count):
        model = copy.deepcopy(template)
        model["name"] = f"model-{index:02d}"
        model["replicas"] = 1
        model.pop("autoscaling", None)
        models.append(model)
    platform["models"] = models
    platform["gateway"]["routes"] = []
    platform["gateway"]["aliases"] = []
    platform["gateway"]["pricing"] = {"gpt-4o-mini": platform["gateway"]["pricing"]["gpt-4o-mini"]}
    return config


def resource_counts() -> dict[str, int]:
    """Resources of each stack, then of prod with N models (keys "1", "2", ...): what the doc's tables list."""
    counts = {stack: len(render.run(stack).resources) for stack in render.stack_names()}
    for count in MODEL_COUNTS:
        counts[str(count)] = len(render.run("prod", config=with_models(count)).resources)
    return counts


def _render_section(text: str) -> tuple[int, int]:
    start = text.index("## Render")
    end = text.find("\n## ", start + 1)
    return start, len(text) if end < 0 else end


def doc_counts(text: str) -> dict[str, int]:
    """The resource counts the doc's render section states, keyed as in `resource_counts`."""
    start, end = _render_section(text)
    return {match["key"]: int(match["resources"]) for match in _ROW.finditer(text, start, end)}


def with_counts(text: str, counts: dict[str, int]) -> str:
    """The doc with the resource column of its render tables set to `counts`; everything else as it was."""
    start, end = _render_section(text)
    missing = set(counts) - set(doc_counts(text))
    if missing:
        raise ValueError(f"docs/benchmarks.md has no render table row for {sorted(missing)}: add the row by hand")
    section = _ROW.sub(lambda m: f"| {m['key']} | {counts.get(m['key'], int(m['resources']))} |", text[start:end])
    return text[:start] + section + text[end:]


def main() -> None:
    if sys.argv[1:] == ["--update-doc"]:
        DOC.write_text(with_counts(DOC.read_text(), resource_counts()))
        print(f"resource counts written to {DOC}")
        return
    cold = timed("prod")
    print(f"cold render of prod (first in process, imports included): {cold:.2f} s")
    print(f"\n{'stack':<10}{'resources':>10}{'median s':>10}")
    for stack in render.stack_names():
        seconds = median(stack)
        print(f"{stack:<10}{len(render.run(stack).resources):>10}{seconds:>10.3f}")
    print(f"\n{'models':>6}{'resources':>10}{'median s':>10}{'s/model':>9}{'ratio vs 1':>11}")
    base = None
    for count in MODEL_COUNTS:
        config = with_models(count)
        seconds = median("prod", config)
        resources = len(render.run("prod", config=config).resources)
        base = base or seconds
        print(f"{count:>6}{resources:>10}{seconds:>10.3f}{seconds / count:>9.3f}{seconds / base:>11.2f}")


if __name__ == "__main__":
    main()
