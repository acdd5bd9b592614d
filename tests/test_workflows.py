"""The GitHub workflows (.github/workflows): valid against GitHub's schema, clean under zizmor, actions pinned."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def test_there_are_the_pull_request_and_release_workflows() -> None:
    assert [path.name for path in WORKFLOWS] == ["pr.yml", "release.yml"]


def test_workflows_match_githubs_workflow_schema() -> None:
    # check-jsonschema ships SchemaStore's github-workflow schema (`vendor.github-workflows`), so this runs offline.
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_reports_no_findings_at_its_default_level() -> None:
    result = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--no-progress", str(ROOT / ".github" / "workflows")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_every_action_is_pinned_by_a_full_commit_sha() -> None:
    uses = [
        step["uses"]
        for path in WORKFLOWS
        for job in yaml.safe_load(path.read_text())["jobs"].values()
        for step in job.get("steps", [])
        if "uses" in step
    ]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", use) for use in uses), uses


def test_the_pull_request_comment_comes_from_the_script_a_developer_runs() -> None:
    diff_job = yaml.safe_load((ROOT / ".github" / "workflows" / "pr.yml").read_text())["jobs"]["diff"]
    assert any("scripts/pr-diff.sh" in step.get("run", "") for step in diff_job["steps"])
