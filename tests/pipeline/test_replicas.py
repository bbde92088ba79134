"""Two engines on one PostgreSQL catalogue, as two API replicas are (each with its own data
directory and vector index): what one writes, the other's searches find, once its follower thread
has applied the change log."""

from __future__ import annotations

import time

import pytest

from core.catalog import Product
from core.settings import Settings, StoreSettings
from pipeline.catalog_source import read_catalog
from pipeline.engine import Engine
from pipeline.indexing import index_catalog
from pipeline.reembed import reembed
from tests.conftest import make_catalogue
from tests.pipeline.test_engine import query_photo

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.postgres]


def until(check, timeout: float = 10.0):
    """``check()`` once it is truthy (the follower polls every 0.25 s); the last value at the timeout."""
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def first(engine: Engine, sku: str) -> str | None:
    matches = engine.search(query_photo(sku), k=1).groups[0].matches
    return matches[0].sku if matches else None


def test_a_write_through_one_replica_is_found_through_the_other(real_stages, tmp_path, postgres_url):
    a = Engine(Settings(data=tmp_path / "a", store=StoreSettings(url=postgres_url)), real_stages)
    b = Engine(Settings(data=tmp_path / "b", store=StoreSettings(url=postgres_url)), real_stages)
    try:
        assert first(b, "LIME") is None
        index_catalog(a, read_catalog(make_catalogue(tmp_path / "catalog")))
        assert until(lambda: first(b, "LIME") == "LIME")
        assert until(lambda: b.view.titles.get("LIME") == "Lime product")
        # the text statistics and facets follow too
        a.add_product(Product("LIME", "Lime, organic", category="fruit"), [], replace_images=False)
        assert until(lambda: b.facet_counts().categories.get("fruit") == 1)
        assert [m.sku for m in b.search(None, "organic").groups[0].matches] == ["LIME"]
        a.remove_product("LIME")
        assert until(lambda: first(b, "LIME") != "LIME")
        assert len(b.view.index) == len(a.view.index) == b.store.count()[2]
        # and the other way round
        b.remove_product("OATLY-OAT")
        assert until(lambda: "OATLY-OAT" not in a.view.titles)
        assert len(a.view.index) == a.store.count()[2]
    finally:
        a.close()
        b.close()


def test_a_re_embedded_catalogue_is_reloaded_whole_by_the_other_replica(real_stages, tmp_path, postgres_url):
    settings = Settings(data=tmp_path / "a", store=StoreSettings(url=postgres_url, follow_s=0))  # caught up by hand
    a = Engine(settings, real_stages)
    index_catalog(a, read_catalog(make_catalogue(tmp_path / "catalog")))
    b = Engine(settings.model_copy(update={"data": tmp_path / "b"}), real_stages)
    try:
        assert b.catch_up() == 0
        a.close()
        redo = Engine(settings, real_stages, reembedding=True)
        reembed(redo)
        redo.close()
        assert b.catch_up() == -1
        assert set(b.view.vector_owner.skus()) == {"ARLA-MILK", "OATLY-OAT", "RED-APPLE", "LIME"}
        assert first(b, "RED-APPLE") == "RED-APPLE"
    finally:
        b.close()


def test_a_word_map_learnt_through_one_replica_is_used_by_the_other(real_stages, tmp_path, postgres_url):
    from training.words import train_word_map

    settings = Settings(data=tmp_path / "a", store=StoreSettings(url=postgres_url, follow_s=0))  # caught up by hand
    a = Engine(settings, real_stages)
    b = Engine(settings.model_copy(update={"data": tmp_path / "b"}), real_stages)
    try:
        index_catalog(a, read_catalog(make_catalogue(tmp_path / "catalog")))
        assert b.catch_up() > 0 and b.words.source == "ConSE"
        a.use_word_map(train_word_map(a))
        assert b.catch_up() == -1  # the whole view again, placed by the new map
        assert b.words.source == "word map"
        for sku in ("LIME", "ARLA-MILK"):
            assert b.view.semantic.vector(sku) @ a.view.semantic.vector(sku) > 0.999
        a.use_word_map(None)
        assert b.catch_up() == -1 and b.words.source == "ConSE"
    finally:
        a.close()
        b.close()
