"""Near-duplicate images: across the catalogue, and for an uploaded photo."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile

from pipeline.dedup import Deduplicator
from service import schemas as s
from service.deps import ERROR_RESPONSES, engine_of, image_url, infer, read_upload

read = APIRouter(tags=["duplicates"], responses=ERROR_RESPONSES)


def _with_urls(report: dict) -> dict:
    for group in report["groups"]:
        for im in group["images"]:
            im["url"] = image_url(im["sku"], im["image_id"]) if im["image_id"] is not None else None
    return report


@read.get("/v1/duplicates", response_model=s.DedupReportOut)
async def catalogue_duplicates(request: Request):
    """Groups of near-duplicate images across the catalogue, and the SKUs that share them."""
    engine = engine_of(request)
    report = await infer(request, lambda: Deduplicator(engine).catalogue().to_json())
    return _with_urls(report)


@read.post("/v1/duplicates", response_model=s.DedupReportOut)
async def photo_duplicates(
    request: Request,
    file: Annotated[UploadFile, File(description="a photo: is it already in the catalogue, and as which SKU?")],
):
    """The catalogue images an uploaded photo duplicates (no groups when it is new)."""
    engine = engine_of(request)
    data = await read_upload(request, file)
    report = await infer(request, lambda: Deduplicator(engine).photo(data, file.filename or "upload").to_json())
    return _with_urls(report)
