"""Search filters on product metadata: category, brand, tags, price range, colour.

A filter narrows the SKUs a search may return; it never changes their scores.  Text
comparisons are case- and accent-insensitive (the words of :func:`core.words.normalise`).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InvalidInputError
from core.words import normalise


def _norm(text: str) -> str:
    return " ".join(normalise(w) for w in str(text).split() if normalise(w))


@dataclass(frozen=True)
class ProductFacets:
    """What filters look at, per SKU (kept in memory by the engine)."""

    category: str
    brand: str
    tags: frozenset[str]
    price: float | None
    colours: frozenset[str]


@dataclass(frozen=True)
class SearchFilters:
    category: str | None = None
    brand: str | None = None
    tags: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    colour: str | None = None

    def __post_init__(self) -> None:
        for name in ("price_min", "price_max"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and v >= 0):
                raise InvalidInputError(f"filter {name} must be a number >= 0, got {v!r}")
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise InvalidInputError(f"filter price_min {self.price_min} is above price_max {self.price_max}")
        object.__setattr__(self, "tags", tuple(t for t in (str(x).strip() for x in self.tags) if t))

    @property
    def empty(self) -> bool:
        return not (self.category or self.brand or self.tags or self.colour) and \
            self.price_min is None and self.price_max is None

    def accepts(self, facets: ProductFacets | None) -> bool:
        if self.empty:
            return True
        if facets is None:
            return False
        if self.category and _norm(self.category) != facets.category:
            return False
        if self.brand and _norm(self.brand) != facets.brand:
            return False
        if self.tags and not all(_norm(t) in facets.tags for t in self.tags):
            return False
        if self.colour and _norm(self.colour) not in facets.colours:
            return False
        if self.price_min is not None and (facets.price is None or facets.price < self.price_min):
            return False
        if self.price_max is not None and (facets.price is None or facets.price > self.price_max):
            return False
        return True


def facets(category: str, brand: str, tags: tuple[str, ...], price: float | None, colours: set[str]) -> ProductFacets:
    return ProductFacets(_norm(category), _norm(brand), frozenset(_norm(t) for t in tags), price,
                         frozenset(colours))

