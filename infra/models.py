"""Catalog of popular open models: the parts of each model's config.json the capacity planner needs.

Every row is copied from the model's `config.json` on the Hugging Face hub, at the repo id named in the row;
`parameters_billion` is the count the model card publishes (and tests/test_catalogs.py recomputes it from
the shapes). A model not in the catalog is described with the same `ModelArchitecture` in the stack config.
"""

from __future__ import annotations

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
