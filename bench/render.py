"""Benchmark: time to render each stack, and how render time grows from 1 to 20 models.

Run: .venv/bin/python bench/render.py            (prints a table; results go in docs/benchmarks.md)

Each figure is the median of several in-process renders after one warm-up (imports and provider schemas load
once per process, as in `pulumi up`, which also pays them once). The first, cold render is reported separately.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra import render
from infra.config import PLATFORM_KEY

REPEATS = 5


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


def main() -> None:
    cold = timed("prod")
    print(f"cold render of prod (first in process, imports included): {cold:.2f} s")
    print(f"\n{'stack':<10}{'resources':>10}{'median s':>10}")
    for stack in render.stack_names():
        seconds = median(stack)
        print(f"{stack:<10}{len(render.run(stack).resources):>10}{seconds:>10.3f}")
    print(f"\n{'models':>6}{'resources':>10}{'median s':>10}{'s/model':>9}{'ratio vs 1':>11}")
    base = None
    for count in (1, 2, 5, 10, 20):
        config = with_models(count)
        seconds = median("prod", config)
        resources = len(render.run("prod", config=config).resources)
        base = base or seconds
        print(f"{count:>6}{resources:>10}{seconds:>10.3f}{seconds / count:>9.3f}{seconds / base:>11.2f}")


if __name__ == "__main__":
    main()
