"""The rules scorer one signal at a time: every other weight is 0, so each expected score is the one weight (or a
share of it) worked out by hand from RuleWeights' documented meaning, not taken from the scorer."""

from __future__ import annotations

import re
from typing import Any

import pytest
from llm_gateway import semantic
from llm_gateway.semantic import RuleScorer, make_scorer, user_texts

SIGNALS = (
    "length",
    "code",
    "list_items",
    "questions",
    "multi_turn",
    "tools",
    "response_format",
    "complex_keyword",
    "complex_keyword_cap",
    "simple_keyword",
    "simple_keyword_cap",
)


def only(complex: list[str] | None = None, **weights: float) -> RuleScorer:
    """A scorer where only the named weights count; keywords are words that never occur unless a test uses them."""
    rules: dict[str, Any] = {
        "weights": {name: weights.get(name, 0.0) for name in SIGNALS},
        "complex_keywords": complex or ["zzcomplex"],
        "simple_keywords": ["zzsimple"],
        "long_text_chars": 100,
    }
    return RuleScorer(rules)


def chat(*users: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text} for text in users], **extra}


def test_length_adds_its_weight_in_proportion_up_to_long_text_chars() -> None:
    scorer = only(length=0.5)
    assert scorer.score(chat("a" * 50)) == pytest.approx(0.25)  # 50/100 of 0.5
    assert scorer.score(chat("a" * 100)) == pytest.approx(0.5)
    assert scorer.score(chat("a" * 300)) == pytest.approx(0.5)  # capped at the full weight


@pytest.mark.parametrize(
    "text",
    ["```\nx\n```", "def f(x):", "import os", "int x = 1;", "if (a) {", "a => b", "<div>", "call f() now"],
)
def test_code_signal(text: str) -> None:
    assert only(code=0.35).score(chat(text)) == pytest.approx(0.35)


def test_code_signal_is_absent_from_prose() -> None:
    assert only(code=0.35).score(chat("the capital of France")) == 0.0


def test_list_items_need_two_bulleted_or_numbered_lines() -> None:
    scorer = only(list_items=0.15)
    assert scorer.score(chat("- one\n- two")) == pytest.approx(0.15)
    assert scorer.score(chat("1. one\n2) two")) == pytest.approx(0.15)
    assert scorer.score(chat("* one\n• two")) == pytest.approx(0.15)
    assert scorer.score(chat("- only one item")) == 0.0
    assert scorer.score(chat("-no space\n-no space")) == 0.0


def test_questions_need_two_question_marks() -> None:
    scorer = only(questions=0.15)
    assert scorer.score(chat("why? how?")) == pytest.approx(0.15)
    assert scorer.score(chat("why?")) == 0.0


def test_multi_turn_needs_more_than_one_user_message() -> None:
    scorer = only(multi_turn=0.1)
    assert scorer.score(chat("a", "b")) == pytest.approx(0.1)
    assert scorer.score(chat("a")) == 0.0


def test_tools_or_functions() -> None:
    scorer = only(tools=0.3)
    assert scorer.score(chat("a", tools=[{"type": "function"}])) == pytest.approx(0.3)
    assert scorer.score(chat("a", functions=[{"name": "f"}])) == pytest.approx(0.3)
    assert scorer.score(chat("a", tools=[])) == 0.0


def test_response_format_json_only() -> None:
    scorer = only(response_format=0.25)
    assert scorer.score(chat("a", response_format={"type": "json_schema"})) == pytest.approx(0.25)
    assert scorer.score(chat("a", response_format={"type": "json_object"})) == pytest.approx(0.25)
    assert scorer.score(chat("a", response_format={"type": "text"})) == 0.0
    assert scorer.score(chat("a", response_format="json_object")) == 0.0


def test_complex_keywords_count_distinct_whole_words_up_to_the_cap() -> None:
    scorer = only(complex_keyword=0.2, complex_keyword_cap=0.5, complex=["prove", "step by step", "plan"])
    assert scorer.score(chat("prove it")) == pytest.approx(0.2)
    assert scorer.score(chat("Prove it, PROVE it")) == pytest.approx(0.2)  # distinct, any case
    assert scorer.score(chat("prove it step by step")) == pytest.approx(0.4)
    assert scorer.score(chat("prove it step by step, plan")) == pytest.approx(0.5)  # 0.6 capped at 0.5
    assert scorer.score(chat("improve the planet")) == 0.0  # whole words only


def test_simple_keywords_subtract_up_to_their_cap_and_the_score_stays_at_or_above_zero() -> None:
    rules: dict[str, Any] = {
        "weights": {
            **{name: 0.0 for name in SIGNALS},
            "length": 1.0,
            "simple_keyword": 0.1,
            "simple_keyword_cap": 0.15,
        },
        "complex_keywords": ["zzcomplex"],
        "simple_keywords": ["thanks", "hello"],
        "long_text_chars": 100,
    }
    scorer = RuleScorer(rules)
    text = "thanks " + "a" * 43  # 50 characters: length adds 0.5
    assert scorer.score(chat(text)) == pytest.approx(0.4)
    assert scorer.score(chat("hello " + "a" * 44)) == pytest.approx(0.5 - 0.1)  # "hello" only: 0.1
    assert scorer.score(chat("thanks" + "a" * 44)) == pytest.approx(0.5)  # "thanksaaa..." is no whole word
    assert scorer.score(chat("hello thanks " + "a" * 37)) == pytest.approx(0.5 - 0.15)  # 0.2 capped at 0.15
    assert RuleScorer({**rules, "weights": {**rules["weights"], "length": 0.0}}).score(chat("thanks")) == 0.0


def test_the_sum_is_clipped_at_one() -> None:
    scorer = only(tools=0.8, response_format=0.8)
    assert scorer.score(chat("a", tools=[{}], response_format={"type": "json_object"})) == 1.0


def test_user_texts_reads_users_only_and_text_parts() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "operator"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": None},
            "not a message",
        ]
    }
    assert user_texts(body) == ["a\nb", ""]
    assert user_texts({"prompt": "p"}) == ["p"]
    assert user_texts({"prompt": ["p", 1, "q"]}) == ["p", "q"]
    assert user_texts({"prompt": 5}) == []
    assert user_texts({}) == []


# ---- make_scorer's vector branch, without the model (mutation survivors, docs/testing.md) ------------------------
# The test names avoid the word that bench/mutation.py's `-k "not embedding"` deselects: these load no model.


class RecordedScorer:
    """Stands in for the model-backed scorer class: records what make_scorer passes it."""

    def __init__(self, examples: dict[str, list[str]] | None = None, *, top_k: int = 3, temperature: float = 0.05):
        self.examples, self.top_k, self.temperature = examples, top_k, temperature


def test_make_scorer_passes_the_vector_scorers_options_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semantic, "EmbeddingScorer", RecordedScorer)
    examples = {"simple": ["hi"], "complex": ["prove it"]}
    scorer = make_scorer("embedding", {"examples": examples, "top_k": 5, "temperature": 0.2})
    assert isinstance(scorer, RecordedScorer)
    assert (scorer.examples, scorer.top_k, scorer.temperature) == (examples, 5, 0.2)
    # No options: EmbeddingOptions' documented defaults (shipped examples, top_k 3, temperature 0.05).
    default = make_scorer("embedding", {})
    assert (default.examples, default.top_k, default.temperature) == (None, 3, 0.05)  # type: ignore[union-attr]


def test_make_scorer_refuses_bad_vector_options_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semantic, "EmbeddingScorer", RecordedScorer)
    with pytest.raises(ValueError, match=r"(?s)^invalid semantic embedding options: .*top_k"):
        make_scorer("embedding", {"top_k": 0})
    with pytest.raises(ValueError, match=r"^unknown semantic scorer kind 'Embedding'; accepted: 'rules', 'embedding'$"):
        make_scorer("Embedding", {})


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ({"simple": ["hi"]}, "examples must have exactly the keys ['simple', 'complex']; got ['simple']"),
        ({"simple": [], "complex": ["prove it"]}, "examples.simple must be a non-empty list of non-empty strings"),
        ({"simple": ["hi"], "complex": ["  "]}, "examples.complex must be a non-empty list of non-empty strings"),
    ],
)
def test_make_scorer_checks_the_example_routes(
    monkeypatch: pytest.MonkeyPatch, examples: dict[str, list[str]], message: str
) -> None:
    monkeypatch.setattr(semantic, "EmbeddingScorer", RecordedScorer)
    with pytest.raises(ValueError, match=re.escape(message)):
        make_scorer("embedding", {"examples": examples})
