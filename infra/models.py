"""Catalog of popular open models: the parts of each model's config.json the capacity planner needs.

Every row is copied from the model's `config.json` on the Hugging Face hub, at the repo id named in the row;
`parameters_billion` is the count the model card publishes (and tests/test_catalogs.py recomputes it from
the shapes). A model not in the catalog is described with the same `ModelArchitecture` in the stack config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelArchitecture(BaseModel):
    """Shapes of a decoder-only transformer, named as in its Hugging Face config.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hf_repo_id: str | None = Field(default=None, description="Hugging Face repo id the figures come from.")
    parameters_billion: float = Field(gt=0, description="Total parameters, in billions (all experts for MoE).")
    hidden_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0, description="KV heads (GQA); equal to attention heads for MHA.")
    head_dim: int | None = Field(default=None, gt=0, description="Default: hidden_size / num_attention_heads.")
    vocab_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0, description="MLP width (per expert for MoE).")
    num_experts: int = Field(default=1, ge=1, description="Experts per MoE layer; 1 for a dense model.")
    num_experts_per_tok: int = Field(default=1, ge=1, description="Experts each token is routed to (MoE top-k).")
    max_position_embeddings: int = Field(gt=0)
    tie_word_embeddings: bool = Field(default=False, description="lm_head shares the embedding matrix.")

    @model_validator(mode="after")
    def _consistent(self) -> ModelArchitecture:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads "
                f"({self.num_key_value_heads}): grouped-query attention shares each KV head among whole "
                "groups of query heads"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) is not a multiple of num_attention_heads "
                f"({self.num_attention_heads}); give head_dim explicitly"
            )
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(
                f"num_experts_per_tok ({self.num_experts_per_tok}) exceeds num_experts ({self.num_experts})"
            )
        return self

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def parameter_count(self) -> int:
        return round(self.parameters_billion * 1e9)

    @property
    def embedding_parameters(self) -> int:
        """Input embedding plus lm_head: kept in the model dtype by every quantization vLLM applies here."""
        matrices = 1 if self.tie_word_embeddings else 2
        return matrices * self.vocab_size * self.hidden_size


MODEL_CATALOG: dict[str, ModelArchitecture] = {
    # config.json of meta-llama/Llama-3.1-8B-Instruct on the Hugging Face hub.
    "llama-3.1-8b-instruct": ModelArchitecture(
        hf_repo_id="meta-llama/Llama-3.1-8B-Instruct",
        parameters_billion=8.03,
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        intermediate_size=14336,
        max_position_embeddings=131072,
    ),
    # config.json of meta-llama/Llama-3.1-70B-Instruct on the Hugging Face hub.
    "llama-3.1-70b-instruct": ModelArchitecture(
        hf_repo_id="meta-llama/Llama-3.1-70B-Instruct",
        parameters_billion=70.6,
        hidden_size=8192,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        intermediate_size=28672,
        max_position_embeddings=131072,
    ),
    # config.json of meta-llama/Llama-3.3-70B-Instruct on the Hugging Face hub (same shapes as 3.1 70B).
    "llama-3.3-70b-instruct": ModelArchitecture(
        hf_repo_id="meta-llama/Llama-3.3-70B-Instruct",
        parameters_billion=70.6,
        hidden_size=8192,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        intermediate_size=28672,
        max_position_embeddings=131072,
    ),
    # config.json of mistralai/Mistral-7B-Instruct-v0.3 on the Hugging Face hub.
    "mistral-7b-instruct-v0.3": ModelArchitecture(
        hf_repo_id="mistralai/Mistral-7B-Instruct-v0.3",
        parameters_billion=7.25,
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=32768,
        intermediate_size=14336,
        max_position_embeddings=32768,
    ),
    # config.json of mistralai/Mixtral-8x7B-Instruct-v0.1 on the Hugging Face hub.
    "mixtral-8x7b-instruct-v0.1": ModelArchitecture(
        hf_repo_id="mistralai/Mixtral-8x7B-Instruct-v0.1",
        parameters_billion=46.7,
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
        intermediate_size=14336,
        num_experts=8,
        num_experts_per_tok=2,
        max_position_embeddings=32768,
    ),
    # config.json of Qwen/Qwen2.5-7B-Instruct on the Hugging Face hub.
    "qwen2.5-7b-instruct": ModelArchitecture(
        hf_repo_id="Qwen/Qwen2.5-7B-Instruct",
        parameters_billion=7.61,
        hidden_size=3584,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        intermediate_size=18944,
        max_position_embeddings=32768,
    ),
    # config.json of Qwen/Qwen2.5-72B-Instruct on the Hugging Face hub.
    "qwen2.5-72b-instruct": ModelArchitecture(
        hf_repo_id="Qwen/Qwen2.5-72B-Instruct",
        parameters_billion=72.7,
        hidden_size=8192,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=152064,
        intermediate_size=29568,
        max_position_embeddings=32768,
    ),
}


def lookup_model(key_or_repo_id: str) -> ModelArchitecture:
    """A catalog row by key ("llama-3.1-8b-instruct") or HF repo id; KeyError listing the keys otherwise."""
    if key_or_repo_id in MODEL_CATALOG:
        return MODEL_CATALOG[key_or_repo_id]
    for architecture in MODEL_CATALOG.values():
        if architecture.hf_repo_id is not None and architecture.hf_repo_id.lower() == key_or_repo_id.lower():
            return architecture
    raise KeyError(
        f"model {key_or_repo_id!r} is not in the catalog; known keys: {', '.join(sorted(MODEL_CATALOG))} "
        "(or describe it with `architecture` in the stack config)"
    )


# --- checkpoints: what a pre-quantized repo declares about itself ---------------------------------------------------

# `quant_method` as a checkpoint's config.json writes it ("none": no quantization_config, 16-bit weights).
CheckpointQuantMethod = Literal["none", "compressed-tensors", "fp8", "awq", "gptq"]
# The planner's method (infra.capacity.Quantization; repeated here so the catalog does not import the planner).
PlannerQuantization = Literal["none", "awq", "gptq", "fp8"]

# Which planner method each checkpoint method can be served as. vLLM 0.32 quantizes on the fly only to FP8
# (`--quantization fp8` over 16-bit weights); AWQ and GPTQ need a checkpoint produced by those tools. The
# compressed-tensors checkpoints here are llm-compressor's FP8 schemes (FP8, FP8_DYNAMIC), hence fp8.
ACCEPTED_QUANTIZATION: dict[CheckpointQuantMethod, tuple[PlannerQuantization, ...]] = {
    "none": ("none", "fp8"),
    "compressed-tensors": ("fp8",),
    "fp8": ("fp8",),
    "awq": ("awq",),
    "gptq": ("gptq",),
}


class Checkpoint(BaseModel):
    """A pre-quantized Hugging Face repo: its base model's shapes and the `quantization_config` of its config.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hf_repo_id: str = Field(description="The repo a stack names in `hf_model`.")
    catalog: str = Field(description="MODEL_CATALOG key of the base model (same shapes).")
    quant_method: CheckpointQuantMethod = Field(description="`quantization_config.quant_method` in config.json.")
    quantization: PlannerQuantization = Field(description="What the capacity planner budgets for its weights.")
    quantization_config: dict[str, Any] = Field(
        description="The config.json fields vLLM reads to pick and build the method (a synthetic checkpoint "
        "in tests/test_vllm_args.py carries them)."
    )
    source: str = Field(description="Where the record comes from.")

    @model_validator(mode="after")
    def _consistent(self) -> Checkpoint:
        if self.quantization_config.get("quant_method") != self.quant_method:
            raise ValueError(f"{self.hf_repo_id}: quantization_config.quant_method must be {self.quant_method!r}")
        if self.quantization not in ACCEPTED_QUANTIZATION[self.quant_method]:
            raise ValueError(f"{self.hf_repo_id}: {self.quant_method} is not served as {self.quantization}")
        return self


# llm-compressor writes compressed-tensors configs: `config_groups` of weight / input-activation schemes
# (vllm/model_executor/layers/quantization/compressed_tensors/compressed_tensors.py reads `config_groups`,
# `format`, `ignore`; vllm/config/model.py `_verify_quantization` reads `quant_method`). FP8_DYNAMIC is
# per-channel static FP8 weights with per-token dynamic FP8 activations; FP8 is per-tensor static for both
# (llm-compressor's preset schemes, compressed_tensors.quantization.quant_scheme).
_FP8_WEIGHTS = {"num_bits": 8, "type": "float", "symmetric": True, "dynamic": False}
CHECKPOINT_CATALOG: dict[str, Checkpoint] = {
    checkpoint.hf_repo_id.lower(): checkpoint
    for checkpoint in (
        # https://huggingface.co/RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic (tags `compressed-tensors`, `fp8`;
        # card: FP8 weights and activations, "LLM Compressor", scheme FP8_DYNAMIC, lm_head kept 16-bit). The hub's
        # config.json itself could not be read from here: the group below is llm-compressor's FP8_DYNAMIC preset.
        Checkpoint(
            hf_repo_id="RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic",
            catalog="llama-3.3-70b-instruct",
            quant_method="compressed-tensors",
            quantization="fp8",
            quantization_config={
                "quant_method": "compressed-tensors",
                "format": "float-quantized",
                "config_groups": {
                    "group_0": {
                        "targets": ["Linear"],
                        "weights": {**_FP8_WEIGHTS, "strategy": "channel"},
                        "input_activations": {**_FP8_WEIGHTS, "strategy": "token", "dynamic": True},
                    }
                },
                "ignore": ["lm_head"],
            },
            source="https://huggingface.co/RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic",
        ),
        # https://huggingface.co/neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8/tree/4d24bdfe60a152b4193362a9c379d19ebdacc627
        # (tags `compressed-tensors`, `fp8`; card: "Symmetric per-tensor quantization ... LLM Compressor is used",
        # static FP8 weights and activations). Hub config.json not readable from here: llm-compressor's FP8 preset.
        Checkpoint(
            hf_repo_id="neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8",
            catalog="llama-3.1-8b-instruct",
            quant_method="compressed-tensors",
            quantization="fp8",
            quantization_config={
                "quant_method": "compressed-tensors",
                "format": "float-quantized",
                "config_groups": {
                    "group_0": {
                        "targets": ["Linear"],
                        "weights": {**_FP8_WEIGHTS, "strategy": "tensor"},
                        "input_activations": {**_FP8_WEIGHTS, "strategy": "tensor"},
                    }
                },
                "ignore": ["lm_head"],
            },
            source="https://huggingface.co/neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8",
        ),
        # https://huggingface.co/hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4/tree/main (tags `awq`,
        # `autoawq`, `4-bit precision`; card: AutoAWQ, GEMM, zero point, group size 128). Hub config.json not
        # readable from here: the fields are the AutoAWQ format transformers' AwqConfig writes, the keys vLLM's
        # AutoAWQConfig.from_config reads (bits, group_size, zero_point, modules_to_not_convert).
        Checkpoint(
            hf_repo_id="hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4",
            catalog="llama-3.1-8b-instruct",
            quant_method="awq",
            quantization="awq",
            quantization_config={
                "quant_method": "awq",
                "bits": 4,
                "group_size": 128,
                "zero_point": True,
                "version": "gemm",
                "modules_to_not_convert": None,
            },
            source="https://huggingface.co/hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4",
        ),
    )
}


def lookup_checkpoint(hf_repo_id: str) -> Checkpoint | None:
    """The catalog record of a pre-quantized repo (case-insensitive, like the hub), or None."""
    return CHECKPOINT_CATALOG.get(hf_repo_id.lower())


def checkpoint_quant_method(hf_repo_id: str, declared: CheckpointQuantMethod | None) -> CheckpointQuantMethod | None:
    """What the checkpoint's config.json declares: the catalog's record, else the stack's declaration."""
    checkpoint = lookup_checkpoint(hf_repo_id)
    return checkpoint.quant_method if checkpoint is not None else declared


def quantization_flag(
    hf_repo_id: str, quantization: PlannerQuantization, declared: CheckpointQuantMethod | None
) -> str | None:
    """The `--quantization` value for `vllm serve`, or None to let vLLM read the checkpoint's own method.

    vLLM 0.32 (vllm/config/model.py, ModelConfig._verify_quantization) takes `quant_method` from the checkpoint's
    quantization_config and raises "Quantization method specified in the model config (compressed-tensors) does
    not match the quantization method specified in the `quantization` argument (fp8)" when a flag disagrees; a
    flag that agrees changes nothing (AutoAWQConfig/AutoGPTQConfig.override_quantization_method pick the same
    kernel with or without it). So the flag is passed only to quantize 16-bit weights on the fly.
    """
    method = checkpoint_quant_method(hf_repo_id, declared)
    if quantization != "none" and method == "none":
        return quantization
    return None


def checkpoint_problems(
    hf_repo_id: str, quantization: PlannerQuantization, declared: CheckpointQuantMethod | None
) -> list[str]:
    """A model's quantization against its checkpoint's own method: `key = value: why; accepted: ...` lines."""
    checkpoint = lookup_checkpoint(hf_repo_id)
    if checkpoint is not None:
        problems = []
        if declared is not None and declared != checkpoint.quant_method:
            problems.append(
                f"checkpoint_quant_method = {declared!r}: {hf_repo_id} declares quant_method "
                f"{checkpoint.quant_method!r} ({checkpoint.source}); accepted: {checkpoint.quant_method!r} or unset"
            )
        accepted = ACCEPTED_QUANTIZATION[checkpoint.quant_method]
        if quantization not in accepted:
            problems.append(
                f"quantization = {quantization!r}: {hf_repo_id} is a {checkpoint.quant_method} checkpoint "
                f"({checkpoint.source}); accepted: {' or '.join(map(repr, accepted))}"
            )
        return problems
    if declared is None:
        if quantization == "none":
            return []
        return [
            f"checkpoint_quant_method = None: {hf_repo_id} is not in the checkpoint catalog (infra/models.py) and "
            f"quantization is {quantization!r}; read `quantization_config.quant_method` in its config.json and "
            "set it; accepted: 'none' (16-bit weights"
            + (", vLLM quantizes to fp8 on the fly" if quantization == "fp8" else "")
            + f"), {', '.join(repr(m) for m, q in ACCEPTED_QUANTIZATION.items() if quantization in q and m != 'none')}"
        ]
    if quantization not in ACCEPTED_QUANTIZATION[declared]:
        return [
            f"quantization = {quantization!r}: a {declared} checkpoint "
            + ("has 16-bit weights and vLLM quantizes on the fly only to fp8" if declared == "none" else "")
            + f"; accepted: {' or '.join(map(repr, ACCEPTED_QUANTIZATION[declared]))}"
        ]
    return []
