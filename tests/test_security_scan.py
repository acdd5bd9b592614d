"""Security of every rendered stack: checkov's Kubernetes checks, and the defaults the project promises, asserted
directly on the render (AWS resources from plan.json, Kubernetes objects from the recorded inputs).

Checkov runs from its own venv (`scripts/install-checkov.sh`); findings the project accepts are listed, with a
reason each, in infra/checkov_skips.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from infra import render
from infra.checkov_skips import PROMISE_EXCEPTIONS, SKIPS, Skip, privileged_reason, promise_exception, skip_for
from infra.config import PLATFORM_KEY
from infra.validation import parse_platform

ROOT = Path(__file__).resolve().parent.parent
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
STACKS = render.stack_names()
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def _checkov(directory: Path) -> subprocess.CompletedProcess[str]:
    # BC_SKIP_MAPPING and --skip-download: no calls to the vendor's API (none reachable, none needed).
    command = [str(CHECKOV), "--framework", "kubernetes", "-d", str(directory), "--quiet", "--compact", "-o", "json"]
    return subprocess.run(
        [*command, "--skip-download"],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"},
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[render.RenderResult, Path]]:
    """Every stack rendered once and written to its own folder, as `llm-serving render` would."""
    base = tmp_path_factory.mktemp("rendered")
    results = {}
    for stack in STACKS:
        result = render.run(stack)
        render.write(result, base / stack)
        results[stack] = (result, base / stack)
    return results


@pytest.fixture(scope="module")
def checkov_failures(rendered: dict[str, tuple[render.RenderResult, Path]]) -> list[dict[str, Any]]:
    """One checkov run over all stack folders (about 3 s); each failed check tagged with its stack."""
    if not CHECKOV.exists():
        pytest.skip("checkov is not installed: run scripts/install-checkov.sh")
    base = next(iter(rendered.values()))[1].parent
    completed = _checkov(base)
    # Exit 1 means "failed checks found"; anything else is checkov itself failing.
    assert completed.returncode in (0, 1), f"checkov exited {completed.returncode}:\n{completed.stderr[-3000:]}"
    report = json.loads(completed.stdout)
    reports = report if isinstance(report, list) else [report]
    failures = []
    for item in reports:
        assert item.get("summary", {}).get("parsing_errors", 0) == 0, f"checkov could not parse: {item}"
        for failed in item.get("results", {}).get("failed_checks", []):
            failed["stack"] = Path(failed["file_path"]).parts[1]
            failures.append(failed)
    return failures


def test_checkov_finds_nothing_unexplained(checkov_failures: list[dict[str, Any]]) -> None:
    unexplained = sorted(
        {
            f"{failed['stack']}: {failed['check_id']} {failed['resource']} ({failed['check_name']}) "
            f"in {failed['file_path']}"
            for failed in checkov_failures
            if skip_for(failed["check_id"], failed["resource"]) is None
        }
    )
    assert not unexplained, (
        "checkov findings: fix the component, or add a Skip with a reason to infra/checkov_skips.py:\n"
        + "\n".join(unexplained)
    )


def test_every_checkov_skip_is_still_needed(checkov_failures: list[dict[str, Any]]) -> None:
    used = {skip_for(failed["check_id"], failed["resource"]) for failed in checkov_failures}
    stale = [skip for skip in SKIPS if skip not in used]
    assert not stale, f"these skips match no finding any more; delete them from infra/checkov_skips.py: {stale}"


@pytest.mark.parametrize("skip", SKIPS, ids=lambda skip: f"{skip.check_id}:{skip.resources}")
def test_every_checkov_skip_says_why(skip: Skip) -> None:
    assert skip.check_id.startswith(("CKV_K8S_", "CKV2_K8S_")), skip
    assert len(skip.reason.split()) >= 5, f"{skip}: write a reason a reviewer can judge"


def test_checkov_catches_a_naive_deployment(tmp_path: Path) -> None:
    """The scan is real: the same invocation flags an unhardened Deployment (so 'no findings' means something)."""
    if not CHECKOV.exists():
        pytest.skip("checkov is not installed: run scripts/install-checkov.sh")
    (tmp_path / "naive.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: naive, namespace: llm-serving}\n"
        "spec:\n  selector: {matchLabels: {app: naive}}\n  template:\n    metadata: {labels: {app: naive}}\n"
        "    spec:\n      containers: [{name: naive, image: 'nginx:1.27'}]\n"
    )
    completed = _checkov(tmp_path)
    failed = {item["check_id"] for item in json.loads(completed.stdout)["results"]["failed_checks"]}
    assert {"CKV_K8S_11", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_31"} <= failed


# ---- promises asserted on the render itself -------------------------------------------------------------------


def _objects(rendered: dict[str, tuple[render.RenderResult, Path]], stack: str) -> list[dict[str, Any]]:
    return rendered[stack][0].kubernetes_objects()


def _aws(rendered: dict[str, tuple[render.RenderResult, Path]], stack: str, type_: str) -> list[render.Recorded]:
    return [record for record in rendered[stack][0].resources if record.type == type_]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec")
    if kind in POD_OWNERS:
        return (spec.get("template") or {}).get("spec")
    return None


def _containers(stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]) -> Iterator[tuple[str, Any, Any]]:
    """(where, owning object, container) for every container and init container of every workload."""
    for obj in _objects(rendered, stack):
        pod = _pod_spec(obj)
        if pod is None:
            continue
        meta = obj.get("metadata") or {}
        for field in ("initContainers", "containers"):
            for container in pod.get(field) or []:
                where = f"{stack}: {obj['kind']} {meta.get('namespace', '')}/{meta.get('name')} {container['name']}"
                yield where, obj, container


def _platform(stack: str) -> Any:
    return parse_platform(stack, render.read_stack_file(stack)[PLATFORM_KEY])


@pytest.mark.parametrize("stack", STACKS)
def test_no_privileged_container_without_a_reason(
    stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]
) -> None:
    offenders = []
    for where, obj, container in _containers(stack, rendered):
        context = container.get("securityContext") or {}
        pod = _pod_spec(obj) or {}
        risky = context.get("privileged") or pod.get("hostPID") or pod.get("hostNetwork") or pod.get("hostIPC")
        meta = obj.get("metadata") or {}
        if risky and privileged_reason(obj["kind"], meta.get("namespace", ""), meta.get("name", "")) is None:
            offenders.append(where)
    assert not offenders, f"privileged or host-namespace containers without a reason in checkov_skips: {offenders}"


def _missing_resources(stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]) -> list[str]:
    missing = []
    for where, _, container in _containers(stack, rendered):
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(section) or {}):
                    missing.append(f"{where}: resources.{section}.{resource}")
    return missing


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_has_requests_and_limits(
    stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]
) -> None:
    missing = [
        finding
        for finding in _missing_resources(stack, rendered)
        if promise_exception("resources", stack, finding.removeprefix(f"{stack}: ")) is None
    ]
    assert not missing, "\n".join(missing)


def test_every_promise_exception_is_still_needed(rendered: dict[str, tuple[render.RenderResult, Path]]) -> None:
    findings = [
        f"resources:{stack}:{finding.removeprefix(f'{stack}: ')}"
        for stack in STACKS
        for finding in _missing_resources(stack, rendered)
    ]
    stale = [pattern for pattern in PROMISE_EXCEPTIONS if not any(fnmatchcase(item, pattern) for item in findings)]
    assert not stale, f"delete these from PROMISE_EXCEPTIONS in infra/checkov_skips.py, they match nothing: {stale}"
    assert all(reason.startswith("pending fix in ") for reason in PROMISE_EXCEPTIONS.values())


@pytest.mark.parametrize("stack", STACKS)
def test_images_are_pinned_by_tag(stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]) -> None:
    unpinned = []
    for where, _, container in _containers(stack, rendered):
        image = str(container.get("image", ""))
        last = image.rsplit("/", 1)[-1]
        if "@sha256:" in image:
            continue
        if ":" not in last or last.endswith(":latest") or last.endswith(":"):
            unpinned.append(f"{where}: image {image!r}")
    releases = [r for r in rendered[stack][0].resources if r.type.startswith("kubernetes:helm.sh")]
    unpinned += [
        f"{stack}: Helm release {r.name} has no chart version" for r in releases if not r.inputs.get("version")
    ]
    assert not unpinned, "pin every image by tag (not latest) or digest:\n" + "\n".join(unpinned)


def _gateway_workloads(stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]) -> list[dict[str, Any]]:
    return [
        obj
        for obj in _objects(rendered, stack)
        if obj.get("kind") == "Deployment" and "gateway" in (obj.get("metadata") or {}).get("name", "")
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_gateway_runs_as_non_root_with_a_read_only_root(
    stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]
) -> None:
    gateways = _gateway_workloads(stack, rendered)
    assert gateways, f"{stack}: no gateway Deployment rendered"
    for obj in gateways:
        pod = _pod_spec(obj) or {}
        pod_context = pod.get("securityContext") or {}
        for container in pod.get("containers") or []:
            context = container.get("securityContext") or {}
            non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True or (
                int(context.get("runAsUser", pod_context.get("runAsUser", 0))) > 0
            )
            where = f"{stack}: gateway container {container['name']}"
            assert non_root, f"{where}: set runAsNonRoot: true (and a non-zero runAsUser)"
            assert context.get("readOnlyRootFilesystem") is True, f"{where}: set readOnlyRootFilesystem: true"
            assert context.get("allowPrivilegeEscalation") is False, f"{where}: set allowPrivilegeEscalation: false"


@pytest.mark.parametrize("stack", STACKS)
def test_serving_namespace_denies_ingress_by_default(
    stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]
) -> None:
    namespace = _platform(stack).namespace
    policies = [
        obj
        for obj in _objects(rendered, stack)
        if obj.get("kind") == "NetworkPolicy" and (obj.get("metadata") or {}).get("namespace") == namespace
    ]
    default_deny = [
        policy
        for policy in policies
        if not (policy["spec"].get("podSelector") or {})  # {} selects every pod of the namespace
        and "Ingress" in policy["spec"].get("policyTypes", [])
        and not policy["spec"].get("ingress")
    ]
    assert default_deny, (
        f"{stack}: no default-deny NetworkPolicy in namespace {namespace!r} "
        "(podSelector: {}, policyTypes: [Ingress], no ingress rules); found: "
        f"{[p['metadata']['name'] for p in policies]}"
    )


AWS_STACKS = [stack for stack in STACKS if _platform(stack).aws is not None]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_launch_templates_require_imdsv2_and_encrypt_disks(
    stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]
) -> None:
    templates = _aws(rendered, stack, "aws:ec2/launchTemplate:LaunchTemplate")
    node_groups = _aws(rendered, stack, "aws:eks/nodeGroup:NodeGroup")
    assert templates and node_groups
    # A node group without a launch template gets the AMI's defaults, where IMDSv1 may still answer.
    assert all(group.inputs.get("launchTemplate") for group in node_groups), "every node group needs our template"
    for template in templates:
        metadata = template.inputs.get("metadataOptions") or {}
        assert metadata.get("httpTokens") == "required", f"{stack}: {template.name} allows IMDSv1"
        # Hop limit 1: a pod (one network hop further) cannot reach the node's credentials; pods use IRSA.
        assert metadata.get("httpPutResponseHopLimit") == 1, f"{stack}: {template.name}: hop limit must be 1"
        disks = template.inputs.get("blockDeviceMappings") or []
        assert disks, f"{stack}: {template.name} does not declare its root volume (encryption unknown)"
        for disk in disks:
            assert str(disk["ebs"].get("encrypted")).lower() == "true", f"{stack}: {template.name}: unencrypted EBS"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_eks_secrets_are_encrypted_with_a_rotated_kms_key(
    stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]
) -> None:
    (cluster,) = _aws(rendered, stack, "aws:eks/cluster:Cluster")
    encryption = cluster.inputs.get("encryptionConfig") or {}
    assert "secrets" in encryption.get("resources", []), f"{stack}: EKS secrets are not envelope-encrypted"
    key_arn = encryption.get("provider", {}).get("keyArn", "")
    keys = _aws(rendered, stack, "aws:kms/key:Key")
    used = [key for key in keys if key_arn.endswith(f"key/{key.name}")]
    assert used, f"{stack}: the EKS encryption key {key_arn!r} is not a key this stack creates"
    assert used[0].inputs.get("enableKeyRotation") is True, f"{stack}: KMS key {used[0].name} does not rotate"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_eks_endpoint_is_private_in_prod_and_allow_listed_elsewhere(
    stack: str, rendered: dict[str, tuple[render.RenderResult, Path]]
) -> None:
    (cluster,) = _aws(rendered, stack, "aws:eks/cluster:Cluster")
    vpc = cluster.inputs["vpcConfig"]
    public = vpc.get("endpointPublicAccess") is not False  # EKS defaults to public when the flag is absent
    if _platform(stack).environment == "prod":
        assert not public, f"{stack}: the prod API server must not be public"
    if public:
        cidrs = vpc.get("publicAccessCidrs") or []
        assert cidrs, f"{stack}: a public endpoint without publicAccessCidrs is open to 0.0.0.0/0"
        assert "0.0.0.0/0" not in cidrs, f"{stack}: publicAccessCidrs contains 0.0.0.0/0"
