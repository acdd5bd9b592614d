"""Mutation testing of the pure core with mutmut 3, one module at a time, run by hand like a benchmark.

    python bench/mutation.py                 # every module, one after the other
    python bench/mutation.py balancing sse   # some of them
    python bench/mutation.py --jobs 2 capacity

Why a driver and not a `[tool.mutmut]` block: mutmut reads one config from the working directory's
pyproject.toml and names a mutant after its file's path under that directory, so `gateway_image/llm_gateway/sse.py`
would be recorded as `gateway_image.llm_gateway.sse` while the tests import `llm_gateway.sse`, and mutmut stops
("tests recorded trampoline hits but none match any mutant key"). Each module therefore gets a scratch directory
under build/mutation/<module>/ whose top level has the packages as the tests import them (symlinks to the work
tree: infra, components, llm_gateway), the tests it needs, and a pyproject.toml with the repo's pytest settings plus
a `[tool.mutmut]` block naming the one file to mutate and the fast unit tests that cover it (no real vLLM, no soak,
no servers). mutmut copies that into mutants/ there, puts mutants/ first on sys.path and runs pytest in-process,
forking one child per mutant.

Prints one line per module (mutants, killed, survived, timeout, no tests, score) and writes
build/mutation/summary.json; the surviving mutants' names are listed so `mutmut show NAME`, run in the module's
scratch directory, prints each diff. docs/testing.md has the last run's figures and the review of the survivors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "mutation"


@dataclass(frozen=True)
class Module:
    mutate: list[str]  # paths as seen from the scratch directory (llm_gateway/..., infra/...)
    tests: list[str]  # test files (scratch-relative) and pytest options that select the fast unit tests
    gateway: bool  # lives in gateway_image/ (else infra/)


GATEWAY_TESTS = "gateway_tests"  # the scratch name of gateway_image/tests

MODULES: dict[str, Module] = {
    "capacity": Module(["infra/capacity.py"], ["tests/test_capacity.py", "tests/test_capacity_unit.py"], False),
    # test_failover_unit.py also holds the endpoint's two failure counts (request failures apart from checks).
    "balancing": Module(
        ["llm_gateway/balancing.py"],
        [f"{GATEWAY_TESTS}/test_balancing_unit.py", f"{GATEWAY_TESTS}/test_failover_unit.py"],
        True,
    ),
    "routing": Module(["llm_gateway/routing.py"], [f"{GATEWAY_TESTS}/test_routing_unit.py"], True),
    # The failover decisions are in failover.py (below); what proxy.py keeps is the I/O loop around them
    # (Forwarder.run, _plain, _stream, _relay, _recover: "no tests" here, driven through real servers by
    # test_gateway_failover.py) and the pure status classification, error helpers and Exchange, tested here.
    "proxy": Module(["llm_gateway/proxy.py"], [f"{GATEWAY_TESTS}/test_proxy_unit.py"], True),
    # The failover decisions pulled out of Forwarder.run (issue 16): pure, fed cases without sockets.
    "failover": Module(["llm_gateway/failover.py"], [f"{GATEWAY_TESTS}/test_failover_unit.py"], True),
    "accounting": Module(["llm_gateway/accounting.py"], [f"{GATEWAY_TESTS}/test_accounting_unit.py"], True),
    # test_failover_unit.py also holds the relay's failover duties (held role chunk, completion without [DONE]).
    "sse": Module(
        ["llm_gateway/sse.py"],
        [
            f"{GATEWAY_TESTS}/test_gateway_sse.py",
            f"{GATEWAY_TESTS}/test_sse_unit.py",
            f"{GATEWAY_TESTS}/test_sse_relay_unit.py",
            f"{GATEWAY_TESTS}/test_failover_unit.py",
        ],
        True,
    ),
    # The rules scorer and make_scorer: the embedding tests load a model (seconds per mutant) and are deselected;
    # test_semantic_unit.py reaches make_scorer's embedding branch with a stand-in class, avoiding that word.
    "semantic": Module(
        ["llm_gateway/semantic.py"],
        [f"{GATEWAY_TESTS}/test_semantic.py", f"{GATEWAY_TESTS}/test_semantic_unit.py", "-k", "not embedding"],
        True,
    ),
    # parse_platform only: the stack files and bad configs. The one test of test_config_errors.py that renders a
    # stack under Pulumi mocks (bad config registers no resource) takes seconds a mutant and checks the wiring,
    # not the checks, so it is left out.
    "config": Module(
        ["infra/config.py", "infra/semantics.py"],
        [
            "tests/test_config_errors.py",
            "tests/test_config_unit.py",
            "tests/test_config_checks_unit.py",
            "tests/test_gateway_stack_location_unit.py",
            "-k",
            "not before_any_resource_is_registered",
        ],
        False,
    ),
}


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def prepare(name: str, module: Module) -> Path:
    """A fresh scratch directory for one module; mutmut's cache is not reused (the run is short, and stale)."""
    scratch = BUILD / name
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    if module.gateway:
        (scratch / "llm_gateway").symlink_to(ROOT / "gateway_image" / "llm_gateway")
        (scratch / GATEWAY_TESTS).symlink_to(ROOT / "gateway_image" / "tests")
        sources, also_copy = ["llm_gateway"], [GATEWAY_TESTS]
    else:
        for folder in ("infra", "components", "stacks", "tests"):
            (scratch / folder).symlink_to(ROOT / folder)
        (scratch / "Pulumi.yaml").symlink_to(ROOT / "Pulumi.yaml")
        sources, also_copy = ["infra", "components"], ["stacks", "Pulumi.yaml"]
    settings = [
        "[tool.mutmut]",
        f"source_paths = {_toml_list(sources)}",
        f"only_mutate = {_toml_list(module.mutate)}",
        f"also_copy = {_toml_list(also_copy)}",
        f"pytest_add_cli_args_test_selection = {_toml_list(module.tests)}",
        # -p no:cacheprovider: children must not write .pytest_cache into the work tree's copy concurrently.
        f"pytest_add_cli_args = {_toml_list(['-q', '-p', 'no:cacheprovider', '-p', 'no:randomly'])}",
        # A mutant that loops (`while` bounds, `+= 1` → `-= 1`) is stopped at 15x its tests' time + 1 s (defaults).
        "use_git_change_detection = false",
    ]
    pyproject = (ROOT / "pyproject.toml").read_text()
    (scratch / "pyproject.toml").write_text(pyproject + "\n" + "\n".join(settings) + "\n")
    return scratch


def run(name: str, module: Module, jobs: int) -> dict[str, object]:
    scratch = prepare(name, module)
    env = dict(os.environ)
    # mutmut puts mutants/ first on sys.path itself once it exists. A PYTHONPATH naming it would be worse than none:
    # imports made before the copy cache "no such directory" for that entry, and the tests then import the
    # editable install's unmutated code (seen: every mutant "not covered"). The work tree must not be on it either.
    env.pop("PYTHONPATH", None)
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    started = time.monotonic()
    log = scratch / "mutmut.log"
    with log.open("w") as out:
        code = subprocess.call(
            [mutmut, "run", "--max-children", str(jobs)], cwd=scratch, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    seconds = time.monotonic() - started
    if code != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"mutation {name}: mutmut run exited {code}; see {log}\n{tail}")
    subprocess.check_call([mutmut, "export-cicd-stats"], cwd=scratch, env=env, stdout=subprocess.DEVNULL)
    stats = json.loads((scratch / "mutants" / "mutmut-cicd-stats.json").read_text())
    listing = subprocess.run([mutmut, "results"], cwd=scratch, env=env, capture_output=True, text=True, check=True)
    survivors = sorted(
        line.split(":")[0].strip() for line in listing.stdout.splitlines() if line.strip().endswith(": survived")
    )
    tested = int(stats["total"]) - int(stats["skipped"]) - int(stats["no_tests"])
    # mutmut's own score counts a timeout as killed: the mutant changed behaviour enough to hang a test.
    score = (int(stats["killed"]) + int(stats["timeout"])) / tested if tested else 0.0
    return {**stats, "seconds": round(seconds), "score": round(score * 100, 1), "survivors": survivors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"any of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1: a shared machine)")
    args = parser.parse_args()
    names = args.modules or list(MODULES)
    unknown = [name for name in names if name not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    summary_path = BUILD / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    print(f"{'module':<11} {'mutants':>7} {'killed':>6} {'survived':>8} {'timeout':>7} {'no tests':>8} {'score':>6}")
    for name in names:
        result = run(name, MODULES[name], args.jobs)
        summary[name] = result
        print(
            f"{name:<11} {result['total']:>7} {result['killed']:>6} {result['survived']:>8} {result['timeout']:>7}"
            f" {result['no_tests']:>8} {result['score']:>5}%  ({result['seconds']} s)",
            flush=True,
        )
        for survivor in result["survivors"]:  # type: ignore[attr-defined]
            print(f"    survived: {survivor}")
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {summary_path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
