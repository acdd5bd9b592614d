"""Names and numbers that several components and the wiring share, each defined once here.

Pure facts, no Pulumi: the node group label and GPU taint that GPU nodes carry and GPU pods select and tolerate,
the vLLM port, and the Service names and in-cluster host of a model that the gateway resolves.
"""

from __future__ import annotations

# The taint on every GPU node (components/gpu_node_group.py): only pods that tolerate it land there.
GPU_TAINT_KEY = "nvidia.com/gpu"
# The labels a GPU node carries; vLLM pods select on the first, the DCGM exporter and device plugin use both.
NODE_GROUP_LABEL = "llm-serving/node-group"
GPU_MODEL_LABEL = "llm-serving/gpu-model"
# Set to "true" on every GPU node (our node groups label theirs); the device plugin and the DCGM exporter select it.
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
# vLLM's OpenAI-compatible server listens here (`vllm serve --port`); the Services and the gateway use it.
VLLM_PORT = 8000
# The `app.kubernetes.io/name` of every vLLM pod; the gateway's NetworkPolicy and the monitoring select on it.
VLLM_APP = "vllm"


def cluster_name(project: str, environment: str) -> str:
    """The EKS cluster's name, and the prefix of every AWS component of a stack."""
    return f"{project}-{environment}"


def gpu_node_group_name(cluster: str, group: str) -> str:
    """The GpuNodeGroup component's name; its nodes carry it as the NODE_GROUP_LABEL value."""
    return f"{cluster}-{group}"


def vllm_headless_service_name(model: str) -> str:
    """The headless Service of a model: one A record per ready pod, so the gateway balances pods itself."""
    return f"{model}-pods"


def vllm_headless_host(model: str, namespace: str) -> str:
    """The fully qualified name the gateway resolves to a model's ready pods."""
    return f"{vllm_headless_service_name(model)}.{namespace}.svc.cluster.local"


# The gateway's count of requests held for a backend at zero (gateway_image/llm_gateway/activator.py), per backend;
# the backend of a vLLM model is named after the model. A contract between the gateway and KEDA: do not rename.
WAITING_REQUESTS_METRIC = "llm_gateway_requests_waiting"


def waiting_requests_query(backend: str, namespace: str) -> str:
    """The PromQL of a model's scale-from-zero trigger: requests every gateway replica holds for it (> 0 wakes it).

    Summed over the gateway's replicas in the serving namespace; `or vector(0)` so that an empty answer (no gateway
    scraped yet) reads as nothing waiting, not as a scaler error (the ScaledObject sets ignoreNullValues false).
    """
    return f'sum({WAITING_REQUESTS_METRIC}{{namespace="{namespace}", backend="{backend}"}}) or vector(0)'
