"""Request and response schemas of the HTTP API (what ``/openapi.json`` publishes).

The response shapes are those of :mod:`service.render`, shared with ``skulens ... --json``;
the models here describe them for clients and for schema checks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidInputError
from core.filters import SearchFilters

M = TypeVar("M", bound=BaseModel)


class ErrorBody(BaseModel):
    error: str = Field(description="the error's kind, e.g. 'invalid_image', 'not_found'")
    detail: str = Field(description="what went wrong, in one sentence")


class PaletteOut(BaseModel):
    lab: list[list[float]] = Field(description="CIELAB colours, heaviest first")
    weights: list[float]
    hex: list[str]
    names: list[str]


class OcrWord(BaseModel):
    word: str
    confidence: float


class TagOut(BaseModel):
    label: str
    score: float


class WordOut(BaseModel):
    word: str
    cosine: float


class QueryOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    boxes: list[list[float]] = Field(description="every detected box, [x0, y0, x1, y1] in pixels")
    box: list[float] | None = Field(description="the box this result group searched with")
    palette: PaletteOut
    ocr: list[OcrWord]
    tags: list[TagOut]
    timings_ms: dict[str, float]
    size: list[int] | None = None
    regions: list[str] | None = None
    words: list[WordOut] = Field(default_factory=list, description="the catalogue's words nearest the photo in word "
                                 "space, with their cosines")
    describe: list[str] = Field(default_factory=list, description="the photo in a few words: its main colours' "
                                "names, then those nearest words")


class Signals(BaseModel):
    embedding: float
    colour: float
    tags: float
    text: float
    verify: float = Field(description="geometric verification: keypoints of the photo's object that the SKU's "
                                      "picture explains; 0 for candidates not among the few checked")
    semantic: float = Field(0.0, description="the typed words against the SKU's pictures in word space (0 without "
                                             "typed words, or below words.floor)")


class MatchOut(BaseModel):
    sku: str
    score: float = Field(description="the fused score in [0, 1]")
    signals: Signals = Field(description="every signal's score in [0, 1]")
    title: str
    brand: str = ""
    category: str = ""
    price: float | None = None
    image_id: int | None
    image_url: str | None = Field(description="the matching catalogue image (GET it for a thumbnail)")


class SearchGroup(BaseModel):
    query: QueryOut
    results: list[MatchOut]
    weights: dict[str, float] = Field(default_factory=dict, description="the weight of each signal in the score")
    notes: list[str] = Field(default_factory=list, description="why the list is short, e.g. a filter value "
                                                                 "no product carries")
    close: bool | None = Field(None, description="photo searches: whether the best product scores at least "
                                                 "fusion.close_match (false: no close match); null for words alone")


class FacetValue(BaseModel):
    value: str
    count: int = Field(description="products carrying it")


class PriceRange(BaseModel):
    min: float | None
    max: float | None
    products: int = Field(description="products with a price")


class FacetsOut(BaseModel):
    products: int
    categories: list[FacetValue]
    brands: list[FacetValue]
    tags: list[FacetValue] = Field(description="the 50 most common")
    colours: list[FacetValue] = Field(description="colour words of the products' photos")
    price: PriceRange


class FiltersIn(BaseModel):
    """JSON bodies are strict: ``"price": false`` or ``"k": "3"`` is an error, not a coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)
    category: str | None = None
    brand: str | None = None
    tags: list[str] = Field(default_factory=list, description="the product must carry all of these tags")
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)
    colour: str | None = Field(None, description="a basic colour word: red, orange, yellow, green, blue, ...")

    def to_filters(self) -> SearchFilters:
        return SearchFilters(self.category, self.brand, tuple(self.tags), self.price_min, self.price_max,
                             self.colour)


def parse_filters(raw: str | None) -> SearchFilters | None:
    """Filters sent as a JSON object in a multipart form field."""
    if raw is None or not raw.strip():
        return None
    return _json_field(raw, "filters", 'e.g. {"category": "milk", "price_max": 2.5}', FiltersIn).to_filters()


def _json_field(raw: str, what: str, example: str, model: type[M]) -> M:
    """A multipart form field holding a JSON object, checked against ``model``; every fault an
    :class:`InvalidInputError` naming the field (``what``) without pydantic's links."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} must be a JSON object, {example}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{what} must be a JSON object, {example}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"bad {what}: {describe(exc.errors(), model)}") from None


def describe(errors: Sequence[Any], model: type[BaseModel] | None = None) -> str:
    """A validation error in one line, without pydantic's links: ``field: what is wrong; ...``; an
    unknown field names the ones ``model`` knows."""
    parts = []
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path", "form"))
        if e.get("type") == "extra_forbidden":
            known = f" (known: {', '.join(model.model_fields)})" if model is not None else ""
            parts.append(f"unknown field {loc!r}{known}")
        else:
            parts.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg", "invalid")))
    return "; ".join(parts) or "invalid"


class TextSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(min_length=1, max_length=1000, description="typed words: title, brand, tags, colour words")
    k: int = Field(10, ge=1, le=1000)
    weights: dict[str, float] | None = Field(None, description="per-signal weights; only 'text' and 'semantic' "
                                                               "count here")
    filters: FiltersIn | None = None


class ProductIn(BaseModel):
    """A product's metadata (images are added with POST .../images)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    title: str = Field("", max_length=1000)
    brand: str = Field("", max_length=200)
    category: str = Field("", max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=100)
    price: float | None = Field(None, ge=0)
    description: str = Field("", max_length=20000)
    extra: dict[str, Any] = Field(default_factory=dict)


class ProductNew(ProductIn):
    """A new product's metadata with its SKU (its first images come in the same request)."""

    sku: str = Field(min_length=1, max_length=200, description="no '/', no surrounding spaces")


def parse_new_product(raw: str) -> ProductNew:
    """The ``product`` form field of ``POST /v1/products``: a JSON object, checked like ``PUT``'s body."""
    return _json_field(raw, "product", 'e.g. {"sku": "oat-milk-1l", "title": "Oat milk"}', ProductNew)


class ProductPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    title: str | None = Field(None, max_length=1000)
    brand: str | None = Field(None, max_length=200)
    category: str | None = Field(None, max_length=200)
    tags: list[str] | None = Field(None, max_length=100)
    price: float | None = Field(None, ge=0)
    description: str | None = Field(None, max_length=20000)
    extra: dict[str, Any] | None = None


class ImageOut(BaseModel):
    id: int
    url: str
    sha256: str
    size: list[int]
    palette: PaletteOut
    ocr: list[OcrWord]
    tags: list[TagOut]
    boxes: list[list[float]]


class ProductOut(BaseModel):
    sku: str
    title: str
    brand: str
    category: str
    tags: list[str]
    price: float | None
    description: str
    extra: dict[str, Any]
    images: list[ImageOut]


class SuggestedTags(BaseModel):
    sku: str
    source: str = Field(description="how pictures are placed among words: 'word map' (learnt from this catalogue "
                                    "by `skulens words train`), 'ConSE' (ImageNet's class names) or 'off'")
    colours: list[str] = Field(description="colour names of the product's pictures it is not tagged with")
    words: list[WordOut] = Field(description="the catalogue's words nearest its pictures (at cosine words.floor or more), the words of its title and tags left out")


class ProductPage(BaseModel):
    items: list[ProductOut]
    total: int = Field(description="products matching the filters, all pages")
    offset: int
    limit: int


class RowErrorOut(BaseModel):
    item: str = Field(description="the SKU, 'SKU: image file', or the manifest line that could not be read")
    reason: str


class JobOut(BaseModel):
    id: str
    kind: str = Field(description="'import'")
    state: str = Field(description="queued | running | done | failed | interrupted")
    total: int = Field(description="rows in the job's input")
    done: int = Field(description="rows done so far")
    counts: dict[str, int] = Field(description="rows by outcome: indexed, unchanged, skipped")
    errors: list[RowErrorOut] = Field(description="the rows or images that were skipped, and why (the first 1000)")
    created_at: float = Field(description="Unix time")
    started_at: float | None = None
    finished_at: float | None = None
    rate: float | None = Field(None, description="rows per second so far")
    eta_s: float | None = Field(None, description="seconds left at that rate, while running")
    error: str | None = Field(None, description="why the job failed or was cut short")
    note: str | None = Field(None, description="e.g. that it was resumed after a restart")
    url: str = Field(description="where to poll it")


class JobList(BaseModel):
    items: list[JobOut]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    products: int
    images: int
    vectors: int = Field(description="vectors in the database")
    index_vectors: int = Field(description="vectors in the search index (equal to `vectors` when they agree)")
    index: str
    embedder: str = Field("", description="the embedder that made the vectors (a shop's fine-tuned one after "
                                          "`skulens reindex`)")
    embedder_runtime: str = Field("", description="where it runs: torch, onnx or onnx-int8")


class DedupImageOut(BaseModel):
    sku: str | None = Field(description="the SKU holding the image; null for the uploaded photo")
    image_id: int | None = Field(description="the catalogue image id; null for the uploaded photo")
    file: str = Field(description="the image file (relative to the data directory), or the upload's name")
    url: str | None = Field(None, description="where the API serves the catalogue image")


class DedupPairOut(BaseModel):
    a: int | str = Field(description="one image: its image_id, or the upload's file name")
    b: int | str
    layer: str = Field(description="which layer matched: exact, phash, visual or keypoints")
    score: float = Field(description="exact 1; phash 1 - distance/64; visual the cosine; keypoints the inlier ratio")


class DedupGroupOut(BaseModel):
    skus: list[str]
    images: list[DedupImageOut]
    pairs: list[DedupPairOut]


class SkippedOut(BaseModel):
    item: str
    reason: str


class DedupReportOut(BaseModel):
    groups: list[DedupGroupOut]
    skipped: list[SkippedOut]
