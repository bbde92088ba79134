"""What the routers share: the engine and settings of the app, uploads read within the limits,
inference off the event loop, and the path parameters' shapes."""

from __future__ import annotations

from typing import Annotated, Any, Callable
from urllib.parse import quote

import anyio
from fastapi import Path, Request, UploadFile

from core.errors import ImageTooLargeError, InvalidImageError, InvalidInputError
from core.settings import Settings
from pipeline.engine import Engine
from pipeline.images import size_text
from service import schemas as s
from service.render import product_json

SKU_PATTERN = r"^[^\s/\x00-\x1f](?:[^/\x00-\x1f]{0,198}[^\s/\x00-\x1f])?$"
SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, max_length=200,
                               description="the product's SKU: no '/', no control characters, no edge spaces")]
ImageIdPath = Annotated[int, Path(ge=1, le=2**63 - 1)]

_DOC = {"model": s.ErrorBody}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_DOC, "description": "bad input"}, 401: {**_DOC, "description": "missing or unknown API key"},
    403: {**_DOC, "description": "this key may not do that"}, 404: {**_DOC, "description": "no such SKU or image"},
    413: {**_DOC, "description": "upload over the size limits"},
    415: {**_DOC, "description": "not an allowed image type"},
    422: {**_DOC, "description": "invalid request or image"},
    503: {**_DOC, "description": "models or storage unavailable"},
}
NOT_READY: dict[int | str, dict[str, Any]] = {503: {**_DOC, "description": "models still loading, or failed to load"}}


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def image_url(sku: str, image_id: int) -> str:
    return f"/v1/products/{quote(sku, safe='')}/images/{image_id}"


def product_out(engine: Engine, sku: str) -> dict:
    return product_json(engine.store.get_product(sku), engine.store.images(sku), engine.files.root, image_url)


async def read_upload(request: Request, upload: UploadFile) -> bytes:
    """An uploaded file's bytes, refused over the image byte limit or when empty."""
    limit = settings_of(request).images.max_bytes
    data = await upload.read(limit + 1)
    name = upload.filename or "upload"
    if len(data) > limit:
        raise ImageTooLargeError(f"{name}: image too large: over the limit of {size_text(limit)}")
    if not data:
        raise InvalidImageError(f"{name}: empty file")
    return data


async def infer(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    """Run model work in a worker thread, at most ``service.inference_threads`` at once."""
    return await anyio.to_thread.run_sync(fn, *args, limiter=request.app.state.limiter)


def check_k(request: Request, k: int) -> int:
    top = settings_of(request).service.max_k
    if not 1 <= k <= top:
        raise InvalidInputError(f"k must be between 1 and {top}, got {k}")
    return k
