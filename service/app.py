"""The HTTP service: the fusion API for storefronts, catalogue upkeep for merchants, the web pages.

``create_app(settings)`` builds a FastAPI app whose lifespan opens the engine on the data
directory and warms the models.  The routes live in ``service/routers/`` (one module per
resource) and are thin: parse, call the engine off the event loop, map to a schema.  One handler
map (``service/errors.py``) turns the error tree into status codes, so a bad input is a 4xx JSON
error and never a stack trace; API keys are checked by ``service/security.py``.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from typing import Callable

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from core.errors import SkulensError
from core.settings import Settings
from pipeline.build import build_stages
from pipeline.engine import Engine
from pipeline.imports import KIND, import_handler
from pipeline.job_queue import QueuedJobs
from pipeline.jobs import JobRunner, JobStore
from pipeline.store_postgres import PostgresStore
from service.errors import add_error_handlers
from service.metrics import Metrics
from service.middleware import BodyLimit, RequestMetrics
from service.routers import duplicates, imports, operations, pages, products, search
from service.routers.pages import STATIC
from service.security import KeyCheck, route_dependencies

log = logging.getLogger(__name__)

EngineFactory = Callable[[Settings], Engine]


def default_engine(settings: Settings) -> Engine:
    return Engine(settings, build_stages(settings))


def _lifespan(settings: Settings, engine_factory: EngineFactory):
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = await anyio.to_thread.run_sync(engine_factory, settings)
        app.state.engine = engine
        app.state.ready = threading.Event()
        app.state.jobs = await anyio.to_thread.run_sync(_job_runner, engine)
        threading.Thread(target=_warm, args=(app, engine), name="skulens-warmup", daemon=True).start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(app.state.jobs.close)
            await anyio.to_thread.run_sync(engine.close)

    return lifespan


def _job_runner(engine: Engine) -> JobRunner | QueuedJobs:
    """The data directory's job runner, with the jobs a previous process left unfinished queued again;
    on a PostgreSQL catalogue, the queue `skulens worker` processes take imports from."""
    if engine.settings.store.url:
        assert isinstance(engine.store, PostgresStore)
        return QueuedJobs(engine.settings, engine.store)
    runner = JobRunner(JobStore(engine.data / "jobs.sqlite3"), engine.data / "jobs", {KIND: import_handler(engine)})
    runner.resume()
    return runner


def _warm(app: FastAPI, engine: Engine) -> None:
    """Load the models in the background; /readyz answers 200 once they are in."""
    try:
        engine.stages.warmup()
        app.state.ready.set()
        log.info("models loaded; ready")
    except SkulensError as exc:
        log.error("models could not be loaded: %s", exc)
        app.state.warmup_error = str(exc)


def create_app(settings: Settings, engine_factory: EngineFactory = default_engine) -> FastAPI:
    app = FastAPI(title="skulens", version=_version(), lifespan=_lifespan(settings, engine_factory),
                  description="Visual product search: a photo (or words) in, ranked SKUs out, every signal "
                              "explained. Read keys search; write keys also keep the catalogue.")
    keys = KeyCheck(settings.api_read_keys, settings.api_write_keys)
    app.state.keys = keys
    app.state.settings = settings
    app.state.metrics = metrics = Metrics()
    app.state.limiter = anyio.CapacityLimiter(settings.service.inference_threads)
    app.state.warmup_error = None

    body_max = (settings.images.max_bytes * settings.service.max_files + settings.service.max_manifest_bytes
                + 256 * 1024)
    app.add_middleware(BodyLimit, max_bytes=body_max)
    if settings.service.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.service.cors_origins),
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(RequestMetrics, metrics=metrics)
    add_error_handlers(app)

    read_auth, write_auth = route_dependencies(keys)
    app.include_router(search.read, dependencies=read_auth)
    app.include_router(products.read, dependencies=read_auth)
    app.include_router(products.write, dependencies=write_auth)
    app.include_router(imports.write, dependencies=write_auth)
    app.include_router(duplicates.read, dependencies=read_auth)
    app.include_router(operations.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skulens")
    except PackageNotFoundError:
        return "0"
