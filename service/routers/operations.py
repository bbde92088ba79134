"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service import schemas as s
from service.deps import NOT_READY, engine_of
from service.errors import error_body
from service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=s.Health)
def healthz():
    return {"status": "ok"}


@router.get("/readyz", response_model=s.Ready, responses=NOT_READY)
def readyz(request: Request):
    state = request.app.state
    if getattr(state, "engine", None) is None or not state.ready.is_set():
        detail = state.warmup_error or "models are loading"
        return error_body("not_ready", 503, detail)
    engine = state.engine
    products, images, vectors = engine.store.count()
    return {"status": "ready", "products": products, "images": images, "vectors": vectors,
            "index_vectors": len(engine.view.index), "index": engine.view.index.kind,
            "embedder": engine.stages.embedder.name, "embedder_runtime": engine.stages.embedder.runtime}


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def prometheus(request: Request):
    counts = engine_of(request).store.count()
    return Response(request.app.state.metrics.render(*counts), media_type=METRICS_CONTENT_TYPE)
