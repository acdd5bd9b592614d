"""The gateway's configuration: one YAML file, validated by pydantic.

The infrastructure code renders this schema into a ConfigMap, so this module is the contract between the two:
every field carries a description, and errors name the key path, the bad value and what is accepted.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .semantic import RouteExamples, RuleOptions

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"
SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"
# Key names printed as they are in error messages; any other key is quoted with repr().
PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:/-]+")


class ConfigError(ValueError):
    """The configuration file is missing, not YAML, or does not match the schema."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(StrictModel):
    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=8080, ge=1, le=65535, description="TCP port to listen on.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest accepted request body; larger ones get 413."
    )
    request_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Deadline of one client request, across upstream attempts, including a streamed answer.",
    )
    max_attempts: int = Field(
        default=3, ge=1, le=10, description="Upstream attempts per request (first try plus failovers)."
    )
    require_api_key: bool = Field(
        default=True,
        description="Reject requests without a team key. Only for local tests may this be false.",
    )
    shutdown_delay_s: float = Field(
        default=5.0,
        ge=0,
        description="On SIGTERM, keep serving this long with /readyz at 503, so that load balancers stop sending "
        "new requests before the listener closes.",
    )
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long in-flight requests may take to finish."
    )
    # aiohttp's own defaults; larger requests get 431 in OpenAI's format. Read when the listener starts.
    max_header_bytes: int = Field(
        default=8190,
        ge=1024,
        description="Largest header (name and value) accepted; larger ones get 431. A reload does not change it.",
    )
    max_headers: int = Field(
        default=128, ge=16, description="Most headers accepted per request; more get 431. A reload does not change it."
    )
    max_request_line_bytes: int = Field(
        default=8190,
        ge=1024,
        description="Longest request line (method, path, version) accepted. A reload does not change it.",
    )


class HealthConfig(StrictModel):
    path: str | None = Field(
        default=None,
        description="Path probed on each endpoint's origin (scheme://host:port). "
        "Default: /health for kind vllm, /v1/models for kind openai.",
    )
    interval_s: float = Field(default=5.0, ge=0, description="Seconds between active checks; 0 turns them off.")
    timeout_s: float = Field(default=2.0, gt=0, description="Timeout of one active check.")
    failures_to_eject: int = Field(
        default=3, ge=1, description="Consecutive failures (checks or requests) that take an endpoint out."
    )
    cooldown_s: float = Field(
        default=10.0,
        ge=0,
        description="Seconds an ejected endpoint stays out before a retry; each ejection in a row (no success in "
        "between) multiplies it, as Envoy's outlier detection does with its base_ejection_time.",
    )
    max_cooldown_s: float = Field(
        default=300.0,
        ge=0,
        description="Cap of the growing cool-down (Envoy's max_ejection_time, 300 s by default there too).",
    )
    panic_threshold: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of endpoints (0 to 1) that must be available; below it the backend is in panic, as in "
        "Envoy, and balances over all its endpoints, ejected ones included. When every endpoint is ejected this "
        "happens whatever the value (once no later backend of the route has one available): with 0, the default, "
        "only then. Health metrics and /readyz still report the ejections.",
    )


class DnsConfig(StrictModel):
    host: str = Field(description="DNS name to resolve, e.g. a headless Service: vllm-llama.llm.svc.cluster.local.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of every resolved address.")
    scheme: Literal["http", "https"] = Field(default="http", description="URL scheme of the endpoints.")
    path_prefix: str = Field(default="/v1", description="Path of the OpenAI API on each endpoint.")
    refresh_s: float = Field(
        default=10.0, gt=0, description="Seconds between re-resolutions (each A record = one endpoint)."
    )


class RetryConfig(StrictModel):
    same_backend: int = Field(
        default=1,
        ge=0,
        le=5,
        description="Retries of a 5xx or 429 answer on the same backend (on an endpoint not yet tried, else the same "
        "one) before the route's fallbacks get their turn: a transient error should not cost a paid fallback. Only "
        "before anything was sent to the client, within server.max_attempts and the request's deadline.",
    )
    backoff_base_s: float = Field(
        default=0.1,
        ge=0,
        le=10,
        description="Base of the jittered back-off before such a retry of a 5xx: retry N waits a random time in "
        "[0, (2^N - 1) x base], at most 10 x base (Envoy's retry back-off).",
    )
    max_retry_after_s: float = Field(
        default=5.0,
        ge=0,
        description="A 429 or 503 with a Retry-After up to this many seconds is retried on the same backend after "
        "that wait; a longer one fails over at once.",
    )


class WakeConfig(StrictModel):
    """Hold requests while a backend scaled to zero wakes (the activator pattern)."""

    deadline_s: float = Field(
        gt=0, le=3600, description="How long a request waits for a first ready endpoint before a 503 with Retry-After."
    )
    max_waiting: int = Field(default=100, ge=1, description="Requests held at once; excess gets an immediate 503.")
    keepalive_s: float = Field(
        default=10.0, gt=0, description="Interval of SSE comment lines sent to a waiting streaming client."
    )
    retry_after_s: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="Retry-After (seconds) of the 503 for a full queue or a wait past the deadline.",
    )


class BalancingConfig(StrictModel):
    """How a backend's endpoints share its requests."""

    policy: Literal["least_outstanding", "prefix_aware", "session"] = Field(
        default="least_outstanding",
        description="least_outstanding: fewest requests in flight; prefix_aware: where the prompt's prefix is likely "
        "cached, within a load bound; session: affinity by a header or the OpenAI `user` field.",
    )
    # vLLM hashes full blocks of 16 tokens, each hash chained to its parent's
    # (vllm-project/vllm@v0.32.0:vllm/v1/core/kv_cache_utils.py, hash_block_tokens). The gateway has no tokenizer,
    # so its blocks are characters. 256 characters (~64 tokens of English at ~4 characters a token, four of vLLM's
    # GPU blocks) keeps hashing cheap on the hot path (~1 us a block here) and is fine enough to tell prompts apart.
    block_chars: int = Field(
        default=256,
        ge=8,
        le=65536,
        description="prefix_aware: size of a prefix block in characters of the canonical prompt text (messages "
        "as role and content, in order); only full blocks count, as in vLLM.",
    )
    max_blocks: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="prefix_aware: leading blocks hashed per request (64 x 256 characters: the first 16 KB of "
        "the prompt); the rest of a longer prompt does not steer the choice.",
    )
    # SGLang's and vLLM's routers default their cache_threshold to 0.3 (lightseekorg/smg:docs/getting-started/
    # load-balancing.md; docs.gpustack.ai "Model Deployment Routing"): below it, a shared opening (a common
    # "You are a helpful assistant") would pull every request to one pod for a saving of a few blocks.
    min_match_ratio: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="prefix_aware: follow a held prefix only when it covers at least this share of the request's "
        "hashed blocks; below it the request is a new prefix.",
    )
    load_margin: int = Field(
        default=8,
        ge=0,
        description="prefix_aware and session: an endpoint with more than this many requests in flight above the "
        "least loaded one loses the request to the next best (bounded load).",
    )
    session_header: str = Field(
        default="x-session-id",
        pattern=r"^[A-Za-z0-9-]+$",
        description="session: the request header naming the session; without it, the OpenAI `user` field.",
    )
    max_entries: int = Field(
        default=65536,
        ge=16,
        le=4_194_304,
        description="prefix_aware: prefix blocks remembered per backend; session: sessions remembered per "
        "backend. The least recently used are forgotten first.",
    )


class BackendConfig(StrictModel):
    name: str = Field(pattern=NAME_PATTERN, description="Unique name, used in routes and metric labels.")
    kind: Literal["vllm", "openai"] = Field(
        description="vllm: a vLLM server (continue_final_message works); openai: any OpenAI-compatible API."
    )
    url: str | None = Field(
        default=None,
        description="Base URL of the OpenAI API, e.g. http://127.0.0.1:9000/v1 or https://api.openai.com/v1.",
    )
    endpoints: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Several base URLs of identical servers, balanced by least outstanding.",
    )
    dns: DnsConfig | None = Field(default=None, description="Discover endpoints by resolving a DNS name periodically.")
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding this backend's API key (from a Secret).",
    )
    model: str | None = Field(
        default=None, description="Model name this backend expects; replaces the model the client asked for."
    )
    timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Per attempt: longest wait for a whole non-streamed answer, or for a stream's first bytes and "
        "between its chunks.",
    )
    first_token_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Per attempt: longest wait for the first content of a stream (a role-only first chunk does not "
        "count), or for a whole non-streamed answer, before failing over like a timeout. Nothing has reached the "
        "client then. Unset: timeout_s alone. A non-streamed answer arrives whole, so keep it above your longest "
        "plain generation.",
    )
    max_model_len: int | None = Field(
        default=None,
        ge=1,
        description="Context length of the model behind this backend (vLLM's --max-model-len), in tokens: a "
        "request whose prompt clearly exceeds it goes straight to its route's context_fallbacks.",
    )
    retry: RetryConfig = Field(default=RetryConfig(), description="Retries on this backend before failing over.")
    max_connections: int = Field(default=512, ge=1, description="Size of the connection pool to this backend.")
    health: HealthConfig = Field(default=HealthConfig(), description="Active and passive health checking.")
    wake: WakeConfig | None = Field(
        default=None, description="Scaled to zero: hold requests until an endpoint is ready; absent: fail at once."
    )
    balancing: BalancingConfig = Field(default=BalancingConfig(), description="How endpoints share requests.")

    @model_validator(mode="after")
    def _one_address_source(self) -> Self:
        given = [key for key in ("url", "endpoints", "dns") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                f"backend {self.name!r} sets {given or 'none'} of url/endpoints/dns; set exactly one of them"
            )
        for url in [self.url] if self.url else self.endpoints or []:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"backend {self.name!r}: URL {url!r} must start with http:// or https://")
        if self.wake is not None and self.dns is None:
            # At zero means "the name has no address" (llm_gateway/activator.py); fixed URLs never are.
            raise ValueError(f"backend {self.name!r} sets wake but not dns; a backend that scales to zero needs dns")
        return self

    @property
    def health_path(self) -> str:
        if self.health.path is not None:
            return self.health.path
        return "/health" if self.kind == "vllm" else "/v1/models"


class TargetConfig(StrictModel):
    backend: str = Field(description="Name of a backend.")
    # 0 drains a target (it stays in the route but gets no share), as a weighted cluster does in Envoy; at least one
    # target of a route must be above 0 (RouteConfig). A finite number, since the split sums the weights.
    weight: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="Relative share of this route's traffic (any number >= 0, e.g. 80 and 20); 0 drains the target.",
    )


class RouteConfig(StrictModel):
    model: str = Field(min_length=1, description="Public model name clients ask for.")
    targets: list[TargetConfig] = Field(
        min_length=1, description="Backends sharing the traffic by weight; at least one weight above 0."
    )
    fallbacks: list[str] = Field(
        default_factory=list, description="Backends tried in order when the chosen target fails."
    )
    context_fallbacks: list[str] = Field(
        default_factory=list,
        description="Backends with a longer context (or a managed API) tried in order when a backend answers that "
        "the request exceeds its context length, or at once when the prompt clearly exceeds its max_model_len.",
    )
    fallback_while_waking: bool = Field(
        default=False,
        description="While the chosen backend wakes from zero, serve from the first fallback instead of waiting.",
    )

    @field_validator("targets")
    @classmethod
    def _some_weight(cls, targets: list[TargetConfig]) -> list[TargetConfig]:
        if targets and not any(target.weight > 0 for target in targets):
            raise ValueError("every weight is 0; at least one target's weight must be > 0")
        return targets


class AliasConfig(StrictModel):
    model: str = Field(default="auto", min_length=1, description="Public name of the alias, e.g. auto.")
    scorer: Literal["rules", "embedding"] = Field(default="rules", description="How request complexity is scored.")
    simple_route: str = Field(description="Route (public model) for requests scoring below the threshold.")
    complex_route: str = Field(description="Route (public model) for requests scoring at or above it.")
    threshold: float = Field(default=0.5, ge=0, le=1, description="Complexity score (0 simple .. 1 complex) cut-off.")
    # The scorers' own option models, so a bad option fails when the config is read (and a stack's render fails),
    # not when the gateway builds the scorer at start.
    rules: RuleOptions | None = Field(
        default=None, description="Options of the rules scorer (llm_gateway/semantic.py RuleOptions); scorer rules."
    )
    examples: RouteExamples | None = Field(
        default=None,
        description="Labelled example prompts of the embedding scorer, e.g. {simple: [...], complex: [...]}.",
    )

    @model_validator(mode="after")
    def _options_of_its_scorer(self) -> Self:
        # Options of the other scorer would be ignored without a word.
        if self.rules is not None and self.scorer != "rules":
            raise ValueError(f"`rules` are options of the rules scorer, but scorer is {self.scorer!r}")
        if self.examples is not None and self.scorer != "embedding":
            raise ValueError(f"`examples` are options of the embedding scorer, but scorer is {self.scorer!r}")
        return self


class TeamLimits(StrictModel):
    """A team without its keys: what a stack file says about a team (its keys come from a secret)."""

    name: str = Field(pattern=NAME_PATTERN, description="Team name, used in metrics and the audit log.")
    requests_per_minute: int | None = Field(default=None, ge=1, description="Rate limit; absent means none.")
    monthly_token_limit: int | None = Field(default=None, ge=1, description="Input + output tokens per calendar month.")
    monthly_budget_usd: float | None = Field(default=None, gt=0, description="Spend per calendar month in USD.")


class TeamConfig(TeamLimits):
    admin: bool = Field(
        default=False, description="May read every team's spend (GET /v1/spend); a finance or platform key."
    )
    key_sha256: list[Annotated[str, Field(pattern=SHA256_HEX_PATTERN)]] = Field(
        min_length=1, description="Lower-case hex SHA-256 of each API key of the team (never the keys)."
    )


class PriceConfig(StrictModel):
    input_per_million: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_million: float = Field(ge=0, description="USD per million completion tokens.")


class AuditConfig(StrictModel):
    path: str = Field(default="-", description="File to append JSON lines to, or - for standard output.")
    include_prompts: bool = Field(default=False, description="Also log the request body (prompts). Off by default.")


class LedgerConfig(StrictModel):
    """The durable usage ledger: one PostgreSQL row per finished request, written off the hot path in batches."""

    dsn_env: str = Field(
        default="LEDGER_DSN",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the postgresql:// DSN (from a Secret; never in this file).",
    )
    batch_max_rows: int = Field(default=500, ge=1, le=10_000, description="Rows per insert at most.")
    batch_max_delay_s: float = Field(
        default=1.0, gt=0, le=60, description="A row waits at most this long before its batch is written."
    )
    spool_path: str = Field(
        default="/var/lib/llm-gateway/spool",
        description="Folder on the pod's volume where rows wait while PostgreSQL is unreachable.",
    )
    spool_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024 * 1024, description="Bound of the spool; rows beyond it are counted, logged."
    )
    write_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="Longest wait to connect or insert one batch before it goes to the spool."
    )
    report_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Longest wait for one GET /v1/spend query (its own small pool)."
    )


class LimitStoreConfig(StrictModel):
    """Shared limits: one Valkey/Redis that counts every team's requests, tokens and spend for the whole fleet."""

    url_env: str = Field(
        default="LIMIT_STORE_URL",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the redis:// or rediss:// URL, auth token included (from a Secret).",
    )
    on_failure: Literal["open", "closed"] = Field(
        default="open",
        description="Store unreachable: open = each replica enforces its share locally; closed = 503 to the client.",
    )
    timeout_s: float = Field(default=0.05, gt=0, le=5, description="Timeout of one call to the store.")
    replicas: int = Field(
        default=1, ge=1, description="Gateway replicas sharing the limits; a replica's local share when failing open."
    )


class TracingConfig(StrictModel):
    """OpenTelemetry spans over OTLP/HTTP (protobuf). Off: the gateway still propagates W3C traceparent to backends."""

    enabled: bool = Field(default=False, description="Export spans (the request, each attempt, the stream).")
    endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces",
        pattern=r"^https?://",
        description="OTLP/HTTP traces URL (http/protobuf), path included, e.g. http://otel-collector:4318/v1/traces.",
    )
    service_name: str = Field(default="llm-gateway", min_length=1, description="The spans' service.name resource.")
    sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of new traces sampled (by trace id); a request with a traceparent follows its sampled flag.",
    )
    # The defaults are the OpenTelemetry SDK's BatchSpanProcessor defaults (OTEL_BSP_* in the SDK's environment
    # variables): opentelemetry-python 1.45 opentelemetry-sdk/src/opentelemetry/sdk/trace/export/__init__.py.
    max_queue_size: int = Field(
        default=2048, ge=1, description="Spans held for export at most; beyond it new spans are dropped, not waited on."
    )
    max_export_batch_size: int = Field(
        default=512, ge=1, description="Spans per OTLP request at most; not above max_queue_size."
    )
    schedule_delay_s: float = Field(default=5.0, gt=0, le=60, description="Longest wait before a batch is exported.")
    export_timeout_s: float = Field(default=10.0, gt=0, le=60, description="Timeout of one OTLP export request.")

    @model_validator(mode="after")
    def _batch_fits_queue(self) -> Self:
        # The SDK refuses this combination with a ValueError when the processor is built (same source as above).
        if self.max_export_batch_size > self.max_queue_size:
            raise ValueError(
                f"max_export_batch_size {self.max_export_batch_size} exceeds max_queue_size {self.max_queue_size}; "
                "it must be at most the queue size"
            )
        return self


class GatewayConfig(StrictModel):
    """Top-level configuration of the LLM gateway."""

    server: ServerConfig = Field(default=ServerConfig(), description="Listener and request limits.")
    backends: list[BackendConfig] = Field(min_length=1, description="Upstream model servers.")
    routes: list[RouteConfig] = Field(min_length=1, description="Public model names and where they go.")
    aliases: list[AliasConfig] = Field(
        default_factory=list, description="Semantic routing: one name that picks a route per request."
    )
    teams: list[TeamConfig] = Field(default_factory=list, description="API key holders and their limits.")
    pricing: dict[str, PriceConfig] = Field(
        default_factory=dict,
        description="Prices by model; looked up by the backend's model name, then by the public name.",
    )
    audit: AuditConfig = Field(default=AuditConfig(), description="Where audit lines go.")
    stream_recovery: bool = Field(
        default=False,
        description="Continue a chat stream broken mid-answer on another vLLM backend.",
    )
    ledger: LedgerConfig | None = Field(
        default=None, description="Durable usage ledger on PostgreSQL; off when absent."
    )
    limit_store: LimitStoreConfig | None = Field(
        default=None, description="Fleet-wide limits on Valkey/Redis; absent means each replica counts alone."
    )
    tracing: TracingConfig = Field(
        default=TracingConfig(), description="OpenTelemetry span export over OTLP; off by default."
    )

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        problems = reference_problems(self)
        if problems:
            raise ReferenceProblems(problems)
        if self.server.require_api_key and not self.teams:
            raise ValueError("server.require_api_key is true but no teams are defined; add a team")
        return self


class Problem(NamedTuple):
    """A name that is defined twice or not at all: where (a pydantic location), the bad value, what is accepted."""

    loc: tuple[str | int, ...]
    value: str
    message: str

    def line(self) -> str:
        return f"{_path(self.loc)}: {self.value!r} {self.message}"


class ReferenceProblems(ValueError):
    """Every broken cross-reference of a config at once; pydantic keeps it as the error's ctx["error"], so a caller
    (parse_config, or the stack's render in infra/semantics.py) can name each problem's own key path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(problem.line() for problem in problems))


def reference_problems(config: GatewayConfig) -> list[Problem]:
    """The checks across sections: unique names, and every backend, route and priced model that is named exists."""
    problems: list[Problem] = []
    backend_names = _unique(problems, "backends", "name", [b.name for b in config.backends])
    route_names = _unique(problems, "routes", "model", [r.model for r in config.routes])
    _unique(problems, "aliases", "model", [a.model for a in config.aliases])
    _unique(problems, "teams", "name", [t.name for t in config.teams])
    seen_keys: set[str] = set()
    for i, team in enumerate(config.teams):
        for j, key in enumerate(team.key_sha256):
            if key in seen_keys:
                problems.append(Problem(("teams", i, "key_sha256", j), key, "appears twice; keys must be unique"))
            seen_keys.add(key)
    for i, route in enumerate(config.routes):
        for j, target in enumerate(route.targets):
            _known(problems, ("routes", i, "targets", j, "backend"), target.backend, backend_names)
        for j, fallback in enumerate(route.fallbacks):
            _known(problems, ("routes", i, "fallbacks", j), fallback, backend_names)
        for j, fallback in enumerate(route.context_fallbacks):
            _known(problems, ("routes", i, "context_fallbacks", j), fallback, backend_names)
    for i, alias in enumerate(config.aliases):
        if alias.model in route_names:
            problems.append(Problem(("aliases", i, "model"), alias.model, "is also a route; pick another name"))
        _known(problems, ("aliases", i, "simple_route"), alias.simple_route, route_names)
        _known(problems, ("aliases", i, "complex_route"), alias.complex_route, route_names)
    # Prices are looked up by the backend's model name, then by the route's public name (runtime.py `price`): a key
    # that is neither is never used, most likely a typo that leaves a model unbilled.
    priced = route_names | {backend.model for backend in config.backends if backend.model is not None}
    for name in config.pricing:
        _known(problems, ("pricing", name), name, priced)
    return problems


def _unique(problems: list[Problem], section: str, key: str, names: list[str]) -> set[str]:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            problems.append(Problem((section, index, key), name, "appears twice; names must be unique"))
        seen.add(name)
    return seen


def _known(problems: list[Problem], loc: tuple[str | int, ...], name: str, known: set[str]) -> None:
    if name not in known:
        # A name with a line break (a route model "\r") would split the one-line message: such names are quoted.
        names = ", ".join(n if PLAIN_KEY.fullmatch(n) else repr(n) for n in sorted(known))
        problems.append(Problem(loc, name, f"is not defined; known: {names}"))


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a YAML config file; raise ConfigError with one line per problem."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    return parse_config(raw, source=str(path))


def parse_config(raw: object, source: str = "config") -> GatewayConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with keys {sorted(GatewayConfig.model_fields)}")
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [line for error in exc.errors() for line in _describe(error)]
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(lines)) from None


def _describe(error: Any) -> list[str]:
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ReferenceProblems):
        return [problem.line() for problem in cause.problems]
    return [_describe_one(error)]


def _path(loc: tuple[Any, ...]) -> str:
    return "".join(_key_part(part) for part in loc).lstrip(".") or "(top)"


def _describe_one(error: Any) -> str:
    loc = error["loc"]
    path = _path(loc)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"{path}: unknown key; accepted keys here: {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"{path}: required key is missing"
    return f"{path}: {message} (got {error['input']!r})"


def _key_part(part: int | str) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    if PLAIN_KEY.fullmatch(part):
        return f".{part}"
    # A key with a line break, a space or ": " would split or blur the one-line-per-problem message.
    return f"[{part!r}]"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found at `loc`, walking through lists, dicts and optionals."""
    annotation: Any = GatewayConfig
    for part in loc:
        annotation = _model_in(annotation)
        if isinstance(part, str) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[part].annotation if part in annotation.model_fields else None
        else:
            args = typing.get_args(annotation)
            annotation = args[-1] if args else None
    model = _model_in(annotation)
    return sorted(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _model_in(annotation: Any) -> Any:
    # Unwrap `X | None` so that the walk reaches the model inside.
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        models = [a for a in typing.get_args(annotation) if a is not type(None)]
        return models[0] if len(models) == 1 else annotation
    return annotation
