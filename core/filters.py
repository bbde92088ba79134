"""Search filters on product metadata: category, brand, tags, price range, colour.

A filter narrows the SKUs a search may return; it never changes their scores.  Text
comparisons are case- and accent-insensitive (the words of :func:`core.words.normalise`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.errors import InvalidInputError
from core.words import normalise


def norm_value(text: str) -> str:
    """A filter value as filters compare it: folded words (``"Plant-based Milk "`` -> ``"plantbased milk"``)."""
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
        if self.category and norm_value(self.category) != facets.category:
            return False
        if self.brand and norm_value(self.brand) != facets.brand:
            return False
        if self.tags and not all(norm_value(t) in facets.tags for t in self.tags):
            return False
        if self.colour and norm_value(self.colour) not in facets.colours:
            return False
        if self.price_min is not None and (facets.price is None or facets.price < self.price_min):
            return False
        if self.price_max is not None and (facets.price is None or facets.price > self.price_max):
            return False
        return True


def facets(category: str, brand: str, tags: tuple[str, ...], price: float | None, colours: set[str]) -> ProductFacets:
    return ProductFacets(norm_value(category), norm_value(brand), frozenset(norm_value(t) for t in tags), price,
                         frozenset(colours))



@dataclass(frozen=True)
class FacetCounts:
    """How many products carry each filter value (normalised words), and the price range."""

    products: int
    categories: dict[str, int]
    brands: dict[str, int]
    tags: dict[str, int]
    colours: dict[str, int]
    price_min: float | None
    price_max: float | None
    priced: int
    labels: dict[str, str] = field(default_factory=dict)  # a normalised value -> how a product spells it

    def to_json(self, top_tags: int = 50) -> dict:
        """Values as the catalogue spells them ("Plant-based", not the compared "plantbased")."""
        def rows(counts: dict[str, int], most: int | None = None) -> list[dict]:
            return [{"value": self.labels.get(v, v), "count": n} for v, n in Counter(counts).most_common(most)]

        return {"products": self.products, "categories": rows(self.categories), "brands": rows(self.brands),
                "tags": rows(self.tags, top_tags), "colours": rows(self.colours),
                "price": {"min": self.price_min, "max": self.price_max, "products": self.priced}}


def facet_labels(category: str, brand: str, tags: tuple[str, ...]) -> dict[str, str]:
    """How a product spells the values its facets hold normalised."""
    return {norm_value(v): v.strip() for v in (category, brand, *tags) if v and norm_value(v)}


def count_facets(all_facets: Iterable[ProductFacets], labels: dict[str, str] | None = None) -> FacetCounts:
    cats: Counter[str] = Counter()
    brands: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    colours: Counter[str] = Counter()
    prices = []
    n = 0
    for f in all_facets:
        n += 1
        if f.category:
            cats[f.category] += 1
        if f.brand:
            brands[f.brand] += 1
        tags.update(f.tags)
        colours.update(f.colours)
        if f.price is not None:
            prices.append(f.price)
    return FacetCounts(n, dict(cats), dict(brands), dict(tags), dict(colours),
                       min(prices) if prices else None, max(prices) if prices else None, len(prices),
                       dict(labels or {}))


def filter_notes(filters: SearchFilters, counts: FacetCounts) -> list[str]:
    """Why a filter matches nothing: a value no product carries (naming some that exist), or a field
    the catalogue does not fill at all."""
    notes = []

    def check(field: str, plural: str, value: str | None, known: dict[str, int]) -> None:
        if not value or norm_value(value) in known:
            return
        if not known:
            notes.append(f"no product has a {field}: the {field} filter {value!r} matches nothing")
            return
        some = ", ".join(counts.labels.get(v, v) for v, _ in Counter(known).most_common(8))
        notes.append(f"no product has the {field} {value!r} ({plural}: {some}{', ...' if len(known) > 8 else ''})")

    check("category", "categories", filters.category, counts.categories)
    check("brand", "brands", filters.brand, counts.brands)
    for tag in filters.tags:
        check("tag", "tags", tag, counts.tags)
    check("colour", "colours found in the photos", filters.colour, counts.colours)
    if (filters.price_min is not None or filters.price_max is not None) and not counts.priced:
        notes.append("no product has a price: a price filter matches nothing")
    return notes
