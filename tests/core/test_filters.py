"""Search filters: what they accept, and that bad ones are clear errors."""

from __future__ import annotations

import pytest

from core.errors import InvalidInputError
from core.filters import SearchFilters, facets

MILK = facets("Dairy", "Arla Foods", ("organic", "Lactose free"), 1.5, {"white", "red"})
NO_PRICE = facets("", "", (), None, set())


@pytest.mark.parametrize("flt,accepted", [
    (SearchFilters(), True),
    (SearchFilters(category="dairy"), True),
    (SearchFilters(category="Däiry "), True),  # accents and case are folded
    (SearchFilters(category="fruit"), False),
    (SearchFilters(brand="arla foods"), True),
    (SearchFilters(brand="arla"), False),  # brands match whole
    (SearchFilters(tags=("ORGANIC", "lactose free")), True),
    (SearchFilters(tags=("organic", "vegan")), False),  # every tag must be there
    (SearchFilters(colour="Red"), True),
    (SearchFilters(colour="blue"), False),
    (SearchFilters(price_min=1.5, price_max=1.5), True),
    (SearchFilters(price_max=1.49), False),
    (SearchFilters(price_min=2), False),
])
def test_filters_accept_by_metadata(flt, accepted):
    assert flt.accepts(MILK) is accepted


def test_price_filters_drop_products_without_a_price_and_empty_filters_keep_all():
    assert not SearchFilters(price_max=10).accepts(NO_PRICE)
    assert SearchFilters(tags=(" ", "")).empty and SearchFilters().accepts(None)


@pytest.mark.parametrize("kw", [{"price_min": -1}, {"price_max": "cheap"}, {"price_min": 5, "price_max": 1}])
def test_bad_filters_are_errors(kw):
    with pytest.raises(InvalidInputError):
        SearchFilters(**kw)
