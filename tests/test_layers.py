"""The layering of issue 11, enforced: the import-linter contracts of pyproject.toml hold (`make lint` runs them
too), and the infra modules import one another in one direction only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold() -> None:
    # A subprocess: import-linter builds its graph from sys.path, which must include the gateway package.
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_components_import_nothing_from_infra() -> None:
    """Independent of import-linter: read every component's imports straight from its syntax tree."""
    offenders = []
    for path in sorted((ROOT / "components").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name == "infra" or name.startswith("infra.")]
    assert offenders == []
