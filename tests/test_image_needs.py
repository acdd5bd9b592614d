"""Every rendered pod that runs a third-party image gives it what its upstream record says it needs.

The records (components/image_needs.py) come from the images' own Dockerfiles and entrypoints at the pinned tags.
For each container: every path it writes is on a writable volume when the root is read-only or the user is not
root, the user fits, and the capabilities are there. This is the class of fault behind issue 9 item 4: the DCGM
exporter's entrypoint runs `ldconfig` on a read-only root and crash-loops, which no schema check can see.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.image_needs import IMAGE_NEEDS, RECORDED_REPOSITORIES, ImageNeeds, needs_for
from components.monitoring import DCGM_EXPORTER_IMAGE
from infra import render
from tests.conftest import rendered

# Volume kinds a container can write to; configMap, secret, downwardAPI and projected are always read-only.
WRITABLE_VOLUMES = ("emptyDir", "hostPath", "persistentVolumeClaim", "ephemeral")


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if obj["kind"] == "StatefulSet":
        # Each volumeClaimTemplate is a PVC volume of the same name in every pod of the set.
        pod = dict(spec["template"]["spec"])
        claims = [
            {"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
            for claim in spec.get("volumeClaimTemplates") or []
        ]
        pod["volumes"] = [*(pod.get("volumes") or []), *claims]
        return [pod]
    if obj["kind"] in ("Deployment", "DaemonSet", "ReplicaSet", "Job"):
        return [spec["template"]["spec"]]
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if obj["kind"] == "Pod":
        return [spec]
    return []


def _under(path: str, mount: str) -> bool:
    mount = mount.rstrip("/") or "/"
    return path == mount or path.startswith(mount + "/") or mount == "/"


def problems(pod: dict[str, Any], container: dict[str, Any], needs: ImageNeeds) -> list[str]:
    """What the container lacks of what its image needs; empty when it fits."""
    found: list[str] = []
    context = container.get("securityContext") or {}
    pod_context = pod.get("securityContext") or {}
    uid = context.get("runAsUser", pod_context.get("runAsUser", needs.image_user))
    non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot", False))
    if needs.needs_root and (uid != 0 or non_root):
        found.append(f"runs as uid {uid} (runAsNonRoot={non_root}) but needs root: {needs.user_source}")

    entrypoint_runs = "command" not in container or tuple(container["command"]) == needs.entrypoint
    writes = list(needs.program_writes) + (list(needs.entrypoint_writes) if entrypoint_runs else [])
    read_only_root = bool(context.get("readOnlyRootFilesystem", False))
    if read_only_root or uid != 0:
        env = {item["name"]: item["value"] for item in container.get("env") or [] if "value" in item}
        volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
        writable_mounts = [
            mount["mountPath"]
            for mount in container.get("volumeMounts") or []
            if not mount.get("readOnly", False)
            and any(kind in volumes.get(mount["name"], {}) for kind in WRITABLE_VOLUMES)
        ]
        for written in writes:
            path = env.get(written.env, written.path) if written.env else written.path
            if not any(_under(path, mount) for mount in writable_mounts):
                found.append(
                    f"writes {path} ({written.why}; {written.source}) but no writable volume is mounted there "
                    f"(read-only root: {read_only_root}, uid {uid})"
                )

    added = set((context.get("capabilities") or {}).get("add") or [])
    if not context.get("privileged", False):
        for capability in needs.capabilities:
            if capability not in added:
                found.append(f"lacks capability {capability}: {needs.capabilities_source}")
    return found


def third_party_containers(stack: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(object name, pod spec, container) for every container whose image comes from a recorded repository."""
    found = []
    for obj in rendered(stack).kubernetes_objects():
        for pod in pod_specs(obj):
            for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
                if container["image"].rsplit(":", 1)[0] in RECORDED_REPOSITORIES:
                    found.append((f"{obj['kind']}/{obj['metadata']['name']}", pod, container))
    return found


@pytest.mark.parametrize("stack", render.stack_names())
def test_every_third_party_container_gets_what_its_image_needs(stack: str) -> None:
    failures = []
    for where, pod, container in third_party_containers(stack):
        needs = needs_for(container["image"])
        if needs is None:
            failures.append(f"{where}: {container['image']} has no record in components/image_needs.py")
            continue
        failures += [f"{where} ({container['name']}): {problem}" for problem in problems(pod, container, needs)]
    assert not failures, f"{stack}:\n" + "\n".join(failures)


@pytest.mark.parametrize(
    ("stack", "images"),
    [
        ("prod", {"nvcr.io/nvidia/k8s/dcgm-exporter", "nvcr.io/nvidia/k8s-device-plugin", "vllm/vllm-openai"}),
        ("local", {"public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo", "postgres", "valkey/valkey"}),
    ],
)
def test_the_check_sees_the_images_it_is_meant_for(stack: str, images: set[str]) -> None:
    # Guards the test above against passing by matching nothing.
    seen = {container["image"].rsplit(":", 1)[0] for _, _, container in third_party_containers(stack)}
    assert seen == images


def _dcgm(stack: str = "prod") -> tuple[dict[str, Any], dict[str, Any]]:
    (pod, container) = next(
        (pod, c) for _, pod, c in third_party_containers(stack) if c["image"] == DCGM_EXPORTER_IMAGE
    )
    return copy.deepcopy(pod), copy.deepcopy(container)


def test_dcgm_runs_its_binary_directly_and_keeps_a_read_only_root() -> None:
    # NVIDIA/dcgm-exporter@4.2.3-4.1.3: the Dockerfile copies the binary to /usr/bin and its entrypoint ends with
    # `exec $(readlink -f $(which dcgm-exporter)) "$@"`; the args are the pod's args unchanged.
    _, container = _dcgm()
    assert container["command"] == ["/usr/bin/dcgm-exporter"]
    assert container["args"][0] == "-f"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_dcgm_entrypoint_on_a_read_only_root_is_caught() -> None:
    # Control: today's fault (no `command`, so the entrypoint's ldconfig runs) must be reported.
    pod, container = _dcgm()
    del container["command"]
    found = problems(pod, container, needs_for(DCGM_EXPORTER_IMAGE))  # type: ignore[arg-type]
    assert any("/etc/ld.so.cache" in problem for problem in found), found


def test_a_missing_capability_and_a_non_root_user_are_caught() -> None:
    pod, container = _dcgm()
    container["securityContext"]["capabilities"]["add"] = []
    container["securityContext"]["runAsUser"] = 10001
    found = problems(pod, container, needs_for(DCGM_EXPORTER_IMAGE))  # type: ignore[arg-type]
    assert any("SYS_ADMIN" in problem for problem in found) and any("needs root" in problem for problem in found)


def test_a_vllm_cache_outside_its_volumes_is_caught() -> None:
    vllm = next((pod, c) for _, pod, c in third_party_containers("prod") if c["image"].startswith("vllm/"))
    pod, container = copy.deepcopy(vllm)
    container["env"] = [item for item in container["env"] if item["name"] != "HF_HOME"]
    found = problems(pod, container, needs_for(container["image"]))  # type: ignore[arg-type]
    # Without HF_HOME the hub cache falls back to /root/.cache/huggingface, on the read-only root.
    assert any("/root/.cache/huggingface" in problem for problem in found), found


def test_every_record_cites_its_sources() -> None:
    for needs in IMAGE_NEEDS:
        assert needs.user_source and needs.capabilities_source, needs.image
        for written in (*needs.entrypoint_writes, *needs.program_writes):
            assert written.source and written.why, (needs.image, written.path)
