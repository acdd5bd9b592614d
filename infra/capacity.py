"""vLLM capacity planner: does a model fit a GPU instance, how much KV cache is left, what does it cost.

It repeats, in plain arithmetic, what vLLM's GPU worker does at start-up (vllm/v1/worker/gpu_worker.py,
determine_available_memory, and vllm/v1/core/kv_cache_utils.py):

    budget        = total GPU memory x gpu_memory_utilization
    kv memory     = budget - weights - non-torch memory - activation peak of the profiling run
    gpu blocks    = kv memory // (16 tokens x KV bytes per token, all layers)
    tokens        = gpu blocks x 16

The figures are checked against start-up logs that vLLM printed for real deployments
(tests/test_capacity.py), and docs/capacity.md explains each term and its source. No vLLM import: this runs
at `pulumi preview` time on any laptop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from infra.instances import SPOT_DISCOUNT, InstanceType, lookup
from infra.models import ModelArchitecture, lookup_model
from infra.storage import WEIGHT_VOLUME_THROUGHPUT_MIBPS

Quantization = Literal["none", "awq", "gptq", "fp8"]
Dtype = Literal["auto", "float16", "bfloat16", "float32"]
KvCacheDtype = Literal["auto", "fp8"]
CapacityType = Literal["ON_DEMAND", "SPOT"]
Engine = Literal["v1", "v0"]

GIB = 1024**3
MIB = 1024**2
# vLLM's default KV-cache block size on CUDA (CacheConfig.block_size); capacity is a whole number of blocks.
BLOCK_SIZE = 16
# Memory the profiler counts outside PyTorch's allocator (cuBLAS workspaces, CUDA context growth): vLLM logs
# "non_torch_memory takes 0.05-0.43GiB" / "0.13 GiB for non-torch memory" with one GPU in the deployments
# of tests/test_capacity.py; we budget the upper middle.
NON_TORCH_BYTES = int(0.3 * GIB)
# Tensor parallelism adds NCCL and custom all-reduce buffers outside PyTorch: the same llm-d H100 runs log
# 0.13 GiB non-torch at TP=1 and 0.54-0.55 GiB at TP=2, so TP adds up to 0.42 GiB on top of whatever TP=1 takes.
# (0.25 GiB, the TP=2 total less our TP=1 budget, promised 0.3 % more KV cache than vLLM gave the 70B FP8 run.)
TENSOR_PARALLEL_NON_TORCH_BYTES = int(0.42 * GIB)
# vLLM V1 profiles the sampler with max_num_seqs rows of float32 logits over the full vocabulary
# (vllm/v1/worker/gpu_model_runner.py: profile_run -> _dummy_run(max_num_tokens) -> _dummy_sampler_run over
# max_num_reqs rows; every TP rank holds the gathered logits) and keeps several working copies (softmax,
# sort values and int64 indices for top-k/top-p, logprobs). Its logged activation peak is 4.76 GiB for
# 1024 x 128256 logits (Llama) and 5.56-5.64 GiB for 1024 x 151936 (Qwen3) on H100, whatever the model size
# (llm-d/llm-d-benchmark config_explorer/empirical-vllm-memory-results.md): ~39 bytes per logit.
V1_SAMPLER_BYTES_PER_LOGIT = 39
# The V0 engine (vLLM < 0.10) sampled only the logits it needed: one float32 copy and one working copy.
V0_SAMPLER_BYTES_PER_LOGIT = 8
# Bytes per stored weight for 4-bit AWQ/GPTQ with group size 128: 4 bits, plus one fp16 scale and one
# 4-bit zero point per group of 128.
_INT4_GROUP128_BYTES = 0.5 + 2.5 / 128

# Minimum compute capability (x10, as vLLM writes it) and accepted activation dtypes, per method.
# - fp8: vllm/model_executor/layers/quantization/fp8.py, Fp8Config.get_min_capability() -> 80; below 89
#   Fp8LinearMethod sets use_marlin (weight-only W8A16 through the Marlin kernel). We accept 8.0-8.8 with a
#   note, since vLLM serves it and the memory saving is real; only the speed-up is lost.
# - awq: vllm/model_executor/layers/quantization/awq.py, AWQConfig.get_min_capability() -> 75 and
#   get_supported_act_dtypes() -> [torch.half]; vLLM raises "torch.bfloat16 is not supported for
#   quantization method awq. Supported dtypes: [torch.float16]".
# - gptq: vllm/model_executor/layers/quantization/gptq.py, GPTQConfig.get_min_capability() -> 60 and
#   get_supported_act_dtypes() -> [torch.half].
_MIN_CAPABILITY: dict[Quantization, int] = {"none": 0, "fp8": 80, "awq": 75, "gptq": 60}
_FP8_NATIVE_CAPABILITY = 89
_FLOAT16_ONLY: dict[Quantization, str] = {
    "awq": "vllm/model_executor/layers/quantization/awq.py AWQConfig.get_supported_act_dtypes",
    "gptq": "vllm/model_executor/layers/quantization/gptq.py GPTQConfig.get_supported_act_dtypes",
}


@dataclass(frozen=True)
class CapacityPlan:
    """What one vLLM replica of a model gets on an instance type, and what the fleet costs."""

    model: str
    instance_type: str
    gpu_model: str | None
    gpus_per_replica: int
    gpu_memory_gib: float
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    weight_bytes_per_gpu: int
    kv_cache_bytes_per_token_per_gpu: int
    # Across the replica's GPUs; replicated KV heads (TP above the KV-head count) are counted on every GPU.
    kv_cache_bytes_per_token_total: int
    activation_peak_bytes_per_gpu: int
    # Non-torch memory + activation peak: what the profiler subtracts besides the weights.
    overhead_bytes_per_gpu: int
    # Budget left for the KV cache; negative when weights and overhead do not fit.
    kv_cache_memory_bytes_per_gpu: int
    gpu_blocks: int
    kv_cache_tokens: int
    # vLLM's "Maximum concurrency for N tokens per request: X x".
    max_concurrency: float
    replicas: int
    replicas_per_node: int
    nodes: int
    capacity_type: CapacityType
    hourly_cost_per_replica_usd: float
    hourly_cost_total_usd: float
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def full_length_sequences(self) -> int:
        """Sequences that fit at once when every one of them reaches max_model_len."""
        return self.kv_cache_tokens // self.max_model_len


def _gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB"


def _capability(value: int) -> str:
    return f"{value // 10}.{value % 10}"


def default_max_num_batched_tokens(instance: InstanceType) -> int:
    """vLLM's default for `vllm serve` (EngineArgs.get_batch_defaults, vllm/engine/arg_utils.py): 8192
    tokens per step on GPUs with at least 70 GiB that are not A100s ("a100" not in the device name),
    otherwise 2048."""
    big = instance.gpu_memory_gib >= 70 and not (instance.gpu_model or "").startswith("A100")
    return 8192 if big else 2048


def activation_peak_bytes(
    model: ModelArchitecture,
    tensor_parallel_size: int,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    dtype_bytes: int,
    engine: Engine = "v1",
) -> int:
    """Peak PyTorch memory above the weights during vLLM's profiling run, per GPU.

    vLLM profiles one forward pass over max_num_batched_tokens tokens, then a sampler pass over max_num_seqs
    rows of logits; the larger of the two sets the peak. In the forward pass the MLP dominates: gate and up
    projections (2 x intermediate / TP) plus the activated product (1 x intermediate / TP), beside a few
    hidden-size tensors (residual, norm output, attention output). For MoE the fused kernel keeps those
    per routed expert (top-k). The sampler term is calibrated per engine generation (see the constants).
    """
    mlp_width = model.intermediate_size * model.num_experts_per_tok / tensor_parallel_size
    hidden_tensors = 3 + model.num_experts_per_tok
    per_token = dtype_bytes * (3 * mlp_width + hidden_tensors * model.hidden_size)
    forward = int(max_num_batched_tokens * per_token)
    per_logit = V1_SAMPLER_BYTES_PER_LOGIT if engine == "v1" else V0_SAMPLER_BYTES_PER_LOGIT
    sampler = max_num_seqs * model.vocab_size * per_logit
    return max(forward, sampler)


def _weight_bytes_per_gpu(
    model: ModelArchitecture, quantization: Quantization, dtype_bytes: int, tensor_parallel_size: int
) -> int:
    # Embedding and lm_head stay in the model dtype under fp8/awq/gptq (vLLM quantizes LinearBase layers, not
    # VocabParallelEmbedding/ParallelLMHead); both are split over TP ranks like the linear layers.
    embedding = model.embedding_parameters
    linear = model.parameter_count - embedding
    per_weight = {"none": dtype_bytes, "fp8": 1.0, "awq": _INT4_GROUP128_BYTES, "gptq": _INT4_GROUP128_BYTES}
    total = linear * per_weight[quantization] + embedding * dtype_bytes
    return math.ceil(total / tensor_parallel_size)


def _kv_heads_per_gpu(model: ModelArchitecture, tensor_parallel_size: int) -> int:
    # vLLM's QKVParallelLinear: with TP >= KV heads each rank holds one (replicated) KV head.
    return max(1, model.num_key_value_heads // tensor_parallel_size)


def _tensor_parallel_problems(model: ModelArchitecture, tp: int, instance: InstanceType) -> list[str]:
    problems = []
    if instance.gpu_count == 0:
        problems.append(f"{instance.name} has no GPU; pick one of the GPU instance types for a vLLM model")
    elif tp > instance.gpu_count:
        problems.append(
            f"gpus_per_replica (tensor parallel size) {tp} exceeds the {instance.gpu_count} GPU(s) of one "
            f"{instance.name}; a replica must fit in one node: pick an instance type with >= {tp} GPUs"
        )
    # vllm/config: "Total number of attention heads (X) must be divisible by tensor parallel size (Y)."
    if model.num_attention_heads % tp:
        problems.append(
            f"tensor parallel size {tp} does not divide the model's {model.num_attention_heads} attention "
            f"heads; vLLM requires num_attention_heads % tensor_parallel_size == 0"
        )
    # vllm/model_executor/layers/linear.py QKVParallelLinear: KV heads are split when there are at least TP
    # of them (then TP must divide them) and replicated otherwise (then they must divide TP).
    kv = model.num_key_value_heads
    if kv >= tp and kv % tp:
        problems.append(
            f"tensor parallel size {tp} does not divide the model's {kv} KV heads; vLLM needs "
            f"num_key_value_heads % tensor_parallel_size == 0"
            " when there are at least as many KV heads as GPUs"
        )
    if kv < tp and tp % kv:
        problems.append(
            f"tensor parallel size {tp} is not a multiple of the model's {kv} KV heads; vLLM replicates KV "
            "heads only when tensor_parallel_size % num_key_value_heads == 0"
        )
    return problems


def _quantization_problems(
    quantization: Quantization, dtype: Dtype, instance: InstanceType
) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    notes: list[str] = []
    if instance.gpu is None or quantization == "none":
        return problems, notes
    capability = round(instance.gpu.compute_capability * 10)
    needed = _MIN_CAPABILITY[quantization]
    if capability < needed:
        problems.append(
            f"quantization {quantization} needs compute capability >= {_capability(needed)} but "
            f"{instance.gpu.model} has {_capability(capability)} "
            f"(vllm/model_executor/layers/quantization/{quantization}.py get_min_capability)"
        )
    elif quantization == "fp8" and capability < _FP8_NATIVE_CAPABILITY:
        notes.append(
            f"fp8 on {instance.gpu.model} (compute capability {_capability(capability)} < 8.9) runs "
            "weight-only (W8A16) through vLLM's Marlin kernel: FP8 memory savings, about FP16 speed"
        )
    if quantization in _FLOAT16_ONLY and dtype != "float16":
        problems.append(
            f"quantization {quantization} runs in float16 only ({_FLOAT16_ONLY[quantization]}) but dtype is "
            f"{dtype}; set dtype: float16 (auto follows the checkpoint's torch_dtype, bfloat16 in some "
            f"{quantization.upper()} checkpoints, which vLLM then rejects)"
        )
    return problems, notes


def _check_inputs(
    gpus_per_replica: int, replicas: int, node_group_max_size: int, max_model_len: int, gpu_memory_utilization: float
) -> None:
    if gpus_per_replica < 1 or replicas < 1 or node_group_max_size < 0 or max_model_len < 1:
        raise ValueError(
            f"gpus_per_replica ({gpus_per_replica}), replicas ({replicas}) and "
            f"max_model_len ({max_model_len}) must be >= 1 and node_group_max_size "
            f"({node_group_max_size}) >= 0"
        )
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")


@dataclass(frozen=True)
class _GpuMemory:
    """One GPU's memory as vLLM divides it: the budget, then weights, overhead, and the KV cache in the rest."""

    budget: float
    weights: int
    kv_per_token: int
    activation: int
    overhead: int
    kv_memory: int
    blocks: int
    tokens: int


def _gpu_memory(
    model: ModelArchitecture,
    instance: InstanceType,
    tp: int,
    quantization: Quantization,
    dtype: Dtype,
    kv_cache_dtype: KvCacheDtype,
    gpu_memory_utilization: float,
    batched: int,
    max_num_seqs: int,
    engine: Engine,
) -> _GpuMemory:
    dtype_bytes = 4 if dtype == "float32" else 2
    kv_bytes = 1 if kv_cache_dtype == "fp8" else dtype_bytes
    weights = _weight_bytes_per_gpu(model, quantization, dtype_bytes, tp)
    kv_per_token = 2 * model.num_hidden_layers * _kv_heads_per_gpu(model, tp) * model.resolved_head_dim * kv_bytes
    activation = activation_peak_bytes(model, tp, batched, max_num_seqs, dtype_bytes, engine)
    non_torch = NON_TORCH_BYTES + (TENSOR_PARALLEL_NON_TORCH_BYTES if tp > 1 else 0)
    overhead = non_torch + activation
    budget = instance.gpu_memory_gib * GIB * gpu_memory_utilization
    kv_memory = int(budget - weights - overhead)
    blocks = max(0, kv_memory) // (BLOCK_SIZE * kv_per_token)
    return _GpuMemory(budget, weights, kv_per_token, activation, overhead, kv_memory, blocks, blocks * BLOCK_SIZE)


def _memory_problems(
    memory: _GpuMemory, instance: InstanceType, max_model_len: int, gpu_memory_utilization: float
) -> list[str]:
    if instance.gpu is None:
        return []
    gpu_name = instance.gpu_model or "no GPU"
    if memory.weights > memory.budget:
        return [
            f"weights need {_gib(memory.weights)} per GPU but {gpu_name} has {instance.gpu_memory_gib:.2f} GiB x "
            f"{gpu_memory_utilization:.2f} = {_gib(memory.budget)}; use more GPUs per replica, quantization, or a "
            "larger GPU"
        ]
    if memory.tokens < max_model_len:
        return [
            f"KV cache holds {memory.tokens} tokens per replica ({_gib(max(0, memory.kv_memory))} per GPU left of "
            f"{instance.gpu_memory_gib:.2f} GiB x {gpu_memory_utilization:.2f} = {_gib(memory.budget)} after "
            f"{_gib(memory.weights)} of weights and {_gib(memory.overhead)} of activations and workspace) but one "
            f"sequence at max_model_len {max_model_len} needs {_gib(max_model_len * memory.kv_per_token)}; "
            f"lower max_model_len to at most {memory.tokens}, raise gpu_memory_utilization, use kv_cache_dtype "
            "fp8, or add GPUs"
        ]
    return []


@dataclass(frozen=True)
class _Placement:
    """Replicas on nodes: how many fit one node, the nodes they take, and what a node costs per hour."""

    replicas_per_node: int
    nodes: int
    node_price: float
    per_replica: float
    problems: list[str]


def _placement(
    instance: InstanceType, tp: int, replicas: int, node_group_max_size: int, capacity_type: CapacityType
) -> _Placement:
    problems: list[str] = []
    replicas_per_node = instance.gpu_count // tp if instance.gpu_count else 0
    if instance.gpu is not None and replicas_per_node:
        room = node_group_max_size * replicas_per_node
        if replicas > room:
            problems.append(
                f"{replicas} replicas x {tp} GPU(s) need {replicas * tp} GPUs in whole-replica slots, "
                f"but the node group's max size {node_group_max_size} x {instance.gpu_count} GPU(s) per "
                f"{instance.name} holds {room} replica(s) of {tp} GPU(s); raise the node group's max size to "
                f"{math.ceil(replicas / replicas_per_node)} or run fewer replicas"
            )
    nodes_per_slot = 1 if replicas_per_node else max(1, math.ceil(tp / max(1, instance.gpu_count)))
    nodes = math.ceil(replicas / replicas_per_node) if replicas_per_node else replicas * nodes_per_slot
    node_price = instance.on_demand_usd_per_hour * ((1 - SPOT_DISCOUNT) if capacity_type == "SPOT" else 1.0)
    per_replica = node_price / replicas_per_node if replicas_per_node else node_price * nodes_per_slot
    return _Placement(replicas_per_node, nodes, node_price, per_replica, problems)


def _fit_problems(
    model: ModelArchitecture,
    instance: InstanceType,
    tp: int,
    quantization: Quantization,
    dtype: Dtype,
    max_model_len: int,
) -> tuple[list[str], list[str]]:
    """What vLLM would refuse before any memory is counted: tensor parallelism, quantization, context length."""
    problems = _tensor_parallel_problems(model, tp, instance)
    quant_problems, notes = _quantization_problems(quantization, dtype, instance)
    problems += quant_problems
    if max_model_len > model.max_position_embeddings:
        problems.append(
            f"max_model_len {max_model_len} exceeds the model's max_position_embeddings "
            f"{model.max_position_embeddings}; vLLM refuses a longer context without rope scaling"
        )
    return problems, notes


def _memory_fields(memory: _GpuMemory, tp: int, max_model_len: int) -> dict[str, Any]:
    """The CapacityPlan fields that come from one GPU's memory split."""
    return {
        "weight_bytes_per_gpu": memory.weights,
        "kv_cache_bytes_per_token_per_gpu": memory.kv_per_token,
        "kv_cache_bytes_per_token_total": memory.kv_per_token * tp,
        "activation_peak_bytes_per_gpu": memory.activation,
        "overhead_bytes_per_gpu": memory.overhead,
        "kv_cache_memory_bytes_per_gpu": memory.kv_memory,
        "gpu_blocks": memory.blocks,
        "kv_cache_tokens": memory.tokens,
        "max_concurrency": round(memory.tokens / max_model_len, 2),
    }


def plan_capacity(
    model: ModelArchitecture | str,
    instance_type: InstanceType | str,
    *,
    max_model_len: int,
    quantization: Quantization = "none",
    dtype: Dtype = "auto",
    kv_cache_dtype: KvCacheDtype = "auto",
    gpus_per_replica: int = 1,
    gpu_memory_utilization: float = 0.90,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int | None = None,
    replicas: int = 1,
    node_group_max_size: int = 1,
    capacity_type: CapacityType = "ON_DEMAND",
    engine: Engine = "v1",
) -> CapacityPlan:
    """Plan one vLLM model on one instance type. Never raises for a bad fit: it lists `problems`.

    `model` is a ModelArchitecture or a catalog key / HF repo id; `instance_type` an InstanceType or a
    catalog name. `max_num_batched_tokens` defaults to what `vllm serve` picks for that GPU. `engine` is
    "v1" (every vLLM since 0.10, what the platform runs); "v0" only replays logs of older releases.
    """
    if isinstance(model, str):
        model = lookup_model(model)
    instance = lookup(instance_type) if isinstance(instance_type, str) else instance_type
    _check_inputs(gpus_per_replica, replicas, node_group_max_size, max_model_len, gpu_memory_utilization)
    tp = gpus_per_replica
    batched = max_num_batched_tokens or default_max_num_batched_tokens(instance)

    problems, notes = _fit_problems(model, instance, tp, quantization, dtype, max_model_len)
    memory = _gpu_memory(
        model, instance, tp, quantization, dtype, kv_cache_dtype, gpu_memory_utilization, batched, max_num_seqs, engine
    )
    placement = _placement(instance, tp, replicas, node_group_max_size, capacity_type)
    problems += _memory_problems(memory, instance, max_model_len, gpu_memory_utilization) + placement.problems
    return CapacityPlan(
        model=model.hf_repo_id or "custom",
        instance_type=instance.name,
        gpu_model=instance.gpu_model,
        gpus_per_replica=tp,
        gpu_memory_gib=instance.gpu_memory_gib,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=batched,
        **_memory_fields(memory, tp, max_model_len),
        replicas=replicas,
        replicas_per_node=placement.replicas_per_node,
        nodes=placement.nodes,
        capacity_type=capacity_type,
        hourly_cost_per_replica_usd=round(placement.per_replica, 4),
        hourly_cost_total_usd=round(placement.nodes * placement.node_price, 4),
        problems=problems,
        notes=notes,
    )


# Start-up beyond reading weights: CUDA init, the profiling run, torch.compile (Dynamo ~15 s and up to ~30 s
# from vLLM's compile cache, more on a cold cache) and CUDA-graph capture (5-30 s).
STARTUP_FIXED_SECONDS = 90
# Weight read rate: the gp3 throughput the platform provisions for weight volumes (infra/storage.py; the same
# figure sets the StorageClass and GPU root volumes), about a Hugging Face download on a good day. Local NVMe is far
# faster (vLLM loaded 405B-FP8 on 8 x H100 in 235 s: vllm-project/vllm#6746).
STARTUP_READ_BYTES_PER_SECOND = WEIGHT_VOLUME_THROUGHPUT_MIBPS * MIB


def startup_seconds(
    plan: CapacityPlan,
    *,
    read_bytes_per_second: float = STARTUP_READ_BYTES_PER_SECOND,
    fixed_seconds: int = STARTUP_FIXED_SECONDS,
) -> int:
    """Seconds from container start to a healthy vLLM server, for sizing the startupProbe.

    Loading is I/O bound: every TP rank reads the checkpoint files in parallel and keeps its shard, so the
    time goes with the whole checkpoint (weights per GPU x GPUs) over the read rate, plus a fixed part.
    Give the probe about twice this: a probe that fires early kills a slow
    but healthy load and starts it over.
    """
    checkpoint = plan.weight_bytes_per_gpu * plan.gpus_per_replica
    return math.ceil(fixed_seconds + checkpoint / read_bytes_per_second)
