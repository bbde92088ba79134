"""Words and pictures in one space through the engine, on real grocery catalogue pictures: typed
words with nothing in common with any title find products by their pictures (the semantic signal,
explained), a word map is learnt, kept, checked against the embedder and followed by writes, and a
product's pictures suggest tags."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from core.catalog import Product
from core.errors import InvalidInputError
from pipeline.engine import Engine
from pipeline.words import projection_key
from tests.conftest import DATASETS
from tests.features.test_text_wordllama import _missing

pytestmark = [pytest.mark.dataset, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]

CATALOG = DATASETS / "grocery" / "catalog"
# opaque titles: no word of a query below is in any of them
PICTURES = {"Banana": "Model 4471", "Lemon": "Model 4472", "Red-Bell-Pepper": "Model 4473",
            "Arla-Standard-Milk": "Model 4474", "Granny-Smith": "Model 4475"}


def _picture(name: str) -> bytes:
    path = CATALOG / f"{name}.jpg"
    if not path.exists():
        pytest.skip(f"no grocery catalogue at {CATALOG}")
    return path.read_bytes()


@pytest.fixture
def opaque(settings, real_stages) -> Engine:
    engine = Engine(settings, real_stages)
    for i, (name, title) in enumerate(PICTURES.items()):
        engine.add_product(Product(f"P{i}", title), [(f"{name}.jpg", _picture(name))])
    yield engine
    engine.close()


def test_words_no_title_holds_find_the_picture_that_means_them(opaque) -> None:
    assert opaque.words is not None and opaque.words.source == "ConSE"
    for query, sku in (("banana", "P0"), ("lemon", "P1"), ("bell pepper", "P2")):
        matches = opaque.search(None, text=query, k=3).groups[0].matches
        assert matches and matches[0].sku == sku, (query, [(m.sku, m.signals) for m in matches])
        assert matches[0].signals["text"] == 0 and matches[0].signals["semantic"] > 0
    # the full-text index alone finds nothing: the semantic weight made the difference
    only_text = opaque.search(None, text="banana", k=3, weights="text=1,semantic=0").groups[0].matches
    assert only_text == []


def test_a_photo_is_described_in_the_catalogues_words(opaque) -> None:
    opaque.add_product(Product("NAMED", "Fresh banana bunch", tags=("fruit",)), [])
    result = opaque.search(_picture("Banana"), k=3)
    words = [w for w, _ in result.groups[0].words]
    assert "banana" in words[:3], result.groups[0].words
    # a photo without typed words: the semantic signal is 0 and takes no share of the score
    top = result.groups[0].matches[0]
    assert top.signals["semantic"] == 0
    suggested = opaque.suggested_tags("P0")
    assert "banana" in [w for w, _ in suggested]  # its title ("Model 4471") does not say so
    assert all(c >= opaque.settings.words.floor for _, c in suggested)  # no far-fetched word


def test_a_learnt_word_map_is_kept_checked_and_followed(settings, real_stages, caplog) -> None:
    from training.words import train_word_map

    engine = Engine(settings, real_stages)
    try:
        titles = {"Banana": "banana", "Lemon": "lemon", "Red-Bell-Pepper": "red pepper",
                  "Arla-Standard-Milk": "milk carton", "Granny-Smith": "green apple"}
        for i, (name, title) in enumerate(titles.items()):
            engine.add_product(Product(f"T{i}", title), [(f"{name}.jpg", _picture(name))])
        with pytest.raises(InvalidInputError, match="at least 4 products"):
            train_word_map(engine, {"T0", "T1"})
        projection = train_word_map(engine)
        assert projection.pairs == 5 and projection.embedder == real_stages.embedder.name
        engine.use_word_map(projection)
        assert engine.words.source == "word map"
        before = engine.view.semantic.vector("T3")
        # a write places the product with the map at once
        engine.add_product(Product("NEW", "new thing"), [("milk.jpg", _picture("Arla-Standard-Milk"))])
        assert engine.view.semantic.vector("NEW") @ before > 0.99
        matches = engine.search(None, text="milk carton", k=2, weights="text=0,semantic=1").groups[0].matches
        assert {m.sku for m in matches} == {"T3", "NEW"}
    finally:
        engine.close()
    reopened = Engine(settings, real_stages)
    try:
        assert reopened.words.source == "word map"
        # a map learnt from another embedder's vectors is not used, and the log says why and what to run
        record = reopened.store.get_meta(projection_key(real_stages.embedder.name)).replace(
            real_stages.embedder.name, "another-embedder")
        reopened.store.set_meta(projection_key(real_stages.embedder.name), record)
    finally:
        reopened.close()
    with caplog.at_level(logging.WARNING, logger="pipeline.words"):
        third = Engine(settings, real_stages)
    try:
        assert third.words.source == "ConSE"
        assert "another-embedder" in caplog.text and "skulens words train" in caplog.text
        third.use_word_map(None)
        assert not third.store.get_meta(projection_key(real_stages.embedder.name))
        assert np.any(third.view.semantic.vector("T0"))
    finally:
        third.close()
