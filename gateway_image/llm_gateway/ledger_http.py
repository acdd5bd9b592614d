"""The usage ledger's part of request handling: row ids, the fallback flag, and GET /v1/spend."""

from __future__ import annotations

import logging
import os

from aiohttp import web

from .errors import GatewayError, error_response
from .ledger import DB_ERRORS, UsageLedger, key_id
from .proxy import Exchange
from .runtime import Runtime
from .spend import ReportError, parse_query, render, spend_rows

log = logging.getLogger("llm_gateway.ledger")


def ledger_ids(request: web.Request, exchange: Exchange) -> None:
    """The key's id, and a unique row id when the client chose the request id (which it may send twice: the ledger
    must not drop its second request as a duplicate, nor let a client skip billing by reusing an id)."""
    exchange.key_id = key_id(request.headers.get("Authorization"))
    if request.headers.get("x-request-id") == exchange.request_id:
        exchange.ledger_id = f"{exchange.request_id}~{os.urandom(4).hex()}"


def served_by_fallback(runtime: Runtime, exchange: Exchange) -> bool:
    """Answered by a backend that is not one of its route's targets: a fallback or a context fallback."""
    route = runtime.routes.get(exchange.route)
    if route is None or exchange.backend == "none":
        return False
    return all(target.name != exchange.backend for target in route.targets)


async def spend_report(
    usage_ledger: UsageLedger | None, runtime: Runtime, request: web.Request, request_id: str
) -> web.StreamResponse:
    """An admin call with its own pool and timeout: never on the proxy path, never holding a proxy connection."""
    try:
        team = runtime.teams.authenticate(request.headers.get("Authorization"))
        config = runtime.teams.by_name.get(team)
        if config is None or not config.admin:
            raise GatewayError(
                403, "Only keys of a team with admin: true may read spend reports.", "forbidden", code="not_admin"
            )
        if usage_ledger is None:
            raise GatewayError(404, "No usage ledger is configured (ledger:).", "not_found", code="no_ledger")
        try:
            query = parse_query(request.query)
        except ReportError as exc:
            raise GatewayError(400, str(exc), "bad_request", param=exc.param) from None
        try:
            rows = await spend_rows(await usage_ledger.pool(), query)
        except DB_ERRORS as exc:
            log.warning("spend report failed: %r", exc)
            raise GatewayError(
                503, "The usage ledger database is unavailable; retry later.", "ledger_unavailable", retry_after_s=5
            ) from None
    except GatewayError as error:
        return error_response(error, request_id)
    body, content_type = render(query, rows)
    return web.Response(body=body, content_type=content_type, headers={"x-request-id": request_id})
