"""The serving layer of every stack, as rendered under the Pulumi mocks: the vLLM Deployments, their Services,
credentials and disruption budgets, and the NVIDIA device plugin on GPU clusters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.device_plugin import DEVICE_PLUGIN_IMAGE, sharing_config
from components.naming import GPU_TAINT_KEY, NODE_GROUP_LABEL
from components.vllm_deployment import (
    CPU_IMAGE,
    GPU_IMAGE,
    HF_CACHE_DIR,
    HOME_DIR,
    PORT,
    RUN_AS_USER,
    TMP_DIR,
    VLLM_VERSION,
    ExtraArgsError,
    serve_args,
)
from infra import render
from infra.capacity import startup_seconds
from infra.config import PLATFORM_KEY, ModelConfig, PlatformConfig
from infra.plan import serve_options
from infra.planning import plan_for
from infra.validation import parse_platform
from tests.conftest import rendered
from tests.vllm_server import WRITTEN_PATH_VARS

STACKS = render.stack_names()
GPU_STACKS = [stack for stack in STACKS if stack != "local"]


def platform_of(stack: str) -> PlatformConfig:
    return parse_platform(stack, render.read_stack_file(stack)[PLATFORM_KEY])


def objects(stack: str, kind: str, namespace: str | None = None) -> dict[str, dict[str, Any]]:
    return {
        obj["metadata"]["name"]: obj
        for obj in rendered(stack).kubernetes_objects()
        if obj["kind"] == kind and (namespace is None or obj["metadata"].get("namespace") == namespace)
    }


def stack_models() -> list[Any]:
    return [
        pytest.param(stack, model, id=f"{stack}-{model.name}")
        for stack in STACKS
        for model in platform_of(stack).models
    ]


def pod_spec(stack: str, model: ModelConfig) -> dict[str, Any]:
    platform = platform_of(stack)
    deployment = objects(stack, "Deployment", platform.namespace)[model.name]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def vllm_container(stack: str, model: ModelConfig) -> dict[str, Any]:
    containers = pod_spec(stack, model)["containers"]
    container: dict[str, Any] = next(item for item in containers if item["name"] == "vllm")
    return container


@pytest.fixture(scope="module")
def local() -> render.RenderResult:
    return rendered("local")


@pytest.fixture(scope="module")
def dev() -> render.RenderResult:
    return rendered("dev")


@pytest.fixture(scope="module")
def staging() -> render.RenderResult:
    return rendered("staging")


@pytest.fixture(scope="module")
def prod() -> render.RenderResult:
    return rendered("prod")


# --- the Deployment ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_container_runs_vllm_serve_with_the_args_from_config(stack: str, model: ModelConfig) -> None:
    container = vllm_container(stack, model)
    assert container["command"] == ["vllm", "serve"]
    assert container["image"] == (GPU_IMAGE if model.node_group else CPU_IMAGE)
    assert container["image"].endswith(f":v{VLLM_VERSION}")
    assert container["ports"] == [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]


def test_staging_args_written_out() -> None:
    """The whole argument list of one stack, written by hand from stacks/Pulumi.staging.yaml: no `--quantization`
    (the checkpoint is compressed-tensors FP8 and says so itself), utilization as the stack file asks."""
    model = platform_of("staging").models[0]
    assert vllm_container("staging", model)["args"] == [
        "--model", "neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8",
        "--revision", "main",
        "--served-model-name", "llama-3-1-8b",
        "--dtype", "auto",
        "--max-model-len", "32768",
        "--gpu-memory-utilization", "0.92",
        "--tensor-parallel-size", "1",
        "--max-num-seqs", "64",
        "--enable-prefix-caching",
        "--kv-cache-dtype", "auto",
        "--disable-access-log-for-endpoints", "/health,/metrics",
        "--host", "0.0.0.0",
        "--port", "8000",
        # monitoring.tracing.enabled: the collector's OTLP/HTTP traces URL (otel-collector in namespace monitoring).
        "--otlp-traces-endpoint", "http://otel-collector.monitoring.svc:4318/v1/traces",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("hf_model", "quantization", "declared", "flag"),
    [
        # 16-bit weights: vLLM quantizes to FP8 on the fly only when told to.
        ("meta-llama/Llama-3.1-8B-Instruct", "fp8", "none", ["--quantization", "fp8"]),
        ("meta-llama/Llama-3.1-8B-Instruct", "none", None, []),
        # Pre-quantized: the checkpoint's config.json names its method; a flag could only disagree.
        ("neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", "fp8", None, []),
        ("someone/Llama-3.1-8B-Instruct-FP8-dynamic", "fp8", "compressed-tensors", []),
        ("someone/Llama-3.1-8B-Instruct-GPTQ", "gptq", "gptq", []),
    ],
)
def test_quantization_flag_only_for_on_the_fly(
    hf_model: str, quantization: str, declared: str | None, flag: list[str]
) -> None:
    args = serve_args(
        serve_options(
            _model(
                hf_model=hf_model,
                quantization=quantization,
                checkpoint_quant_method=declared,
                node_group="gpu",
                dtype="float16",
            )
        )
    )
    found = args[args.index("--quantization") : args.index("--quantization") + 2] if "--quantization" in args else []
    assert found == flag


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_args_carry_every_typed_setting(stack: str, model: ModelConfig) -> None:
    args = vllm_container(stack, model)["args"]

    def value(flag: str) -> str:
        return str(args[args.index(flag) + 1])

    assert value("--model") == model.hf_model
    assert value("--served-model-name") == model.name
    assert value("--max-model-len") == str(model.max_model_len)
    assert value("--tensor-parallel-size") == str(model.gpus)
    assert value("--max-num-seqs") == str(model.max_num_seqs)
    assert value("--dtype") == model.dtype
    assert value("--kv-cache-dtype") == model.kv_cache_dtype
    assert value("--port") == "8000" and value("--host") == "0.0.0.0"
    # Every stack model is a pre-quantized checkpoint or 16-bit and unquantized: vLLM reads the method from the
    # checkpoint's config.json and refuses a flag that disagrees (tests/test_vllm_args.py runs that check).
    assert "--quantization" not in args and "-q" not in args
    if model.revision is not None:
        assert value("--revision") == model.revision
    assert ("--enforce-eager" in args) is model.enforce_eager
    assert ("--gpu-memory-utilization" in args) is (model.node_group is not None)
    if model.node_group is not None:
        # The value the stack file itself writes (read raw, not through the config model).
        raw = next(item for item in render.read_stack_file(stack)[PLATFORM_KEY]["models"] if item["name"] == model.name)
        assert float(value("--gpu-memory-utilization")) == raw["gpu_memory_utilization"]
    assert not any(arg.startswith("--api-key") for arg in args)


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_placement_and_gpu_resources(stack: str, model: ModelConfig) -> None:
    spec = pod_spec(stack, model)
    resources = vllm_container(stack, model)["resources"]
    assert resources["requests"] == resources["limits"], "Guaranteed QoS: requests equal limits"
    assert {"cpu", "memory"} <= set(resources["limits"])
    if model.node_group is None:
        assert "nvidia.com/gpu" not in resources["limits"]
        assert "nodeSelector" not in spec and "tolerations" not in spec
        return
    assert resources["limits"]["nvidia.com/gpu"] == str(model.gpus)
    assert {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    # The selector must name the label value the GPU node group (or the Karpenter pool) really puts on its nodes.
    node_groups = [
        record.inputs for record in rendered(stack).resources if record.type == "aws:eks/nodeGroup:NodeGroup"
    ]
    group_labels = [group["labels"] for group in node_groups if group["labels"].get(NODE_GROUP_LABEL)]
    group_labels += [
        record.inputs["spec"]["template"]["metadata"]["labels"]
        for record in rendered(stack).resources
        if record.type == "kubernetes:karpenter.sh/v1:NodePool"
    ]
    selected = spec["nodeSelector"][NODE_GROUP_LABEL]
    matching = [labels for labels in group_labels if labels[NODE_GROUP_LABEL] == selected]
    assert len(matching) == 1, f"{selected!r} selects no node group; groups carry {group_labels}"
    assert matching[0]["llm-serving/node-group-name"] == model.node_group


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_shm_only_with_tensor_parallelism(stack: str, model: ModelConfig) -> None:
    spec = pod_spec(stack, model)
    shm = [volume for volume in spec["volumes"] if volume["name"] == "shm"]
    mounts = [mount["mountPath"] for mount in vllm_container(stack, model)["volumeMounts"]]
    if model.gpus > 1:
        assert shm and shm[0]["emptyDir"]["medium"] == "Memory"
        assert "/dev/shm" in mounts
    else:
        assert not shm and "/dev/shm" not in mounts


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_probes_and_shutdown(stack: str, model: ModelConfig) -> None:
    container = vllm_container(stack, model)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    startup = container["startupProbe"]
    budget = startup["failureThreshold"] * startup["periodSeconds"]
    plan = plan_for(platform_of(stack), model)
    if plan is not None:
        # Twice the planned start-up (docs/capacity.md: a probe that fires early kills a slow but healthy load),
        # in whole probe periods. startup_seconds itself is checked against hand-worked figures in test_capacity.
        expected = 2 * startup_seconds(plan)
        assert expected <= budget < expected + startup["periodSeconds"]
    else:
        assert budget >= 600, "the CPU backend gets a fixed, generous start-up budget"
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert pod_spec(stack, model)["terminationGracePeriodSeconds"] >= 120


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_hardened_pod(stack: str, model: ModelConfig) -> None:
    spec = pod_spec(stack, model)
    context = vllm_container(stack, model)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert context["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert RUN_AS_USER >= 10000
    assert "runAsUser" not in context, "the pod-level user must not be overridden back to root"


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_every_written_path_is_on_a_writable_volume(stack: str, model: ModelConfig) -> None:
    spec = pod_spec(stack, model)
    container = vllm_container(stack, model)
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["HF_HOME"] == HF_CACHE_DIR
    assert env["HOME"] == HOME_DIR
    assert env["TMPDIR"] == TMP_DIR
    assert env["VLLM_CACHE_ROOT"] == f"{HOME_DIR}/.cache/vllm"
    assert not any(str(value).startswith("/root") for value in env.values()), "root's home is not writable"
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert {path: mount["name"] for path, mount in mounts.items()} | {"/dev/shm": "shm"} == {
        HF_CACHE_DIR: "model-cache",
        HOME_DIR: "home",
        TMP_DIR: "tmp",
        "/dev/shm": "shm",
    }
    assert not any(mount.get("readOnly") for mount in mounts.values())
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for name in ("home", "tmp"):
        assert volumes[name]["emptyDir"]["sizeLimit"].endswith("Gi"), name
    # With a read-only root, each path vLLM writes to must lie on one of the mounts.
    for name in WRITTEN_PATH_VARS:
        assert any(f"{env[name]}/".startswith(f"{path}/") for path in mounts), f"{name}={env[name]} is on no volume"
    assert spec["serviceAccountName"] in objects(stack, "ServiceAccount", platform_of(stack).namespace)


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_scrape_annotations_and_labels(stack: str, model: ModelConfig) -> None:
    deployment = objects(stack, "Deployment", platform_of(stack).namespace)[model.name]
    template = deployment["spec"]["template"]["metadata"]
    # Other annotations (checksum/secret, tests/test_pod_checksums.py) are not this test's concern.
    scrape = {key: value for key, value in template["annotations"].items() if key.startswith("prometheus.io/")}
    assert scrape == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }
    assert template["labels"]["app.kubernetes.io/name"] == "vllm"
    assert template["labels"]["app.kubernetes.io/instance"] == model.name
    assert template["labels"]["llm-serving/model"] == model.name
    assert deployment["spec"]["replicas"] == model.replicas


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_spreading_only_with_several_replicas(stack: str, model: ModelConfig) -> None:
    spec = pod_spec(stack, model)
    if model.replicas > 1:
        keys = {constraint["topologyKey"] for constraint in spec["topologySpreadConstraints"]}
        anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert keys == {"topology.kubernetes.io/zone"}
        assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    else:
        assert "affinity" not in spec and "topologySpreadConstraints" not in spec


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_disruption_budget_covers_the_pods(stack: str, model: ModelConfig) -> None:
    namespace = platform_of(stack).namespace
    budget = objects(stack, "PodDisruptionBudget", namespace)[model.name]
    pod_labels = objects(stack, "Deployment", namespace)[model.name]["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_rollout_surges_only_where_a_spare_replica_fits(dev: render.RenderResult, prod: render.RenderResult) -> None:
    del dev, prod  # rendered by the fixtures
    # dev: one node of one GPU at most, fully used by the single replica.
    assert objects("dev", "Deployment")["llama-3-1-8b"]["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 0,
        "maxUnavailable": 1,
    }
    # prod 70B: 3 nodes x 4 GPUs = 12 >= (2 + 1) x 4.
    assert objects("prod", "Deployment")["llama-3-3-70b"]["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 1,
        "maxUnavailable": 0,
    }


# --- model cache ------------------------------------------------------------------------------------------------


def test_prod_70b_caches_weights_on_a_claim_per_pod(prod: render.RenderResult) -> None:
    del prod
    model = next(model for model in platform_of("prod").models if model.name == "llama-3-3-70b")
    volume = next(volume for volume in pod_spec("prod", model)["volumes"] if volume["name"] == "model-cache")
    # Two replicas on different nodes cannot share one ReadWriteOnce EBS volume: each pod gets its own claim.
    claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"]
    assert claim["storageClassName"] == "gp3"
    assert claim["resources"]["requests"]["storage"] == "120Gi"
    mounts = vllm_container("prod", model)["volumeMounts"]
    assert {"name": "model-cache", "mountPath": "/models/huggingface"} in mounts


def test_staging_single_replica_keeps_a_named_cache_claim(staging: render.RenderResult) -> None:
    del staging
    claims = objects("staging", "PersistentVolumeClaim")
    assert set(claims) == {"llama-3-1-8b-cache"}
    claim = claims["llama-3-1-8b-cache"]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"]
    assert claim["resources"]["requests"]["storage"] == "40Gi"
    model = platform_of("staging").models[0]
    volume = next(volume for volume in pod_spec("staging", model)["volumes"] if volume["name"] == "model-cache")
    assert volume["persistentVolumeClaim"]["claimName"] == "llama-3-1-8b-cache"
    # A ReadWriteOnce volume cannot follow a surge pod to another node: replace in place.
    strategy = objects("staging", "Deployment")["llama-3-1-8b"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 0, "maxUnavailable": 1}


def test_empty_dir_cache_is_bounded(local: render.RenderResult, dev: render.RenderResult) -> None:
    del local, dev
    for stack in ("local", "dev"):
        for model in platform_of(stack).models:
            volume = next(volume for volume in pod_spec(stack, model)["volumes"] if volume["name"] == "model-cache")
            assert volume["emptyDir"]["sizeLimit"].endswith("Gi")
            assert int(volume["emptyDir"]["sizeLimit"].removesuffix("Gi")) >= 10


def test_cpu_backend_sizes_its_kv_cache(local: render.RenderResult) -> None:
    del local
    model = platform_of("local").models[0]
    env = {item["name"]: item for item in vllm_container("local", model)["env"]}
    assert env["VLLM_CPU_KVCACHE_SPACE"]["value"] == str(model.cpu_kv_cache_gib)
    assert vllm_container("local", model)["resources"]["limits"] == {"cpu": "2", "memory": "6Gi"}


# --- secrets ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_are_referenced_never_literal(stack: str) -> None:
    platform = platform_of(stack)
    secrets = objects(stack, "Secret", platform.namespace)
    for model in platform.models:
        env = {item["name"]: item for item in vllm_container(stack, model)["env"]}
        for name, key in (("VLLM_API_KEY", "vllmApiKey"), ("HF_TOKEN", "hfToken")):
            assert "value" not in env[name]
            reference = env[name]["valueFrom"]["secretKeyRef"]
            assert reference["key"] == key
            data = secrets[reference["name"]]["stringData"]
            # Masked at the leaf, or as a whole where the engine marks the whole map secret.
            assert data == render.SECRET_MARK or data[key] == render.SECRET_MARK
        assert env["VLLM_NO_USAGE_STATS"]["value"] == "1"
    # The render's stand-in secret values must appear nowhere in clear.
    dumped = json.dumps(rendered(stack).kubernetes_objects())
    assert "placeholder-vllmApiKey" not in dumped and "placeholder-hfToken" not in dumped


# --- Services and outputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "model"), stack_models())
def test_services(stack: str, model: ModelConfig) -> None:
    namespace = platform_of(stack).namespace
    services = objects(stack, "Service", namespace)
    pod_labels = objects(stack, "Deployment", namespace)[model.name]["spec"]["template"]["metadata"]["labels"]
    service, headless = services[model.name]["spec"], services[f"{model.name}-pods"]["spec"]
    assert service["type"] == "ClusterIP" and "clusterIP" not in service
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is False
    for spec in (service, headless):
        assert spec["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
        assert spec["selector"].items() <= pod_labels.items()
    outputs = rendered(stack).outputs["models"][model.name]
    assert outputs == {
        "service": f"http://{model.name}.{namespace}.svc:8000/v1",
        "headless": f"{model.name}-pods.{namespace}.svc",
    }


# --- device plugin ----------------------------------------------------------------------------------------------


def test_no_device_plugin_without_gpus(local: render.RenderResult) -> None:
    assert "nvidia-device-plugin" not in objects("local", "DaemonSet")


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_device_plugin_daemonset(stack: str) -> None:
    daemonset = objects(stack, "DaemonSet", "kube-system")["nvidia-device-plugin"]
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]
    (container,) = spec["containers"]
    assert container["image"] == DEVICE_PLUGIN_IMAGE and container["image"].startswith("nvcr.io/nvidia/")
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "privileged" not in container["securityContext"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    host_paths = [volume["hostPath"]["path"] for volume in spec["volumes"] if "hostPath" in volume]
    assert host_paths == ["/var/lib/kubelet/device-plugins"]
    assert "configMap" not in json.dumps(spec["volumes"]), "no time-slicing unless configured"


def test_time_slicing_adds_the_sharing_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = yaml.safe_load((render.STACKS_DIR / "Pulumi.dev.yaml").read_text())
    document["config"][PLATFORM_KEY]["device_plugin"] = {"time_slicing_replicas": 4}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setattr(render, "STACKS_DIR", tmp_path)
    result = render.run("dev")
    found = {obj["metadata"]["name"]: obj for obj in result.kubernetes_objects() if obj["kind"] == "ConfigMap"}
    content = found["nvidia-device-plugin-config"]["data"]["config.yaml"]
    assert content == sharing_config(4)
    sharing = yaml.safe_load(content)["sharing"]["timeSlicing"]
    assert sharing["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]
    daemonset = next(
        obj
        for obj in result.kubernetes_objects()
        if obj["kind"] == "DaemonSet" and "device-plugin" in obj["metadata"]["name"]
    )
    spec = daemonset["spec"]["template"]["spec"]
    env = {item["name"]: item.get("value") for item in spec["containers"][0]["env"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in spec["containers"][0]["volumeMounts"]}
    assert env["CONFIG_FILE"] == f"{mounts['config']}/config.yaml"
    config_volume = next(volume for volume in spec["volumes"] if volume["name"] == "config")
    assert config_volume["configMap"]["name"] == "nvidia-device-plugin-config"
    assert daemonset["spec"]["template"]["metadata"]["annotations"]["llm-serving/config-sha256"]


# --- extra_args -------------------------------------------------------------------------------------------------


def _model(**changes: Any) -> ModelConfig:
    base = platform_of("local").models[0]
    return base.model_copy(update=changes)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (["--max-model-len", "8192"], "max_model_len"),
        (["--max_model_len=8192"], "max_model_len"),
        (["--api-key", "sk-123"], "vllmApiKey"),
        (["--no-enable-prefix-caching"], "enable_prefix_caching"),
        (["-tp", "2"], "gpus"),
        (["--port", "9000"], "8000"),
    ],
)
def test_extra_args_may_not_override_managed_flags(extra: list[str], field: str) -> None:
    model = _model(extra_args=extra)
    with pytest.raises(ExtraArgsError) as error:
        serve_args(serve_options(model))
    message = str(error.value)
    assert f"models[{model.name}].extra_args[0]" in message
    assert repr(extra[0]) in message
    assert field in message


def test_extra_args_must_start_with_a_flag() -> None:
    with pytest.raises(ExtraArgsError, match=r"expected a flag"):
        serve_args(serve_options(_model(extra_args=["meta-llama/Llama-3.1-8B"])))


def test_other_extra_args_are_appended() -> None:
    args = serve_args(serve_options(_model(extra_args=["--swap-space", "4", "--disable-log-stats"])))
    assert args[-3:] == ["--swap-space", "4", "--disable-log-stats"]
