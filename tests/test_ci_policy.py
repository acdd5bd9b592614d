"""Under CI=true a skipped test fails the run: the root conftest's report hook (it covers tests/ and
gateway_image/tests/) turns a skip into a failure there, and only there (a local run without vLLM or promtool still
skips, with its reason)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFTESTS = [ROOT / "conftest.py"]


def load(path: Path) -> ModuleType:
    # Under another name: the gateway's conftest is imported as plain `conftest` by its own tests.
    sys.path.insert(0, str(ROOT / "gateway_image" / "tests"))
    try:
        spec = importlib.util.spec_from_file_location(f"_ci_policy_{path.parent.parent.name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.pop(0)


def report(outcome: str, **extra: Any) -> pytest.TestReport:
    longrepr = ("test_x.py", 3, "Skipped: promtool is not installed") if outcome == "skipped" else None
    made = pytest.TestReport("test_x.py::t", ("test_x.py", 3, "t"), {}, outcome, longrepr, "call")  # type: ignore[arg-type]
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def through(hook: Callable[..., Generator[None, Any, Any]], made: pytest.TestReport) -> pytest.TestReport:
    wrapper = hook(None, None)
    next(wrapper)
    with pytest.raises(StopIteration) as stopped:
        wrapper.send(made)
    result: pytest.TestReport = stopped.value.value
    return result


@pytest.mark.parametrize("conftest", CONFTESTS, ids=lambda path: str(path.relative_to(ROOT)))
@pytest.mark.parametrize(("ci", "outcome", "expected"), [
    ("true", "skipped", "failed"),
    ("true", "passed", "passed"),
    ("false", "skipped", "skipped"),
    ("", "skipped", "skipped"),
])  # fmt: skip
def test_a_skip_fails_under_ci_only(
    conftest: Path, ci: str, outcome: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", ci)
    result = through(load(conftest).pytest_runtest_makereport, report(outcome))
    assert result.outcome == expected
    if expected == "failed":
        assert "promtool is not installed" in str(result.longrepr)


@pytest.mark.parametrize("conftest", CONFTESTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_an_expected_failure_stays_one_under_ci(conftest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = through(load(conftest).pytest_runtest_makereport, report("skipped", wasxfail="known bug"))
    assert result.outcome == "skipped"
