"""Requests that aiohttp refuses before any handler runs, answered in OpenAI's error format.

aiohttp's HTTP parser refuses oversized headers and malformed requests itself, and `RequestHandler.handle_error`
answers them as text/plain echoing the start of the offending line (for an Authorization header, the start of a
key) after logging a traceback per request. Overriding `handle_error` is the hook aiohttp offers; a `Server` whose
protocol factory builds that handler, and a runner that serves through it, put it in place.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .errors import error_body

# Called with (request_id, status, reason) for each refused request, so that it is audited like any other.
Refused = Callable[[str, int, str], None]


class OpenAIErrorRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, answering its own errors as JSON with a request id."""

    refused: Refused | None = None

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            # A client's malformed or oversized request: expected on a public port, so no traceback, and the
            # parser's message is not repeated since it quotes the client's bytes.
            status, text, reason = self._describe_refusal(exc)
        elif status == 504:
            text, reason = "The gateway timed out handling the request.", "timeout"
        else:
            # An exception that escaped a handler is a gateway bug: its traceback is worth a log entry.
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            status, text, reason = 500, "Internal gateway error.", "internal_error"
        if request.writer.output_size > 0:
            # Part of an answer is on the wire already: there is no way to send another one.
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        # The parser failed before the headers were read, so a client's x-request-id is unknown.
        request_id = os.urandom(12).hex()
        if self.refused is not None:
            self.refused(request_id, status, reason)
        response = web.Response(
            status=status,
            body=orjson.dumps(error_body(status, text, request_id, code=reason)),
            content_type="application/json",
            headers={"x-request-id": request_id},
        )
        response.force_close()
        return response

    def _describe_refusal(self, exc: HttpProcessingError) -> tuple[int, str, str]:
        # aiohttp raises LineTooLong for a header (max_field_size) or the request line (max_line_size), and a
        # plain BadHttpMessage for too many headers; 431 is the status RFC 6585 gives to both header cases.
        if isinstance(exc, LineTooLong) or exc.message == "Too many headers received":
            text = (
                f"The request headers are too large: at most {self.max_headers} headers of at most "
                f"{self.max_field_size} bytes each, after a request line of at most {self.max_line_size} bytes."
            )
            return 431, text, "headers_too_large"
        return 400, "The request is not valid HTTP/1.1.", "bad_http_request"


class OpenAIErrorServer(web.Server):
    """aiohttp's low-level server, building `OpenAIErrorRequestHandler` for each connection."""

    refused: Refused | None = None

    def __call__(self) -> RequestHandler:
        handler = OpenAIErrorRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.refused = self.refused
        return handler


class OpenAIErrorAppRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer parser errors in OpenAI's format and report them to `refused`."""

    def __init__(self, app: web.Application, *, refused: Refused | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._refused = refused

    async def _make_server(self) -> web.Server:
        # AppRunner starts the app and builds its Server; the same server, with our protocol factory, serves it.
        plain = await super()._make_server()
        server = OpenAIErrorServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
        server.refused = self._refused
        return server
