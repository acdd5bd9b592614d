"""The HTTP server: OpenAI-compatible endpoints, probes, metrics, config reload and graceful drain."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .accounting import Ledger
from .activator import Activators, end_stream
from .auth import TokenBucket
from .config import ConfigError, GatewayConfig, load_config
from .errors import GatewayError, error_response
from .http_errors import OpenAIErrorAppRunner
from .ledger import UsageLedger
from .ledger_http import ledger_ids, served_by_fallback, spend_report
from .metrics import Metrics
from .proxy import Exchange, Forwarder, StreamBroken
from .routing import Route
from .runtime import Runtime
from .shared_limits import MonthToDate

# A client's own request id is reused when it is short and harmless in a log line.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Gateway:
    def __init__(self, config: GatewayConfig, config_path: str | Path | None = None) -> None:
        self.config_path = config_path
        self.metrics = Metrics()
        self.ledger = Ledger()
        if config.audit.path != "-" and Path(config.audit.path).is_file():
            self.ledger.restore(config.audit.path)
        self.buckets: dict[str, TokenBucket] = {}
        # The usage ledger is read once at start: a reload does not move it to another database.
        self.usage_ledger = UsageLedger(config.ledger, self.metrics.registry) if config.ledger else None
        self.runtime = Runtime(config, self.metrics, self.ledger, self.buckets, self._month_to_date())
        self.activators = Activators(self.metrics)  # wait queues of backends at zero; they outlive a reload
        self.activators.attach(self.runtime.backends.values())
        self.draining = False
        # Read by the gauge when /metrics is scraped: no lock or call per request.
        self.in_flight = 0
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self._reload_lock = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()

    def _month_to_date(self) -> MonthToDate | None:
        # What the shared limit store is rebuilt from when it loses a month's counters.
        return self.usage_ledger.team_month_to_date if self.usage_ledger is not None else None

    async def start(self) -> None:
        await self.runtime.start()
        if self.usage_ledger is not None:
            # With a shared limit store, that store counts the month; else this replica's Ledger starts from the DB.
            shared = self.runtime.config.limit_store is not None
            await self.usage_ledger.start(None if shared else self.ledger)

    async def reload(self, config: GatewayConfig | None = None) -> bool:
        """Swap in a new config; in-flight requests finish on the old one; False if invalid."""
        async with self._reload_lock:
            runtime: Runtime | None = None
            try:
                if config is None:
                    assert self.config_path is not None, "reload without a config needs the config file path"
                    config = load_config(self.config_path)
                runtime = Runtime(config, self.metrics, self.ledger, self.buckets, self._month_to_date())
                self.activators.attach(runtime.backends.values())
                _carry_health(self.runtime, runtime)
                await runtime.start()
            except (ConfigError, OSError) as exc:
                if runtime is not None:
                    await runtime.close(drain_timeout_s=0)
                print(f"llm-gateway: reload rejected, keeping the current config: {exc}", file=sys.stderr)
                return False
            old, self.runtime = self.runtime, runtime
            self._forget_gone_endpoints(old, runtime)
            self._forget_gone_budgets(old, runtime)
            task = asyncio.create_task(old.close(drain_timeout_s=old.config.server.request_timeout_s))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
            print("llm-gateway: configuration reloaded", file=sys.stderr)
            return True

    def _forget_gone_endpoints(self, old: Runtime, new: Runtime) -> None:
        kept = {(b.name, e.label) for b in new.backends.values() for e in b.endpoints}
        for backend in old.backends.values():
            for endpoint in backend.endpoints:
                if (backend.name, endpoint.label) not in kept:
                    backend.forget_endpoint(endpoint)

    def _forget_gone_budgets(self, old: Runtime, new: Runtime) -> None:
        budgets = {team.name for team in new.config.teams if team.monthly_budget_usd is not None}
        for team in old.config.teams:
            if team.monthly_budget_usd is not None and team.name not in budgets:
                self.metrics.team_budget.remove(team.name)

    async def close(self) -> None:
        await self.runtime.close(drain_timeout_s=self.runtime.config.server.drain_timeout_s)
        for task in list(self._retired):
            await task
        if self.usage_ledger is not None:
            await self.usage_ledger.close()  # after the drain: the last requests' rows are in its batch

    def make_app(self) -> web.Application:
        # The body limit is checked per request against the current config; this is only aiohttp's hard cap.
        app = web.Application(client_max_size=max(self.runtime.config.server.max_body_bytes, 64 * 1024 * 1024))
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/spend", self.spend)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_route("*", "/v1/{tail:.*}", self.unknown_path)
        return app

    # ---- OpenAI endpoints

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, "/chat/completions", "messages")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, "/completions", "prompt")

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._proxy(request, "/embeddings", "input")

    async def models(self, request: web.Request) -> web.StreamResponse:
        runtime = self.runtime
        request_id = _request_id(request)
        try:
            runtime.teams.authenticate(request.headers.get("Authorization"))
        except GatewayError as error:
            return error_response(error, request_id)
        return web.Response(
            body=runtime.models_body, content_type="application/json", headers={"x-request-id": request_id}
        )

    async def spend(self, request: web.Request) -> web.StreamResponse:
        return await spend_report(self.usage_ledger, self.runtime, request, _request_id(request))

    async def unknown_path(self, request: web.Request) -> web.StreamResponse:
        error = GatewayError(404, f"Unknown endpoint {request.method} {request.path}.", "not_found", code="unknown_url")
        return error_response(error, _request_id(request))

    async def _proxy(self, request: web.Request, path: str, content_key: str) -> web.StreamResponse:
        runtime = self.runtime  # this request finishes on this config even if a reload happens meanwhile
        exchange = Exchange(_request_id(request), time.perf_counter())
        exchange.trace = runtime.tracing.start(request.headers, exchange, path)
        runtime.in_flight += 1
        self.in_flight += 1
        body: dict[str, Any] | None = None
        forwarder: Forwarder | None = None
        try:
            exchange.team = runtime.teams.authenticate(request.headers.get("Authorization"))
            if self.usage_ledger is not None:
                ledger_ids(request, exchange)
            if runtime.shared_limits is None:
                runtime.teams.check_limits(exchange.team)
            else:
                await runtime.shared_limits.check(exchange.team)
            raw_body, body = await _read_body(request, runtime.config.server.max_body_bytes)
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise GatewayError(400, "'model' must be a non-empty string.", "bad_request", param="model")
            exchange.requested_model = model
            _check_fields(body, content_key)
            exchange.stream = stream = content_key != "input" and body.get("stream") is True
            route = await self._route(runtime, model, body)
            exchange.model, exchange.route = model, route.model
            forwarder = Forwarder(request, runtime, exchange, path, body, raw_body, stream)
            return await forwarder.run(route)
        except GatewayError as error:
            if forwarder is not None and forwarder.response is not None:
                # A stream already answered 200 while its backend woke (activator.py): the error goes in the stream.
                await end_stream(forwarder, error)
                return forwarder.response
            exchange.status = error.status
            exchange.reason = error.reason
            return error_response(error, exchange.request_id)
        except Exception:
            # A bug must still answer in OpenAI's format, with an id to find the traceback by.
            print(f"llm-gateway: request {exchange.request_id} failed:", file=sys.stderr)
            traceback.print_exc()
            if forwarder is not None and forwarder.response is not None:
                # Mid-stream: headers are gone already, so the stream itself must say that it failed.
                await forwarder.end_with_error(
                    StreamBroken("internal_error", "Internal gateway error.", recoverable=False)
                )
                exchange.status, exchange.reason = 500, "internal_error"
                return forwarder.response
            exchange.status, exchange.reason = 500, "internal_error"
            internal = GatewayError(500, "Internal gateway error.", "internal_error")
            return error_response(internal, exchange.request_id)
        finally:
            runtime.in_flight -= 1
            self.in_flight -= 1
            self._finish(runtime, exchange, body)

    async def _route(self, runtime: Runtime, model: str, body: dict[str, Any]) -> Route:
        route = runtime.routes.get(model)
        if route is not None:
            return route
        alias = runtime.aliases.get(model)
        if alias is not None:
            return await alias.route_for(body)
        known = ", ".join([*runtime.routes, *runtime.aliases])
        raise GatewayError(
            404, f"The model {model!r} does not exist. Available: {known}.", "model_not_found", param="model"
        )

    def refused(self, request_id: str, status: int, reason: str) -> None:
        """Count and audit a request that aiohttp's parser refused before any handler ran."""
        exchange = Exchange(request_id, time.perf_counter())
        exchange.status, exchange.reason = status, reason
        self._finish(self.runtime, exchange, None)

    def _finish(self, runtime: Runtime, exchange: Exchange, body: dict[str, Any] | None) -> None:
        """Account, count and audit one finished request."""
        latency = time.perf_counter() - exchange.started
        exchange.trace.finish()
        series = self.metrics.series(exchange.team, exchange.model, exchange.backend)
        status = exchange.status
        series.requests(status).inc()
        if status >= 400 and exchange.reason is None:
            exchange.reason = "upstream_error"
        if exchange.reason is not None:
            series.errors(exchange.reason).inc()
        if exchange.prompt_tokens or exchange.completion_tokens:
            # The cost was added up per attempt, each at its backend's price (a recovered stream has several).
            series.input_tokens.inc(exchange.prompt_tokens)
            series.output_tokens.inc(exchange.completion_tokens)
            if exchange.cost_usd:
                series.cost.inc(exchange.cost_usd)
            # The spend gauge is set when /metrics is read, not here.
            self.ledger.record(exchange.team, exchange.prompt_tokens + exchange.completion_tokens, exchange.cost_usd)
            if runtime.shared_limits is not None:
                runtime.shared_limits.record(
                    exchange.team, exchange.prompt_tokens + exchange.completion_tokens, exchange.cost_usd
                )
        if exchange.backend != "none":
            series.duration.observe(latency)
            if exchange.ttft_s is not None:
                series.ttft.observe(exchange.ttft_s)
        record: dict[str, Any] = {
            "time": time.time(),
            "request_id": exchange.request_id,
            "team": exchange.team,
            "model": exchange.requested_model,
            "route": exchange.route,
            "backend": exchange.backend,
            "endpoint": exchange.endpoint,
            "attempts": exchange.attempts,
            "status": status,
            "error": exchange.reason,
            "recovery_error": exchange.recovery,
            "stream": exchange.stream,
            "prompt_tokens": exchange.prompt_tokens,
            "completion_tokens": exchange.completion_tokens,
            "cost_usd": exchange.cost_usd,
            "latency_s": round(latency, 6),
            "ttft_s": None if exchange.ttft_s is None else round(exchange.ttft_s, 6),
        }
        if self.usage_ledger is not None:
            self.usage_ledger.append(record, exchange.key_id, exchange.ledger_id, served_by_fallback(runtime, exchange))
        if runtime.config.audit.include_prompts and body is not None:
            record["request"] = body
        try:
            runtime.audit.write(record)
        except OSError as exc:
            # A full disk must not take the answers down with it; the line goes to stderr instead.
            print(f"llm-gateway: audit write failed ({exc}): {record}", file=sys.stderr)

    # ---- probes and metrics

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        if self.draining:
            return web.Response(status=503, text="draining")
        if not self.runtime.ready():
            return web.Response(status=503, text="no healthy upstream endpoint")
        return web.Response(text="ready")

    async def metrics_page(self, request: web.Request) -> web.StreamResponse:
        # Month-to-date spend must read 0 after a month change even for teams with no request yet.
        shared = self.runtime.shared_limits
        fleet = await shared.spend_by_team() if shared is not None else {}  # the fleet's, with shared limits
        for team in self.runtime.config.teams:
            spend = fleet.get(team.name, self.ledger.usage(team.name).spend_usd)
            self.metrics.child(self.metrics.team_spend, team.name).set(spend)
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _carry_health(old: Runtime, new: Runtime) -> None:
    """Endpoints that survive a reload keep their health, so a dead one does not get traffic again."""
    for name, backend in new.backends.items():
        previous = old.backends.get(name)
        if previous is None:
            continue
        if backend.config.balancing == previous.config.balancing:
            # What each pod has cached does not change with the config file: keep the prefix and session maps.
            backend.balancer = previous.balancer
        known = {endpoint.base_url: endpoint for endpoint in previous.endpoints}
        for endpoint in backend.endpoints:
            before = known.get(endpoint.base_url)
            if before is not None:
                endpoint.healthy, endpoint.failures = before.healthy, before.failures
                endpoint.check_failures, endpoint.ejections = before.check_failures, before.ejections
                endpoint.ejected_until, endpoint.ejected_by_requests = before.ejected_until, before.ejected_by_requests
                backend.publish_health(endpoint)


def _request_id(request: web.Request) -> str:
    given = request.headers.get("x-request-id")
    if given and REQUEST_ID.match(given):
        return given
    return os.urandom(12).hex()


async def _read_body(request: web.Request, limit: int) -> tuple[bytes, dict[str, Any]]:
    content_type = request.headers.get("Content-Type")
    if content_type and "json" not in content_type.lower():
        raise GatewayError(
            415,
            f"Content-Type must be application/json, not {content_type!r}.",
            "bad_request",
            code="unsupported_media_type",
        )
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(limit) from exc
    if len(raw) > limit:
        raise _too_large(limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"The request body is not valid JSON: {exc}.", "bad_request") from exc
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", "bad_request")
    return raw, body


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"The request body is larger than the limit of {limit} bytes.",
        "bad_request",
        code="body_too_large",
    )


def _check_fields(body: dict[str, Any], content_key: str) -> None:
    """The few checks the gateway needs itself; the model server validates the rest."""
    content = body.get(content_key)
    if content_key == "messages":
        if not isinstance(content, list) or not content or not all(isinstance(m, dict) for m in content):
            raise GatewayError(
                400,
                "'messages' must be a non-empty list of message objects.",
                "bad_request",
                param="messages",
            )
    elif not isinstance(content, str | list):
        raise GatewayError(400, f"'{content_key}' must be a string or a list.", "bad_request", param=content_key)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise GatewayError(400, "'stream' must be true or false.", "bad_request", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise GatewayError(400, "'stream_options' must be an object.", "bad_request", param="stream_options")


async def start_server(gateway: Gateway, host: str, port: int) -> web.AppRunner:
    """Start the gateway's health checks and its HTTP listener; the caller owns the returned runner."""
    await gateway.start()
    server = gateway.runtime.config.server
    runner = OpenAIErrorAppRunner(
        gateway.make_app(),
        refused=gateway.refused,
        access_log=None,  # the audit line is the only per-request log
        handle_signals=False,
        shutdown_timeout=server.drain_timeout_s,
        max_field_size=server.max_header_bytes,
        max_headers=server.max_headers,
        max_line_size=server.max_request_line_bytes,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    return runner


async def stop_server(gateway: Gateway, runner: web.AppRunner) -> None:
    """Stop listening, let in-flight requests finish (up to drain_timeout_s), then close upstream pools."""
    gateway.draining = True
    await runner.cleanup()
    await gateway.close()
