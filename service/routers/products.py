"""The catalogue: products and their images."""

from __future__ import annotations

import mimetypes
from typing import Annotated

import anyio
from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response

from core.catalog import Product, check_sku, merge_product
from core.errors import InvalidInputError, NotFoundError
from service import schemas as s
from service.deps import (
    ERROR_RESPONSES,
    ImageIdPath,
    SkuPath,
    engine_of,
    image_url,
    infer,
    product_out,
    read_upload,
    settings_of,
)
from service.render import product_json

read = APIRouter(tags=["catalogue"], responses=ERROR_RESPONSES)
write = APIRouter(tags=["catalogue"], responses=ERROR_RESPONSES)


@read.get("/v1/products", response_model=s.ProductPage)
def list_products(request: Request, offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50, category: str | None = None,
                  brand: str | None = None, tag: str | None = None):
    store = engine_of(request).store
    items = store.list_products(offset, limit, category, brand, tag)
    return {"items": [product_json(p, store.images(p.sku), store.path.parent, image_url) for p in items],
            "total": store.count_products(category, brand, tag), "offset": offset, "limit": limit}


@read.get("/v1/products/{sku}", response_model=s.ProductOut)
def get_product(request: Request, sku: SkuPath):
    return product_out(engine_of(request), check_sku(sku))


@write.put("/v1/products/{sku}", response_model=s.ProductOut)
async def put_product(request: Request, sku: SkuPath, body: s.ProductIn):
    engine = engine_of(request)
    product = Product(check_sku(sku), body.title, body.brand, body.category, tuple(body.tags), body.price,
                      body.description, body.extra)
    await anyio.to_thread.run_sync(lambda: engine.add_product(product, []))
    return await anyio.to_thread.run_sync(product_out, engine, sku)


@write.patch("/v1/products/{sku}", response_model=s.ProductOut)
async def patch_product(request: Request, sku: SkuPath, body: s.ProductPatch):
    engine = engine_of(request)

    def apply() -> None:
        with engine.write_lock():
            old = engine.store.get_product(check_sku(sku))
            engine.add_product(merge_product(old, body.model_dump(exclude_unset=True)), [])

    await anyio.to_thread.run_sync(apply)
    return await anyio.to_thread.run_sync(product_out, engine, sku)


@write.delete("/v1/products/{sku}", status_code=204)
async def delete_product(request: Request, sku: SkuPath):
    engine = engine_of(request)
    await anyio.to_thread.run_sync(engine.remove_product, check_sku(sku))
    return Response(status_code=204)


@write.post("/v1/products/{sku}/images", response_model=s.ProductOut, status_code=201)
async def add_images(request: Request, sku: SkuPath,
                     file: Annotated[list[UploadFile], File(description="one or more product images")]):
    engine = engine_of(request)
    most = settings_of(request).service.max_files
    if len(file) > most:
        raise InvalidInputError(f"at most {most} images per request, got {len(file)}")
    images = [((f.filename or f"image{i}"), await read_upload(request, f)) for i, f in enumerate(file)]

    def add() -> None:
        product = engine.store.get_product(check_sku(sku))  # 404 before any analysis
        engine.add_product(product, images)

    await infer(request, add)
    return await anyio.to_thread.run_sync(product_out, engine, sku)


@write.delete("/v1/products/{sku}/images/{image_id}", status_code=204)
async def delete_image(request: Request, sku: SkuPath, image_id: ImageIdPath):
    engine = engine_of(request)
    await anyio.to_thread.run_sync(engine.remove_image, check_sku(sku), image_id)
    return Response(status_code=204)


@read.get("/v1/products/{sku}/images/{image_id}",
          responses={200: {"content": {"image/*": {}}, "description": "the image file"}},
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
