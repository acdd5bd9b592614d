"""Cache-aware balancing measured on real vLLM CPU replicas: the same workload once per gateway policy.

Run: .venv/bin/python bench/prefix.py [--profile scarce-kv|roomy-kv] [--replicas 2] [--concurrency 6] [--seed 1]
(a profile sets the workload's defaults, PROFILES below; any option given beside it wins).

What runs (every process started here is stopped on exit; all on 127.0.0.1):
  - `--replicas` vLLM CPU servers (the tiny Llama of tests/tiny_model.py, the local stack's arguments via
    tests/vllm_server.py: --enable-prefix-caching, --enforce-eager), each with a small KV cache of `--kv-tokens`
    tokens, so that the workload's prefixes do not all fit in one replica: where a prompt lands then decides whether
    its prefix is still cached. One more server with `--replicas` times that cache is the single-replica baseline:
    one cache as large as all of them together, which sees every request (what cache-aware routing tries to match).
  - the gateway (`python -m llm_gateway`), restarted for each policy, in front of the replicas.
The workload (`workload()`), the same for every run but for a per-run salt at the start of each system prompt (so no
run reuses another's cache): `--groups` applications each with its own long system prompt, chosen with Zipf-skewed
popularity; `--conversations` conversations of `--turns` turns, each turn the whole history plus a new question;
`--concurrency` clients, each running its conversations turn after turn (a turn waits for the previous answer).
Before the runs it prints the KV arithmetic of the workload (kv_budget): the prompts' token counts under the model's
own chat template, the working set of the conversations in progress, and whether it fits in one replica's cache.
Reported per run: vLLM's own prefix-cache hit rate (deltas of vllm:prefix_cache_hits_total / queries_total over
every replica), the client's time to first token p50/p99 (streamed, first content chunk) and requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "gateway_image")]

MODEL = "bench-model"
GATEWAY_KEY = "sk-bench-prefix"
# Words the tiny tokenizer was trained on (tests/tiny_model.py): prompts tokenize to whole words, like prose would.
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "large",
    "language",
    "models",
    "answer",
    "questions",
    "write",
    "code",
    "and",
    "summarise",
    "documents",
    "vllm",
    "serves",
    "with",
    "paged",
    "attention",
    "continuous",
    "batching",
    "on",
    "gpus",
    "cpus",
    "kubernetes",
    "schedules",
    "pods",
    "onto",
    "nodes",
    "a",
    "gateway",
    "routes",
    "each",
    "request",
    "to",
    "healthy",
    "replica",
    "hello",
    "how",
    "can",
    "i",
    "help",
    "you",
    "today",
    "say",
    "in",
    "one",
    "short",
    "sentence",
]


@dataclass(frozen=True)
class Conversation:
    group: int
    system: str
    questions: list[str]
    answers: list[str]


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def workload(args: argparse.Namespace) -> list[Conversation]:
    """Conversations in the order clients take them. Group popularity is Zipf (weight 1/rank), so the first group
    carries ~37% of the conversations of 8 groups and the last ~5% (1/H_8 = 0.368)."""
    rng = random.Random(args.seed)
    groups = range(args.groups)
    systems = [f"You are assistant {g} of application {g}. " + words(rng, args.system_words) for g in groups]
    weights = [1 / (rank + 1) for rank in groups]
    made = []
    for _ in range(args.conversations):
        group = rng.choices(groups, weights)[0]
        questions = [words(rng, args.question_words) + "?" for _ in range(args.turns)]
        # Fixed answers stand in for the model's: the tiny model writes noise, and the history must be the same
        # in every run for the runs to be comparable.
        answers = [words(rng, args.answer_words) + "." for _ in range(args.turns)]
        made.append(Conversation(group, systems[group], questions, answers))
    return made


def messages(conversation: Conversation, turn: int, salt: str) -> list[dict[str, str]]:
    history: list[dict[str, str]] = [{"role": "system", "content": f"{salt} {conversation.system}"}]
    for index in range(turn):
        history.append({"role": "user", "content": conversation.questions[index]})
        history.append({"role": "assistant", "content": conversation.answers[index]})
    history.append({"role": "user", "content": conversation.questions[turn]})
    return history


# ----- processes ----------------------------------------------------------------------------------------------


def launch_vllm(work: Path, api_key: str, kv_tokens: int, args: argparse.Namespace) -> Any:
    """Start a real vLLM CPU server with the local stack's arguments and a KV cache of `kv_tokens` tokens; the
    caller waits for /health and stops it (tests/vllm_server.py stop_vllm)."""
    from tests import vllm_server as harness

    work.mkdir(parents=True, exist_ok=True)
    model_dir = harness.build_tiny_llama(work / "tiny-llama")
    port = harness.free_port()
    serve = harness.local_serve_args(model_dir, port)
    serve = harness._swap(serve, "--served-model-name", MODEL)
    serve = harness._swap(serve, "--max-model-len", str(args.max_model_len))
    # The tiny Llama's KV: 2 layers x 2 KV heads x 32 dims x (K, V) x 2 bytes (bfloat16) = 512 bytes a token.
    serve += ["--kv-cache-memory-bytes", str(kv_tokens * 512), "--block-size", str(args.block_size)]
    env = harness.local_serve_env(api_key, work)
    env.pop("VLLM_CPU_KVCACHE_SPACE")  # it would override --kv-cache-memory-bytes (vllm/platforms/cpu.py)
    log = work / "vllm.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*harness._vllm_command(), *serve], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return harness.VllmServer(f"http://127.0.0.1:{port}/v1", api_key, process, MODEL, log)


def wait_ready(url: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as reply:
            if reply.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s; log tail:\n{log.read_text(errors='replace')[-3000:]}")


@contextlib.contextmanager
def gateway(work: Path, servers: list[Any], policy: str, load_margin: int) -> Iterator[str]:
    from tests.vllm_server import free_port

    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "request_timeout_s": 120},
        "backends": [
            {
                "name": "vllm",
                "kind": "vllm",
                "endpoints": [server.base_url for server in servers],
                "api_key_env": "BENCH_VLLM_KEY",
                "health": {"interval_s": 5},
                "balancing": {"policy": policy, "load_margin": load_margin},
            }
        ],
        "routes": [{"model": MODEL, "targets": [{"backend": "vllm"}]}],
        "teams": [{"name": "bench", "key_sha256": [hashlib.sha256(GATEWAY_KEY.encode()).hexdigest()]}],
        "audit": {"path": str(work / f"audit-{policy}.jsonl")},
    }
    path = work / f"gateway-{policy}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    env = {**os.environ, "PYTHONPATH": str(ROOT / "gateway_image"), "BENCH_VLLM_KEY": servers[0].api_key}
    log = work / f"gateway-{policy}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_gateway", "--config", str(path)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", log, 60)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


# ----- measurement ----------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(vllm:prefix_cache_(?:hits|queries)_total)(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)


def cache_counters(servers: list[Any]) -> tuple[float, float]:
    """Sum over the servers of vLLM's prefix-cache hits and queries (in tokens)."""
    hits = queries = 0.0
    for server in servers:
        with urllib.request.urlopen(server.root_url + "/metrics", timeout=10) as reply:
            text = reply.read().decode()
        for name, value in _SAMPLE.findall(text):
            if name.endswith("hits_total"):
                hits += float(value)
            else:
                queries += float(value)
    return hits, queries


async def drive(base_url: str, conversations: list[Conversation], args: argparse.Namespace, salt: str) -> Any:
    import openai

    ttfts: list[float] = []
    queue = iter(enumerate(conversations))

    async def client(c: openai.AsyncOpenAI, think: random.Random) -> None:
        for number, conversation in queue:
            for turn in range(args.turns):
                # A person reads and types between turns: other conversations' requests come in between, as in
                # production. Without it, a closed loop sends a conversation's next turn the instant its last
                # one left an endpoint, i.e. to the endpoint that just became least loaded: affinity by accident.
                await asyncio.sleep(think.expovariate(1 / args.think_s) if args.think_s else 0)
                started = time.perf_counter()
                stream: Any = await c.chat.completions.create(
                    model=MODEL,
                    messages=messages(conversation, turn, salt),  # type: ignore[arg-type]
                    max_tokens=8,
                    temperature=0,
                    stream=True,
                    extra_headers={"x-session-id": f"{salt}-{number}"},
                )
                first = None
                async for chunk in stream:
                    if first is None and chunk.choices and chunk.choices[0].delta.content:
                        first = time.perf_counter() - started
                ttfts.append(first if first is not None else time.perf_counter() - started)

    async with openai.AsyncOpenAI(base_url=base_url, api_key=GATEWAY_KEY, max_retries=0, timeout=120) as c:
        started = time.perf_counter()
        await asyncio.gather(*(client(c, random.Random(args.seed * 1000 + i)) for i in range(args.concurrency)))
        return ttfts, time.perf_counter() - started


def prompt_tokens(conversations: list[Conversation], args: argparse.Namespace, model_dir: Path) -> list[int]:
    """Each request's prompt length in tokens, rendered by the model's own chat template (the salt is as long as
    run_one's), in workload order."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = []
    for conversation in conversations:
        for turn in range(args.turns):
            text = tokenizer.apply_chat_template(
                messages(conversation, turn, "0" * 8), tokenize=False, add_generation_prompt=True
            )
            lengths.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return lengths


def kv_budget(lengths: list[int], concurrency: int, replicas: int, kv_tokens: int) -> dict[str, Any]:
    """The cache the conversations in progress need. Between two turns a conversation's cached state is its last
    prompt, so `concurrency` conversations at a random turn hold about concurrency x the mean prompt: the working
    set. Under least_outstanding every replica sees every conversation and needs all of it; under an affinity policy
    each conversation lives on one replica, which needs working set / replicas."""
    mean = sum(lengths) / len(lengths)
    working_set = concurrency * mean
    return {
        "mean_prompt_tokens": round(mean),
        "max_prompt_tokens": max(lengths),
        "working_set_tokens": round(working_set),
        "per_replica_if_affine": round(working_set / replicas),
        "kv_tokens_per_replica": kv_tokens,
        "fits_once_across_replicas": working_set / replicas <= kv_tokens,
        "fits_on_every_replica": working_set <= kv_tokens,
        "single_replica_kv_tokens": kv_tokens * replicas,
    }


def hit_ceiling(lengths: list[int], turns: int, block_size: int) -> float:
    """The most any policy can hit, in tokens: each turn finds its conversation's previous prompt cached, in whole
    blocks (vLLM caches full blocks only), and a first turn finds nothing (the shared system prompts, a block or so,
    are left out). `lengths` in workload order, `turns` a conversation."""
    hits = sum((lengths[i - 1] // block_size) * block_size for i in range(len(lengths)) if i % turns)
    return hits / sum(lengths)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_one(work: Path, servers: list[Any], run: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run: `run` is a policy, or policy:margin to override --load-margin."""
    policy, _, margin = run.partition(":")
    load_margin = int(margin) if margin else args.load_margin
    conversations = workload(args)
    salt = secrets.token_hex(4)  # a new first block: nothing of an earlier run is a hit
    before = cache_counters(servers)
    with gateway(work, servers, policy, load_margin) as url:
        ttfts, wall = asyncio.run(drive(url, conversations, args, salt))
    after = cache_counters(servers)
    hits, queries = after[0] - before[0], after[1] - before[1]
    return {
        "run": f"{policy} x{len(servers)}" + (f", margin {load_margin}" if policy != "least_outstanding" else ""),
        "requests": len(ttfts),
        "hit_rate": hits / queries if queries else 0.0,
        "prompt_tokens": queries,
        "ttft_p50_ms": statistics.median(ttfts) * 1000,
        "ttft_p99_ms": percentile(ttfts, 0.99) * 1000,
        "requests_per_s": len(ttfts) / wall,
    }


# Workloads worth keeping (docs/benchmarks.md, runs C and E); the options' own defaults are roomy-kv's.
# scarce-kv, the default since run E, is the production regime, where the KV cache is the scarce resource: 16
# conversations in progress with short shared system prompts (the unique history dominates) and a cache per replica
# that holds the working set once across the replicas but not on each (kv_budget prints the figures), so the copies
# that least_outstanding spreads over every replica evict each other. roomy-kv (run C): 6 conversations in progress
# with long histories and long system prompts, in caches large enough that each replica keeps most of them.
PROFILES: dict[str, dict[str, Any]] = {
    "roomy-kv": {},
    "scarce-kv": {
        "conversations": 48,
        "turns": 6,
        "system_words": 20,
        "question_words": 30,
        "answer_words": 20,
        "concurrency": 16,
        "kv_tokens": 3584,
        "max_model_len": 1024,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="scarce-kv", help="the workload's defaults")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--conversations", type=int, default=24)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--system-words", type=int, default=150)
    parser.add_argument("--question-words", type=int, default=60)
    parser.add_argument("--answer-words", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=6, help="conversations in progress at once")
    parser.add_argument("--think-s", type=float, default=0.5, help="mean pause between turns (exponential)")
    parser.add_argument("--kv-tokens", type=int, default=4096, help="KV cache of each replica, in tokens")
    parser.add_argument("--max-model-len", type=int, default=2048, help="must fit in --kv-tokens")
    parser.add_argument("--block-size", type=int, default=32, help="vLLM's block size (CPU prefers multiples of 32)")
    parser.add_argument("--policies", default="least_outstanding,prefix_aware,prefix_aware:1,session")
    parser.add_argument("--load-margin", type=int, default=2, help="the gateway's balancing.load_margin")
    parser.add_argument("--seed", type=int, default=1)
    chosen, _ = parser.parse_known_args(argv)
    parser.set_defaults(**PROFILES[chosen.profile])
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-prefix-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        from tests.vllm_server import stop_vllm

        api_key = "bench-" + secrets.token_hex(8)
        # Started together: each waits ~25 s for its engine, mostly not on the CPU.
        started: dict[str, Any] = {}
        sizes = {f"replica{i}": args.kv_tokens for i in range(args.replicas)} | {
            "single": args.kv_tokens * args.replicas
        }
        for name, kv_tokens in sizes.items():
            started[name] = launch_vllm(work / name, api_key, kv_tokens, args)
            stack.callback(stop_vllm, started[name])
        for server in started.values():
            wait_ready(server.root_url + "/health", server.log_path, 300)
        replicas = [started[f"replica{i}"] for i in range(args.replicas)]
        lengths = prompt_tokens(workload(args), args, work / "replica0" / "tiny-llama")
        budget = kv_budget(lengths, args.concurrency, args.replicas, args.kv_tokens)
        budget["hit_rate_ceiling"] = round(hit_ceiling(lengths, args.turns, args.block_size), 3)
        print(json.dumps(budget), flush=True)
        print(f"load average: {os.getloadavg()}", flush=True)
        results.append(run_one(work, [started["single"]], "least_outstanding", args))
        results[-1]["run"] = f"single replica, {args.replicas}x cache"
        for policy in args.policies.split(","):
            results.append(run_one(work, replicas, policy, args))
            print(json.dumps(results[-1]), flush=True)
    print(json.dumps(vars(args)))
    print(f"load average at the end: {os.getloadavg()}")
    print("| run | requests | prefix cache hit rate | TTFT p50 ms | TTFT p99 ms | requests/s |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {r['requests']} | {r['hit_rate']:.1%} | {r['ttft_p50_ms']:.0f} | "
            f"{r['ttft_p99_ms']:.0f} | {r['requests_per_s']:.1f} |"
        )
    by_run = {r["run"].split(" x")[0]: r for r in reversed(results)}  # the first run of each policy
    if "prefix_aware" in by_run and "least_outstanding" in by_run:
        pa, lo, single = by_run["prefix_aware"], by_run["least_outstanding"], results[0]
        print(f"prefix_aware / least_outstanding hit rate: {pa['hit_rate'] / max(lo['hit_rate'], 1e-9):.2f}x")
        print(f"prefix_aware / single replica hit rate: {pa['hit_rate'] / max(single['hit_rate'], 1e-9):.2f}")
        print(f"prefix_aware / least_outstanding TTFT p99: {pa['ttft_p99_ms'] / lo['ttft_p99_ms']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
