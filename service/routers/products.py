"""The catalogue: products and their images."""

from __future__ import annotations

import mimetypes
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response

from core.catalog import Product, ProductQuery, check_sku, merge_product
from core.errors import ConflictError, InvalidInputError, NotFoundError
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
from service.render import product_json, suggestions_json

read = APIRouter(tags=["catalogue"], responses=ERROR_RESPONSES)
write = APIRouter(tags=["catalogue"], responses=ERROR_RESPONSES)


@read.get("/v1/products", response_model=s.ProductPage)
def list_products(request: Request, offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50, category: str | None = None,
                  brand: str | None = None, tag: str | None = None,
                  q: Annotated[str | None, Query(max_length=200, description="words in the SKU or title")] = None,
                  without_images: Annotated[bool, Query(description="only products with no image")] = False,
                  sort: Annotated[Literal["sku", "newest"], Query(description="SKU order, or newest first")] = "sku"):
    store = engine_of(request).store
    query = ProductQuery(category, brand, tag, q, without_images, sort == "newest")
    items = store.list_products(offset, limit, query)
    return {"items": [product_json(p, store.images(p.sku), engine_of(request).files.root, image_url) for p in items],
            "total": store.count_products(query), "offset": offset, "limit": limit}


@read.get("/v1/products/{sku}", response_model=s.ProductOut)
def get_product(request: Request, sku: SkuPath):
    return product_out(engine_of(request), check_sku(sku))


@read.get("/v1/products/{sku}/suggested-tags", response_model=s.SuggestedTags)
def suggested_tags(request: Request, sku: SkuPath, k: Annotated[int, Query(ge=1, le=50)] = 8):
    """Tags a merchant could give the product, from its pictures: their colours' names and the
    catalogue's words nearest them in word space (what it is tagged with left out)."""
    return suggestions_json(engine_of(request), check_sku(sku), k)


async def read_images(request: Request, files: list[UploadFile]) -> list[tuple[str, bytes]]:
    """The uploaded images as ``(name, bytes)``, at most ``service.max_files`` of them."""
    most = settings_of(request).service.max_files
    if len(files) > most:
        raise InvalidInputError(f"at most {most} images per request, got {len(files)}")
    return [((f.filename or f"image{i}"), await read_upload(request, f)) for i, f in enumerate(files)]


@write.post("/v1/products", response_model=s.ProductOut, status_code=201)
async def create_product(
    request: Request,
    product: Annotated[str, Form(description='the product as a JSON object: sku, title, brand, category, tags, '
                                             'price, description, extra, e.g. {"sku": "oat-milk-1l", "title": "Oat milk"}')],
    file: Annotated[list[UploadFile], File(description="its first images, one or more")],
):
    """A new product with its first images, together or not at all: a SKU already in the catalogue is
    refused (409: edit it with PATCH, add images with POST .../images), and an image that cannot be read
    leaves nothing behind."""
    engine = engine_of(request)
    body = s.parse_new_product(product)
    sku = check_sku(body.sku)
    new = Product(sku, body.title, body.brand, body.category, tuple(body.tags), body.price, body.description,
                  body.extra)
    images = await read_images(request, file)

    def refuse_taken() -> None:
        if engine.store.has_product(sku):
            raise ConflictError(f"product {sku!r} is already in the catalogue; edit it (PATCH /v1/products/{sku}) "
                                "or add images to it (POST /v1/products/{sku}/images)")

    def create() -> None:
        refuse_taken()  # before the analysis
        prepared = engine.prepare_images(images)
        with engine.write_lock():
            try:
                refuse_taken()  # another request may have taken it meanwhile
            except ConflictError:
                engine.release_prepared(prepared)
                raise
            engine.write_prepared(new, prepared)  # releases them itself

    await infer(request, create)
    return await anyio.to_thread.run_sync(product_out, engine, sku)


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
    images = await read_images(request, file)

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
    path = engine.files.path(found[0].file)
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=31536000, immutable",
                                                         "ETag": found[0].sha256})
