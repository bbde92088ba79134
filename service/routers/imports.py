"""Bulk import: a CSV manifest and the images it names, in one request."""

from __future__ import annotations

import pathlib
import tempfile
from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile

from core.errors import ImageTooLargeError, InvalidInputError
from pipeline.catalog_source import CatalogEntry, CatalogSource, Skipped, read_catalog
from pipeline.engine import Engine
from pipeline.indexing import index_catalog
from service import schemas as s
from service.deps import ERROR_RESPONSES, engine_of, infer, read_upload, settings_of

write = APIRouter(tags=["catalogue"], responses=ERROR_RESPONSES)


@write.post("/v1/import", response_model=s.ImportReport)
async def bulk_import(
    request: Request,
    manifest: Annotated[UploadFile, File(description="a CSV manifest: sku,image,title,brand,category,tags,"
                                                     "price,description (as for `skulens index`)")],
    file: Annotated[list[UploadFile] | None, File(description="the images the manifest names, by file name")]
    = None,
):
    engine = engine_of(request)
    service = settings_of(request).service
    files = file or []
    raw = await manifest.read(service.max_manifest_bytes + 1)
    if len(raw) > service.max_manifest_bytes:
        raise ImageTooLargeError(f"manifest over the limit of {service.max_manifest_bytes} bytes")
    if len(files) > service.max_files * 50:
        raise InvalidInputError(f"at most {service.max_files * 50} images per import")
    uploads = {}
    for f in files:
        name = pathlib.PurePath(f.filename or "").name
        if not name:
            raise InvalidInputError("every uploaded image needs a file name (the manifest names it)")
        uploads[name] = await read_upload(request, f)
    return await infer(request, lambda: run_import(engine, raw, uploads))


def run_import(engine: Engine, manifest: bytes, uploads: dict[str, bytes]) -> dict:
    """Index a CSV manifest whose images were uploaded with it; a row naming anything else is skipped."""
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
