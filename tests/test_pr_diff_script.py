"""scripts/pr-diff.sh on two commits of a temporary clone: what the pull-request job posts, without GitHub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "pr-diff.sh"


def _git(clone: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True, text=True).stdout.strip()


def _commit_stack_edit(clone: Path, old: str, new: str, message: str) -> None:
    stack = clone / "stacks" / "Pulumi.dev.yaml"
    text = stack.read_text()
    assert old in text
    stack.write_text(text.replace(old, new, 1))
    _git(clone, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", message)


def test_pr_diff_renders_both_refs_and_reports_a_flag_change_and_a_render_error(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{ROOT}", str(clone)], check=True)
    _commit_stack_edit(clone, "max_model_len: 8192", "max_model_len: 16384", "longer context")
    env = {**os.environ, "STACKS": "dev", "PYTHON": sys.executable, "PYTHONPATH": ""}

    def run(base: str, head: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), base, head], cwd=clone, env=env, capture_output=True, text=True, timeout=300
        )

    result = run("HEAD~1", "HEAD")
    assert result.returncode == 0, result.stderr
    assert "### `dev`" in result.stdout
    assert "spec.template.spec.containers[vllm].args --max-model-len: 8192 -> 16384" in result.stdout
    # dev's 114,704 KV tokens hold 14 sequences of 8,192 and 7 of 16,384.
    assert "| `llama-3-1-8b` full-length sequences | 14 | 7 **changed** |" in result.stdout

    _commit_stack_edit(clone, "max_model_len: 16384", "max_model_len: -1", "bad")
    result = run("HEAD~1", "HEAD")
    assert result.returncode == 2
    assert "### ❌ `dev`: render failed" in result.stdout
    assert "max_model_len = -1" in result.stdout
