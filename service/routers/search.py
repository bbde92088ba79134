"""Search by photo (with optional words) and by words alone."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, File, Form, Request, UploadFile

from service import schemas as s
from service.deps import ERROR_RESPONSES, check_k, engine_of, image_url, infer, read_upload
from service.render import result_json

read = APIRouter(tags=["search"], responses=ERROR_RESPONSES)


@read.post("/v1/search", response_model=s.SearchGroup | list[s.SearchGroup])
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
    data = await read_upload(request, file)
    flt = s.parse_filters(filters)
    k = check_k(request, k)
    result = await infer(request, lambda: engine.search(data, text=text, k=k, weights=weights,
                                                        all_objects=all_objects, name=file.filename or "upload",
                                                        filters=flt))
    request.app.state.metrics.observe_stages(result.timings)
    return result_json(result, engine, all_objects, image_url)


@read.post("/v1/search/text", response_model=s.SearchGroup)
async def search_text(request: Request, body: s.TextSearchIn):
    engine = engine_of(request)
    flt = body.filters.to_filters() if body.filters else None
    k = check_k(request, body.k)
    result = await anyio.to_thread.run_sync(
        lambda: engine.search(None, text=body.text, k=k, weights=body.weights, filters=flt))
    request.app.state.metrics.observe_stages(result.timings)
    return result_json(result, engine, False, image_url)


@read.get("/v1/facets", response_model=s.FacetsOut)
def facets(request: Request):
    """What the search filters can take: each category, brand, tag and colour with how many products
    carry it (as filters compare them: lower case, accents folded), and the price range."""
    return engine_of(request).facet_counts().to_json()
