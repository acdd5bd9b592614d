"""Errors in OpenAI's format: {"error": {"message", "type", "param", "code"}}, plus the request id."""

from __future__ import annotations

import orjson
from aiohttp import web

# HTTP status -> OpenAI error type, as the OpenAI API and the `openai` client name them.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
}


class GatewayError(Exception):
    """An error answered to the client; `reason` is the metrics label."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.param = param
        self.code = code or reason
        self.retry_after_s = retry_after_s

    def body(self, request_id: str) -> dict[str, object]:
        return error_body(self.status, self.message, request_id, param=self.param, code=self.code)


def error_body(
    status: int, message: str, request_id: str, *, param: str | None = None, code: str | None = None
) -> dict[str, object]:
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "api_error"),
            "param": param,
            "code": code,
            "request_id": request_id,
        }
    }


def error_response(error: GatewayError, request_id: str) -> web.Response:
    headers = {"x-request-id": request_id}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    return web.Response(
        status=error.status,
        body=orjson.dumps(error.body(request_id)),
        content_type="application/json",
        headers=headers,
    )
