"""ASGI middleware: the request-body limit and the per-route request metrics."""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import error_body
from service.metrics import Metrics


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` (by Content-Length, or while they stream in)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await error_body("too_large", 413, f"request body of {int(length)} bytes is over the limit of "
                                f"{self.max_bytes} bytes")(scope, receive, send)
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(413, f"request body is over the limit of {self.max_bytes} bytes")
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except _TooLarge:
            if not started:
                await error_body("too_large", 413, f"request body is over the limit of {self.max_bytes} bytes")(
                    scope, receive, send)


class _TooLarge(StarletteHTTPException):
    """Raised from ``receive`` while the body streams in; FastAPI passes HTTP exceptions through
    its body parsing, so the handler answers 413."""


class RequestMetrics:
    """Counts and times every request under its route template (``/v1/products/{sku}``)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        t0 = time.perf_counter()

        async def tracking_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or ("static" if scope["path"].startswith("/static") else "unmatched")
            self.metrics.observe_request(name, scope["method"], status, time.perf_counter() - t0)
