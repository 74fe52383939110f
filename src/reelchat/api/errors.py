"""Every error leaves as {"error": {"message", "type", "param", "code"}} with the right status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from ..protocol.errors import RequestError, describe_validation_error
from ..service.errors import Busy, ServiceError

log = logging.getLogger("reelchat.api")

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(err.message, err.type, err.param, err.code), status_code=err.status, headers=err.headers
    )


def validation_error(e: ValidationError | RequestValidationError) -> ApiError:
    """The first problem, named by its field path: `messages[0].content: Input should be ...`."""
    message, param, code = describe_validation_error(e.errors())
    return ApiError(400, message, param=param, code=code)


def request_error(e: RequestError) -> ApiError:
    return ApiError(400, e.message, param=e.param, code=e.code)


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path. Starlette's own 405 names only the first route's
    (`/v1/videos` said `Allow: POST`, though GET lists videos)."""
    routes: list[BaseRoute] = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def method_not_allowed(request: Request) -> ApiError:
    allowed = allowed_methods(request)
    return ApiError(
        405,
        f"{request.method} is not allowed on {request.url.path}; it takes {', '.join(allowed)}.",
        code="method_not_allowed",
        headers={"Allow": ", ".join(allowed)},
    )


def as_api_error(request: Request, exc: Exception) -> ApiError:
    """What any exception a route raises answers, as an OpenAI-shaped error (an unknown one is logged
    and answers 500): the same mapping whether FastAPI's handlers or a direct route (`api/direct.py`)
    meet it."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ServiceError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else None
        return ApiError(exc.status, exc.message, param=exc.param, code=exc.code, type=exc.type, headers=headers)
    if isinstance(exc, RequestError):
        return request_error(exc)
    if isinstance(exc, RequestValidationError):
        return validation_error(exc)
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 405:
            return method_not_allowed(request)
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            message = "Not found."
        return ApiError(exc.status_code, message, headers=getattr(exc, "headers", None))
    log.exception("unhandled error", exc_info=exc)
    return ApiError(
        500, "The server had an error while processing your request.", type="server_error", code="internal_error"
    )


def install(app: FastAPI) -> None:
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(as_api_error(request, exc))

    for kind in (ApiError, ServiceError, RequestError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, on_error)
