"""``skulens migrate`` from a data directory into a real PostgreSQL (and Milvus Lite) server: every
row accounted for, ids and generation kept, and the moved catalogue answering as the embedded one."""

from __future__ import annotations

import numpy as np
import pytest

from core.catalog import Product
from core.errors import ConflictError, NotFoundError
from core.settings import IndexSettings, Settings, StoreSettings
from pipeline.migrate import migrate
from pipeline.store import CatalogStore, open_store
from tests.conftest import new_collection
from tests.pipeline.test_store import DIM, SHOE, image

pytestmark = pytest.mark.postgres


def embedded(tmp_path) -> Settings:
    settings = Settings(data=tmp_path / "data")
    store = CatalogStore(settings.data / "catalog.sqlite3")
    store.write_product(SHOE, [image("a", words=("MJÖLK",)), image("b")], replace_images=True, source_hash="h1")
    store.write_product(Product("SKU-2", "Oat drink", tags=("vegan",)), [image("c")], replace_images=True)
    gone = store.write_product(Product("SKU-3"), [image("d")], replace_images=True)
    store.delete_image("SKU-3", gone.image_ids[0])  # ids with a gap, as a real catalogue has
    store.cache_features("k", b"analysis")
    store.set_meta("embedder", f"effnet:{DIM}")
    store.set_meta("tuned_weights", '{"weights": {"embedding": 1.0}}')
    store.close()
    for im in ("a", "b", "c"):
        path = settings.data / f"images/{im}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(im.encode())
    return settings


def test_every_row_moves_with_its_id_and_the_catalogue_goes_on_from_there(tmp_path, postgres_url, milvus_server):
    settings = embedded(tmp_path)
    target = Settings(data=tmp_path / "data", store=StoreSettings(url=postgres_url),
                      index=IndexSettings(uri=milvus_server.uri, collection=new_collection()),
                      files=settings.files.model_copy(update={"root": tmp_path / "shared"}))
    seen: list[tuple] = []
    report = migrate(settings, target, progress=lambda what, done, total: seen.append((what, done, total)))
    assert report.complete and report.index == (6, 6) and report.files == (3, 3)
    assert report.counts["products"] == (3, 3) and report.counts["vectors"] == (6, 6)
    assert ("vectors", 6, 6) in seen
    before, after = CatalogStore(settings.data / "catalog.sqlite3"), open_store(target)
    try:
        assert after.list_products(limit=-1) == before.list_products(limit=-1)
        def rows(store):
            return [(i.id, i.sku, i.file, i.sha256, i.width, i.ocr.tokens, i.tags.labels, i.palette.colors.tolist())
                    for i in store.images()]

        assert rows(after) == rows(before)
        np.testing.assert_array_equal(after.vectors(DIM)[0], before.vectors(DIM)[0])
        np.testing.assert_array_equal(after.vectors(DIM)[1], before.vectors(DIM)[1])
        assert after.texts_and_colours() == before.texts_and_colours()
        assert after.fts_search(["mjolk"], 5)[0][0] == "SKU-1"
        assert after.cached_features("k") == b"analysis" and after.get_meta("tuned_weights") == before.get_meta("tuned_weights")
        assert after.generation() == before.generation() and after.source_hash("SKU-1") == "h1"
        assert after.local_features(before.images()[0].id) is None
        # new rows continue after the copied ids, and the generation after the copied one
        new = after.write_product(Product("SKU-4"), [image("e")], replace_images=True)
        assert new.image_ids[0] > max(im.id for im in before.images())
        assert new.added_ids.min() > before.vector_ids().max()
        assert after.generation() == before.generation() + 1
    finally:
        before.close()
        after.close()
    assert (tmp_path / "shared/images/a.jpg").read_bytes() == b"a"
    with pytest.raises(ConflictError, match="already holds a catalogue"):
        migrate(settings, target)


def test_migrate_needs_a_catalogue_and_a_database(tmp_path, postgres_url):
    with pytest.raises(NotFoundError, match="no catalogue"):
        migrate(Settings(data=tmp_path / "empty"), Settings(data=tmp_path / "empty", store=StoreSettings(url=postgres_url)))
    with pytest.raises(ConflictError, match="PostgreSQL"):
        migrate(embedded(tmp_path), Settings(data=tmp_path / "data"))
