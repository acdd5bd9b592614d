"""docs/benchmarks.md's resource counts are those of a fresh render: bench/render.py keeps them, not a hand edit."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_render", ROOT / "bench" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def test_the_doc_states_the_resource_counts_of_a_fresh_render() -> None:
    stated = bench.doc_counts((ROOT / "docs" / "benchmarks.md").read_text())
    # Every stack, and prod with 1, 2, 5, 10 and 20 models.
    assert set(stated) == {"dev", "local", "prod", "staging", "1", "2", "5", "10", "20"}, stated
    fresh = bench.resource_counts()
    stale = {key: (stated[key], fresh[key]) for key in fresh if stated.get(key) != fresh[key]}
    assert not stale, f"docs/benchmarks.md (doc, render): {stale}; run .venv/bin/python bench/render.py --update-doc"


DOC = """# Benchmarks

## Render (issue: foundation)

| stack | resources | median s |
|---|---|---|
| dev | 76 | 0.314 |
| prod | 104 | 0.456 |

| models | resources | median s | s per model | ratio vs 1 model |
|---|---|---|---|---|
| 1 | 93 | 0.316 | 0.316 | 1.00 |

## Other

| dev | 5 | 9 |
"""


def test_update_rewrites_only_the_render_tables_resource_column() -> None:
    assert bench.doc_counts(DOC) == {"dev": 76, "prod": 104, "1": 93}
    updated = bench.with_counts(DOC, {"dev": 78, "prod": 106, "1": 95})
    assert updated == (
        DOC.replace("| dev | 76 | 0.314 |", "| dev | 78 | 0.314 |")
        .replace("| prod | 104 |", "| prod | 106 |")
        .replace("| 1 | 93 | 0.316 |", "| 1 | 95 | 0.316 |")
    )
    with pytest.raises(ValueError, match=r"no render table row for \['staging'\]"):
        bench.with_counts(DOC, {"staging": 79})
