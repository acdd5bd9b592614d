"""No function in infra/ or components/ longer than about 60 lines (issue 11): a long constructor hides the pure
decisions inside it, which then go untested. Pull a builder out and test it directly instead of growing one.

Lines are counted from `def` to the last line of the body, docstring and comments included, as a reader scrolls.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("infra", "components")
MAX_LINES = 60
# "path:qualified name" -> why this one reads better long. Empty: every function fits today.
ALLOWED: dict[str, str] = {}


def function_lengths(source: str) -> dict[str, int]:
    """Qualified name ("Class.method", "outer.inner") -> lines, for every function in `source`."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                assert child.end_lineno is not None
                lengths[prefix + child.name] = child.end_lineno - child.lineno + 1
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return lengths


def test_function_lengths_counts_methods_and_nested_functions() -> None:
    source = (
        "class A:\n    def m(self):\n        def inner():\n            pass\n        return 1\n\n\ndef f():\n    pass\n"
    )
    assert function_lengths(source) == {"A.m": 4, "A.m.inner": 2, "f": 2}


def test_no_function_over_sixty_lines() -> None:
    too_long = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for name, lines in function_lengths(path.read_text()).items():
                if lines > MAX_LINES and f"{relative}:{name}" not in ALLOWED:
                    too_long.append(f"{relative}:{name} has {lines} lines")
    assert not too_long, f"functions over {MAX_LINES} lines (split out pure builders and test them): {too_long}"


def test_the_allow_list_names_only_functions_that_are_still_long() -> None:
    stale = []
    for key in ALLOWED:
        relative, name = key.split(":")
        if function_lengths((ROOT / relative).read_text()).get(name, 0) <= MAX_LINES:
            stale.append(key)
    assert not stale, f"no longer over {MAX_LINES} lines, drop from ALLOWED: {stale}"
