"""The catalogue's records: products and their images, as the store keeps and returns them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import InvalidInputError
from core.types import Box, LocalFeatures, OcrText, Palette, Tags


@dataclass(frozen=True)
class Product:
    sku: str
    title: str = ""
    brand: str = ""
    category: str = ""
    tags: tuple[str, ...] = ()
    price: float | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_sku(self.sku)
        object.__setattr__(self, "tags", tuple(str(t).strip() for t in self.tags if str(t).strip()))
        if self.price is not None and not (isinstance(self.price, (int, float)) and self.price >= 0):
            raise InvalidInputError(f"{self.sku}: expected a non-negative price, got {self.price!r}")

    def to_json(self) -> dict:
        return {"sku": self.sku, "title": self.title, "brand": self.brand, "category": self.category,
                "tags": list(self.tags), "price": self.price, "description": self.description, "extra": self.extra}


def check_sku(sku: str) -> str:
    if not isinstance(sku, str) or not sku.strip() or sku != sku.strip():
        raise InvalidInputError(f"expected a non-empty SKU without surrounding spaces, got {sku!r}")
    if len(sku) > 200 or "/" in sku or any(ord(c) < 32 for c in sku):
        raise InvalidInputError(f"SKU {sku[:40]!r} is too long or holds '/' or control characters")
    return sku


@dataclass(frozen=True)
class ProductQuery:
    """Which products a catalogue listing shows: exact ``category``, ``brand`` and ``tag`` (any case),
    ``text`` found in the SKU or title (any case), only those ``without_images``; ``newest`` first
    instead of in SKU order."""

    category: str | None = None
    brand: str | None = None
    tag: str | None = None
    text: str | None = None
    without_images: bool = False
    newest: bool = False


@dataclass(frozen=True)
class ImageRef:
    """A stored image without its analysis."""

    id: int
    sku: str
    file: str
    sha256: str


@dataclass(frozen=True)
class StoredImage:
    id: int
    sku: str
    file: str
    sha256: str
    width: int
    height: int
    palette: Palette
    ocr: OcrText
    tags: Tags
    boxes: list[list[float]]


@dataclass(frozen=True)
class NewImage:
    """An analysed image ready to store: its file (relative to the data dir) and features."""

    file: str
    sha256: str
    width: int
    height: int
    palette: Palette
    ocr: OcrText
    tags: Tags
    boxes: tuple[Box, ...]
    vectors: dict[str, np.ndarray]
    local: LocalFeatures | None = None  # keypoints of the main box, for the verify signal


@dataclass(frozen=True)
class WriteResult:
    added_ids: np.ndarray
    added_vectors: np.ndarray
    removed_ids: np.ndarray
    image_ids: tuple[int, ...] = ()


def split_tags(tags: str | list | tuple | None) -> tuple[str, ...]:
    """Tags as given: a list, or one string separated by ';' (or '|', as spreadsheets write them)."""
    if isinstance(tags, str):
        return tuple(t for t in (x.strip() for x in tags.replace("|", ";").split(";")) if t)
    return tuple(tags or ())


def merge_product(old: Product, changes: dict) -> Product:
    """``old`` with each field in ``changes`` replacing the stored one (``PATCH /v1/products/{sku}`` and
    ``skulens products add``).  A field given as None keeps the stored value, except ``price``, which
    None clears; tags may be one ';'-separated string."""
    fields = old.to_json()
    for name, value in changes.items():
        if name not in fields or name == "sku":
            raise InvalidInputError(f"{old.sku}: unknown product field {name!r}")
        if value is not None or name == "price":
            fields[name] = value
    return Product(old.sku, fields["title"] or "", fields["brand"] or "", fields["category"] or "",
                   split_tags(fields["tags"]), fields["price"], fields["description"] or "", fields["extra"] or {})
