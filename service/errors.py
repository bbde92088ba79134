"""The error map: every ``SkulensError`` (and auth, validation and HTTP errors) as a JSON body
``{"error": kind, "detail": text}`` with its status code; never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from core.errors import (
    ChecksumError,
    ConflictError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidInputError,
    MissingDependencyError,
    ModelNotFoundError,
    NotFoundError,
    SkulensError,
    StorageError,
    UnsupportedImageTypeError,
)
from service.schemas import describe
from service.security import AuthError

log = logging.getLogger(__name__)

# error kind, status code; the first matching class wins (subclasses before their bases)
_ERRORS: tuple[tuple[type[SkulensError], str, int], ...] = (
    (ImageTooLargeError, "too_large", 413),
    (UnsupportedImageTypeError, "unsupported_type", 415),
    (InvalidImageError, "invalid_image", 422),
    (InvalidInputError, "invalid_input", 400),
    (NotFoundError, "not_found", 404),
    (ConflictError, "conflict", 409),
    (ModelNotFoundError, "models_missing", 503),
    (ChecksumError, "models_corrupt", 503),
    (MissingDependencyError, "dependency_missing", 503),
    (StorageError, "storage", 503),
)
def error_body(kind: str, status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


def error_response(exc: SkulensError) -> JSONResponse:
    for cls, kind, status in _ERRORS:
        if isinstance(exc, cls):
            return error_body(kind, status, str(exc))
    return error_body("error", 400, str(exc))


async def skulens_error(request: Request, exc: SkulensError) -> JSONResponse:
    return error_response(exc)


async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_body("unauthorized" if exc.status == 401 else "forbidden", exc.status, exc.detail, headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_body("invalid_request", 422, describe(exc.errors()) if exc.errors() else "invalid request")


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
    headers = dict(getattr(exc, "headers", None) or {})
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
        if request.url.path.startswith("/v1/products/") and "/images" not in request.url.path:
            detail += " (a SKU cannot hold '/')"
    if exc.status_code == 405:  # every method of every route on this path, not just the first route's
        methods = {m for route in request.app.routes if hasattr(route, "methods") and route.methods
                   and route.matches(request.scope)[0] != Match.NONE for m in route.methods}
        headers["Allow"] = ", ".join(sorted(methods))
    return error_body(kind, exc.status_code, detail, headers or None)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return error_body("internal", 500, "internal error; the server log has the details")


HANDLERS: dict[type[Exception], Callable[[Request, Any], Awaitable[JSONResponse]]] = {
    SkulensError: skulens_error,
    AuthError: auth_error,
    RequestValidationError: validation_error,
    StarletteHTTPException: http_error,
    Exception: internal_error,
}


def add_error_handlers(app: FastAPI) -> None:
    for cls, handler in HANDLERS.items():
        app.add_exception_handler(cls, handler)
