"""The HTTP service: the fusion API for storefronts, catalogue upkeep for merchants, the web pages.

``create_app(settings)`` builds a FastAPI app whose lifespan opens the engine on the data
directory and warms the models.  Routes are thin: parse, call the engine off the event loop,
map to a schema.  One handler maps the error tree to status codes, so a bad input is a 4xx
JSON error and never a stack trace.
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
import pathlib
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from typing import Annotated, Any, Callable

import anyio
from fastapi import Depends, FastAPI, File, Form, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from core.catalog import Product, check_sku
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
from core.settings import Settings
from pipeline.catalog_source import CatalogEntry, CatalogSource, Skipped, read_catalog
from pipeline.dedup import Deduplicator
from pipeline.engine import Engine
from service import schemas as s
from service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from service.metrics import Metrics
from service.render import product_json, result_json

log = logging.getLogger("skulens.service")

STATIC = pathlib.Path(__file__).parent / "static"
EngineFactory = Callable[[Settings], Engine]

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
_DOC = {"model": s.ErrorBody}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_DOC, "description": "bad input"}, 401: {**_DOC, "description": "missing or unknown API key"},
    403: {**_DOC, "description": "this key may not do that"}, 404: {**_DOC, "description": "no such SKU or image"},
    413: {**_DOC, "description": "upload over the size limits"},
    415: {**_DOC, "description": "not an allowed image type"},
    422: {**_DOC, "description": "invalid request or image"},
    503: {**_DOC, "description": "models or storage unavailable"},
}


def _error(kind: str, status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


def error_response(exc: SkulensError) -> JSONResponse:
    for cls, kind, status in _ERRORS:
        if isinstance(exc, cls):
            return _error(kind, status, str(exc))
    return _error("error", 400, str(exc))


# -- auth -------------------------------------------------------------------------------------
class KeyCheck:
    """Bearer keys: read keys may search, write keys may also change the catalogue.

    With no keys configured every request is allowed (the server then binds to localhost).
    Keys are compared in constant time, against every configured key.
    """

    def __init__(self, read_keys: list[str], write_keys: list[str]) -> None:
        self.read = [k.encode() for k in read_keys]
        self.write = [k.encode() for k in write_keys]

    @property
    def open(self) -> bool:
        return not self.read and not self.write

    @staticmethod
    def _member(key: bytes, keys: list[bytes]) -> bool:
        found = False
        for k in keys:
            found |= hmac.compare_digest(key, k)
        return found

    def role(self, key: str | None) -> str | None:
        if key is None:
            return None
        raw = key.encode()
        if self._member(raw, self.write):
            return "write"
        if self._member(raw, self.read):
            return "read"
        return None


class AuthError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


_bearer = HTTPBearer(auto_error=False, description="an API key: read keys search, write keys also change the catalogue")


def _require(need: str):
    def check(request: Request,
              creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        keys: KeyCheck = request.app.state.keys
        if keys.open:
            return
        role = keys.role(creds.credentials if creds else None)
        if role is None:
            raise AuthError(401, "missing or unknown API key: send 'Authorization: Bearer <key>'")
        if need == "write" and role != "write":
            raise AuthError(403, "this key may search but not change the catalogue (a write key is needed)")
    return check


SKU_PATTERN = r"^[^\s/\x00-\x1f](?:[^/\x00-\x1f]{0,198}[^\s/\x00-\x1f])?$"
SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, max_length=200,
                               description="the product's SKU: no '/', no control characters, no edge spaces")]
ImageIdPath = Annotated[int, Path(ge=1, le=2**63 - 1)]


# -- limits ------------------------------------------------------------------------------------
class BodyLimit:
    """Refuses request bodies over ``max_bytes`` (by Content-Length, or while they stream in)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _error("too_large", 413, f"request body of {int(length)} bytes is over the limit of "
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
                await _error("too_large", 413, f"request body is over the limit of {self.max_bytes} bytes")(
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


# -- the app ------------------------------------------------------------------------------------
def default_engine(settings: Settings) -> Engine:
    from pipeline.build import build_stages

    return Engine(settings, build_stages(settings))


def create_app(settings: Settings, engine_factory: EngineFactory = default_engine) -> FastAPI:
    metrics = Metrics()
    limiter = anyio.CapacityLimiter(settings.service.inference_threads)
    keys = KeyCheck(settings.api_read_keys, settings.api_write_keys)
    # with no keys configured nothing is checked, and the schema declares no security
    read_auth, write_auth = ([], []) if keys.open else ([Depends(_require("read"))], [Depends(_require("write"))])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = await anyio.to_thread.run_sync(engine_factory, settings)
        app.state.engine = engine
        app.state.ready = threading.Event()

        def warm() -> None:
            try:
                engine.stages.warmup()
                app.state.ready.set()
                log.info("models loaded; ready")
            except SkulensError as exc:
                log.error("models could not be loaded: %s", exc)
                app.state.warmup_error = str(exc)

        threading.Thread(target=warm, name="skulens-warmup", daemon=True).start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(engine.close)

    app = FastAPI(title="skulens", version=_version(), lifespan=lifespan,
                  description="Visual product search: a photo (or words) in, ranked SKUs out, every signal "
                              "explained. Read keys search; write keys also keep the catalogue.")
    app.state.keys = keys
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.warmup_error = None

    limits = settings.images
    body_max = limits.max_bytes * settings.service.max_files + settings.service.max_manifest_bytes + 256 * 1024
    app.add_middleware(BodyLimit, max_bytes=body_max)
    if settings.service.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.service.cors_origins),
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(RequestMetrics, metrics=metrics)

    @app.exception_handler(SkulensError)
    async def _skulens_error(request: Request, exc: SkulensError):
        return error_response(exc)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error("unauthorized" if exc.status == 401 else "forbidden", exc.status, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path", "form"))
            parts.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg", "invalid")))
        return _error("invalid_request", 422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of every route on this path, not just the first route's
            methods = {m for route in request.app.routes if hasattr(route, "methods") and route.methods
                       and route.matches(request.scope)[0] != Match.NONE for m in route.methods}
            headers["Allow"] = ", ".join(sorted(methods))
        return _error(kind, exc.status_code, str(exc.detail), headers or None)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error("internal", 500, "internal error; the server log has the details")

    def engine_of(request: Request) -> Engine:
        return request.app.state.engine

    def image_url(sku: str, image_id: int) -> str:
        from urllib.parse import quote

        return f"/v1/products/{quote(sku, safe='')}/images/{image_id}"

    async def read_upload(upload: UploadFile) -> bytes:
        data = await upload.read(limits.max_bytes + 1)
        name = upload.filename or "upload"
        if len(data) > limits.max_bytes:
            raise ImageTooLargeError(f"{name}: over the limit of {limits.max_bytes} bytes")
        if not data:
            raise InvalidImageError(f"{name}: empty file")
        return data

    async def infer(fn, *args):
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    def check_k(k: int) -> int:
        if not 1 <= k <= settings.service.max_k:
            raise InvalidInputError(f"k must be between 1 and {settings.service.max_k}, got {k}")
        return k

    # -- search ----------------------------------------------------------------------------------
    @app.post("/v1/search", tags=["search"], dependencies=read_auth, responses=ERROR_RESPONSES,
              response_model=s.SearchGroup | list[s.SearchGroup])
    async def search(
        request: Request,
        file: Annotated[UploadFile, File(description="the shopper's photo (JPEG, PNG, WEBP, HEIC...)")],
        text: Annotated[str | None, Form(max_length=1000, description="typed words to match as well")] = None,
        k: Annotated[int, Form(description="how many SKUs to return")] = 10,
        weights: Annotated[str | None, Form(description="per-signal weights, e.g. 'embedding=0.6,text=0.4'")] = None,
        filters: Annotated[str | None, Form(description="a JSON object: category, brand, tags, price_min, "
                                                        "price_max, colour")] = None,
        all_objects: Annotated[bool, Form(description="one result group per detected box")] = False,
    ):
        engine = engine_of(request)
        data = await read_upload(file)
        flt = s.parse_filters(filters)
        result = await infer(lambda: engine.search(data, text=text, k=check_k(k), weights=weights,
                                                   all_objects=all_objects, name=file.filename or "upload",
                                                   filters=flt))
        metrics.observe_stages(result.timings)
        return result_json(result, engine, all_objects, image_url)

    @app.post("/v1/search/text", tags=["search"], dependencies=read_auth, responses=ERROR_RESPONSES,
              response_model=s.SearchGroup)
    async def search_text(request: Request, body: s.TextSearchIn):
        engine = engine_of(request)
        flt = body.filters.to_filters() if body.filters else None
        result = await anyio.to_thread.run_sync(
            lambda: engine.search(None, text=body.text, k=check_k(body.k), weights=body.weights, filters=flt))
        metrics.observe_stages(result.timings)
        return result_json(result, engine, False, image_url)

    # -- catalogue ---------------------------------------------------------------------------------
    def product_out(engine: Engine, sku: str) -> dict:
        return product_json(engine.store.get_product(sku), engine.store.images(sku), engine.data, image_url)

    @app.get("/v1/products", tags=["catalogue"], dependencies=read_auth, responses=ERROR_RESPONSES,
             response_model=s.ProductPage)
    def list_products(request: Request, offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50, category: str | None = None,
                      brand: str | None = None, tag: str | None = None):
        store = engine_of(request).store
        items = store.list_products(offset, limit, category, brand, tag)
        return {"items": [product_json(p, store.images(p.sku), store.path.parent, image_url) for p in items],
                "total": store.count_products(category, brand, tag), "offset": offset, "limit": limit}

    @app.get("/v1/products/{sku}", tags=["catalogue"], dependencies=read_auth, responses=ERROR_RESPONSES,
             response_model=s.ProductOut)
    def get_product(request: Request, sku: SkuPath):
        return product_out(engine_of(request), check_sku(sku))

    @app.put("/v1/products/{sku}", tags=["catalogue"], dependencies=write_auth, responses=ERROR_RESPONSES,
             response_model=s.ProductOut)
    async def put_product(request: Request, sku: SkuPath, body: s.ProductIn):
        engine = engine_of(request)
        product = Product(check_sku(sku), body.title, body.brand, body.category, tuple(body.tags), body.price,
                          body.description, body.extra)
        await anyio.to_thread.run_sync(lambda: engine.add_product(product, []))
        return await anyio.to_thread.run_sync(product_out, engine, sku)

    @app.patch("/v1/products/{sku}", tags=["catalogue"], dependencies=write_auth, responses=ERROR_RESPONSES,
               response_model=s.ProductOut)
    async def patch_product(request: Request, sku: SkuPath, body: s.ProductPatch):
        engine = engine_of(request)

        def apply() -> None:
            with engine.write_lock():
                old = engine.store.get_product(check_sku(sku)).to_json()
                changes = body.model_dump(exclude_unset=True)
                new = {**old, **{k: v for k, v in changes.items() if v is not None or k == "price"}}
                engine.add_product(Product(sku, new["title"] or "", new["brand"] or "", new["category"] or "",
                                           tuple(new["tags"] or ()), new["price"], new["description"] or "",
                                           new["extra"] or {}), [])

        await anyio.to_thread.run_sync(apply)
        return await anyio.to_thread.run_sync(product_out, engine, sku)

    @app.delete("/v1/products/{sku}", tags=["catalogue"], dependencies=write_auth, responses=ERROR_RESPONSES,
                status_code=204)
    async def delete_product(request: Request, sku: SkuPath):
        engine = engine_of(request)
        await anyio.to_thread.run_sync(engine.remove_product, check_sku(sku))
        return Response(status_code=204)

    @app.post("/v1/products/{sku}/images", tags=["catalogue"], dependencies=write_auth,
              responses=ERROR_RESPONSES, response_model=s.ProductOut, status_code=201)
    async def add_images(request: Request, sku: SkuPath,
                         file: Annotated[list[UploadFile], File(description="one or more product images")]):
        engine = engine_of(request)
        if len(file) > settings.service.max_files:
            raise InvalidInputError(f"at most {settings.service.max_files} images per request, got {len(file)}")
        images = [((f.filename or f"image{i}"), await read_upload(f)) for i, f in enumerate(file)]

        def add() -> None:
            product = engine.store.get_product(check_sku(sku))  # 404 before any analysis
            engine.add_product(product, images)

        await infer(add)
        return await anyio.to_thread.run_sync(product_out, engine, sku)

    @app.delete("/v1/products/{sku}/images/{image_id}", tags=["catalogue"], dependencies=write_auth,
                responses=ERROR_RESPONSES, status_code=204)
    async def delete_image(request: Request, sku: SkuPath, image_id: ImageIdPath):
        engine = engine_of(request)
        await anyio.to_thread.run_sync(engine.remove_image, check_sku(sku), image_id)
        return Response(status_code=204)

    @app.get("/v1/products/{sku}/images/{image_id}", tags=["catalogue"], dependencies=read_auth,
             responses={**ERROR_RESPONSES, 200: {"content": {"image/*": {}}, "description": "the image file"}},
             response_class=FileResponse)
    def get_image(request: Request, sku: SkuPath, image_id: ImageIdPath):
        engine = engine_of(request)
        found = [im for im in engine.store.images(check_sku(sku)) if im.id == image_id]
        if not found:
            raise NotFoundError(f"product {sku!r} has no image {image_id}")
        path = engine.data / found[0].file
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=31536000, immutable",
                                                             "ETag": found[0].sha256})

    @app.post("/v1/import", tags=["catalogue"], dependencies=write_auth, responses=ERROR_RESPONSES,
              response_model=s.ImportReport)
    async def bulk_import(
        request: Request,
        manifest: Annotated[UploadFile, File(description="a CSV manifest: sku,image,title,brand,category,tags,"
                                                         "price,description (as for `skulens index`)")],
        file: Annotated[list[UploadFile] | None, File(description="the images the manifest names, by file name")]
        = None,
    ):
        engine = engine_of(request)
        files = file or []
        raw = await manifest.read(settings.service.max_manifest_bytes + 1)
        if len(raw) > settings.service.max_manifest_bytes:
            raise ImageTooLargeError(f"manifest over the limit of {settings.service.max_manifest_bytes} bytes")
        if len(files) > settings.service.max_files * 50:
            raise InvalidInputError(f"at most {settings.service.max_files * 50} images per import")
        uploads = {}
        for f in files:
            name = pathlib.PurePath(f.filename or "").name
            if not name:
                raise InvalidInputError("every uploaded image needs a file name (the manifest names it)")
            uploads[name] = await read_upload(f)
        report = await infer(lambda: _run_import(engine, raw, uploads))
        return report

    # -- operations -----------------------------------------------------------------------------------
    # -- near-duplicates ---------------------------------------------------------------------------
    def with_urls(report: dict) -> dict:
        for group in report["groups"]:
            for im in group["images"]:
                im["url"] = image_url(im["sku"], im["image_id"]) if im["image_id"] is not None else None
        return report

    @app.get("/v1/duplicates", tags=["duplicates"], dependencies=read_auth, responses=ERROR_RESPONSES,
             response_model=s.DedupReportOut)
    async def catalogue_duplicates(request: Request):
        """Groups of near-duplicate images across the catalogue, and the SKUs that share them."""
        engine = engine_of(request)
        report = await infer(lambda: Deduplicator(engine).catalogue().to_json())
        return with_urls(report)

    @app.post("/v1/duplicates", tags=["duplicates"], dependencies=read_auth, responses=ERROR_RESPONSES,
              response_model=s.DedupReportOut)
    async def photo_duplicates(
        request: Request,
        file: Annotated[UploadFile, File(description="a photo: is it already in the catalogue, and as which SKU?")],
    ):
        """The catalogue images an uploaded photo duplicates (no groups when it is new)."""
        engine = engine_of(request)
        data = await read_upload(file)
        report = await infer(lambda: Deduplicator(engine).photo(data, file.filename or "upload").to_json())
        return with_urls(report)

    @app.get("/healthz", tags=["operations"], response_model=s.Health)
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], response_model=s.Ready,
             responses={503: {**_DOC, "description": "models still loading, or failed to load"}})
    def readyz(request: Request):
        state = request.app.state
        if getattr(state, "engine", None) is None or not state.ready.is_set():
            detail = state.warmup_error or "models are loading"
            return _error("not_ready", 503, detail)
        engine = state.engine
        products, images, vectors = engine.store.count()
        return {"status": "ready", "products": products, "images": images, "vectors": vectors,
                "index_vectors": len(engine.view.index), "index": engine.view.index.kind,
                "embedder": engine.stages.embedder.name, "embedder_runtime": getattr(engine.stages.embedder, "runtime", "")}

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def prometheus(request: Request):
        counts = engine_of(request).store.count()
        return Response(metrics.render(*counts), media_type=METRICS_CONTENT_TYPE)

    # -- pages ----------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def shopper_page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/merchant", include_in_schema=False)
    def merchant_page():
        return FileResponse(STATIC / "merchant.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _run_import(engine: Engine, manifest: bytes, uploads: dict[str, bytes]) -> dict:
    """Index a CSV manifest whose images were uploaded with it; a row naming anything else is skipped."""
    from pipeline.indexing import index_catalog

    with tempfile.TemporaryDirectory(prefix="skulens-import-") as tmp:
        root = pathlib.Path(tmp)
        for name, data in uploads.items():
            (root / name).write_bytes(data)
        if not manifest.strip():
            raise InvalidInputError("the manifest is empty (expected a header with 'sku' and 'image')")
        (root / "manifest.csv").write_bytes(manifest)
        source = read_catalog(root / "manifest.csv")
        kept = CatalogSource(skipped=list(source.skipped))
        for entry in source.entries:
            outside = [p for p in entry.images if p.parent != root or p.name not in uploads]
            if outside:
                kept.skipped.append(Skipped(entry.product.sku, "image not uploaded with the manifest: "
                                            + ", ".join(sorted({p.name for p in outside}))))
            else:
                kept.entries.append(CatalogEntry(entry.product, entry.images))
        report = index_catalog(engine, kept)
    rows = [{"item": sku, "status": "indexed", "reason": None} for sku in report.indexed]
    rows += [{"item": sku, "status": "unchanged", "reason": None} for sku in report.unchanged]
    rows += [{"item": sk.item, "status": "skipped", "reason": sk.reason} for sk in report.skipped]
    return {"rows": rows, "indexed": len(report.indexed), "unchanged": len(report.unchanged),
            "skipped": len(report.skipped), "seconds": round(report.seconds, 2)}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skulens")
    except PackageNotFoundError:
        return "0"
