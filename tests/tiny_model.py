"""A tiny Llama checkpoint built on the spot, so a real vLLM server can start with no hub access.

Random weights (the text it writes is noise; the tests check the protocol, not the prose), a byte-level BPE
tokenizer trained on a few sentences, and a chat template. Builds in a few seconds on two cores.
"""

from __future__ import annotations

from pathlib import Path

# Llama 3 style, minus the special-token ceremony: enough for /v1/chat/completions to render a prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|begin|>", "<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Large language models answer questions, write code and summarise documents.",
    "vLLM serves models with paged attention and continuous batching on GPUs and CPUs.",
    "Kubernetes schedules pods onto nodes; a gateway routes each request to a healthy replica.",
    "Hello! How can I help you today? Say hello in one short sentence, please.",
    "0123456789 +-*/=()[]{}<>.,;:!?'\"",
]


def build_tiny_llama(directory: Path, max_position_embeddings: int = 4096, vocab_size: int = 512) -> Path:
    """Write config.json, safetensors weights and a fast tokenizer into `directory`; return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|begin|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        model_max_length=max_position_embeddings,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    # float32 on disk; the server casts to the `--dtype` it is given.
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory, safe_serialization=True)
    return directory
