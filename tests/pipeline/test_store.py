"""The catalogue stores against a real SQLite file and a real PostgreSQL server (each test that takes
``store`` runs on both): round trips, transactions, cascades, full-text search, the cache."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
from dataclasses import replace

import numpy as np
import pytest

from core.catalog import NewImage, Product
from core.errors import InvalidInputError, NotFoundError, StorageError
from core.types import PHOTO_SIGNALS, LocalFeatures, OcrText, Palette, Tags
from pipeline.store import SCHEMA_VERSION, CatalogStore
from pipeline.store_base import CatalogStoreBase
from pipeline.store_postgres import PostgresStore

DIM = 8
RNG = np.random.default_rng(0)


def unit() -> np.ndarray:
    v = RNG.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def image(name: str, words: tuple[str, ...] = (), labels: tuple[str, ...] = ("shoe",),
          regions: tuple[str, ...] = ("full", "crop")) -> NewImage:
    return NewImage(
        file=f"images/{name}.jpg", sha256=hashlib.sha256(name.encode()).hexdigest(), width=64, height=48,
        palette=Palette(np.array([[50.0, 10.0, -10.0], [70.0, 0.0, 5.0]]), np.array([0.25, 0.75])),
        ocr=OcrText(words, np.full(len(words), 0.5)), tags=Tags(labels, np.full(len(labels), 0.75)),
        boxes=(), vectors={r: unit() for r in regions})


SHOE = Product("SKU-1", title="Trail runner", brand="Arlagårdar", category="shoes", tags=("outdoor", "blue"),
               price=89.5, description="Lightweight waterproof", extra={"colour": "blue", "sizes": [42, 43]})


def open_again(store: CatalogStoreBase) -> CatalogStoreBase:
    """Another store on the same catalogue (as a restart, or another process, opens it)."""
    return PostgresStore(store.url) if isinstance(store, PostgresStore) else CatalogStore(store.path)


@pytest.fixture
def store(tmp_path, store_url):
    s = PostgresStore(store_url) if store_url else CatalogStore(tmp_path / "catalog.sqlite3")
    yield s
    s.close()


def test_write_product_round_trips_every_field(store):
    ims = [image("a", words=("MJÖLK", "1L")), image("b", labels=("shoe", "sneaker"))]
    result = store.write_product(SHOE, ims, replace_images=True, source_hash="h1")

    assert result.added_ids.shape == (4,) and result.added_vectors.shape == (4, DIM)
    # vectors come back as stored (float16), within its rounding of the float32 given
    np.testing.assert_allclose(result.added_vectors, [v for im in ims for v in im.vectors.values()], atol=1e-3)
    ids, vecs, _ = store.vectors(DIM)
    np.testing.assert_array_equal(ids, result.added_ids)
    np.testing.assert_array_equal(vecs, result.added_vectors)  # what a restart reads is what the index got
    assert len(result.removed_ids) == 0 and len(result.image_ids) == 2
    assert store.get_product("SKU-1") == SHOE
    assert store.list_products() == [SHOE]
    assert store.count() == (1, 2, 4)
    assert store.source_hash("SKU-1") == "h1"
    stored = store.images("SKU-1")
    assert [s.id for s in stored] == list(result.image_ids)
    for s, im in zip(stored, ims):
        assert (s.sku, s.file, s.sha256, s.width, s.height, s.boxes) == ("SKU-1", im.file, im.sha256, 64, 48, [])
        np.testing.assert_allclose(s.palette.colors, im.palette.colors)
        np.testing.assert_allclose(s.palette.weights, im.palette.weights)
        assert s.ocr.tokens == im.ocr.tokens and s.tags.labels == im.tags.labels
        np.testing.assert_allclose(s.ocr.confidences, im.ocr.confidences)
        np.testing.assert_allclose(s.tags.scores, im.tags.scores)


def test_keypoints_are_stored_with_their_image_and_go_with_it(store):
    rng = np.random.default_rng(3)
    local = LocalFeatures(rng.uniform(0, 300, (20, 2)).astype(np.float32), rng.integers(0, 255, (20, 128), np.uint8))
    with_kp = dataclasses.replace(image("a"), local=local)
    first = store.write_product(SHOE, [with_kp, image("b")], replace_images=True)
    a, b = first.image_ids
    got = store.local_features(a)
    assert got is not None and np.array_equal(got.descriptors, local.descriptors)
    np.testing.assert_allclose(got.points, local.points, atol=0.25)  # kept as float16
    assert store.local_features(b) is None  # an image indexed without keypoints
    store.write_product(SHOE, [image("b")], replace_images=True)
    assert store.local_features(a) is None  # deleted with its image
    assert store.local_features(999) is None


def test_replace_images_keeps_unchanged_removes_others_adds_new(store):
    first = store.write_product(SHOE, [image("a"), image("b")], replace_images=True)
    kept_id, gone_id = first.image_ids
    second = store.write_product(SHOE, [image("a"), image("c")], replace_images=True)

    assert sorted(second.removed_ids.tolist()) == first.added_ids[2:].tolist()
    assert len(second.image_ids) == 1 and second.added_ids.shape == (2,)
    assert [s.id for s in store.images("SKU-1")] == [kept_id, second.image_ids[0]]
    assert gone_id not in {s.id for s in store.images()}
    assert store.count() == (1, 2, 4)


def test_append_adds_new_images_and_skips_duplicates(store):
    store.write_product(SHOE, [image("a")], replace_images=True)
    result = store.write_product(SHOE, [image("a"), image("b"), image("b")], replace_images=False)

    assert len(result.image_ids) == 1 and len(result.removed_ids) == 0
    assert [s.sha256 for s in store.images("SKU-1")] == [image("a").sha256, image("b").sha256]
    assert store.count() == (1, 2, 4)


def test_delete_product_removes_everything_and_returns_vector_ids(store):
    added = store.write_product(SHOE, [image("a", words=("zebra",)), image("b")], replace_images=True).added_ids
    store.write_product(Product("SKU-2", title="Other"), [image("c")], replace_images=True)

    assert sorted(store.delete_product("SKU-1").tolist()) == added.tolist()
    assert store.count() == (1, 1, 2)
    assert store.images("SKU-1") == [] and store.fts_search(["zebra"], 10) == []
    assert set(store.texts_and_colours()) == {"SKU-2"}
    with pytest.raises(NotFoundError):
        store.get_product("SKU-1")


def test_delete_image_removes_its_vectors_and_ocr_words(store):
    result = store.write_product(SHOE, [image("a", words=("zebra",)), image("b")], replace_images=True)

    removed = store.delete_image("SKU-1", result.image_ids[0])
    assert sorted(removed.tolist()) == result.added_ids[:2].tolist()
    assert store.count() == (1, 1, 2)
    assert "zebra" not in store.texts_and_colours("SKU-1")["SKU-1"][0] and store.fts_search(["zebra"], 10) == []


@pytest.mark.parametrize("delete", [lambda s: s.delete_product("NOPE"), lambda s: s.delete_image("SKU-1", 999),
                                    lambda s: s.delete_image("NOPE", 1)], ids=["product", "image", "image-sku"])
def test_deleting_unknown_raises_not_found_and_changes_nothing(store, delete):
    store.write_product(SHOE, [image("a")], replace_images=True)
    before = store.generation()
    with pytest.raises(NotFoundError):
        delete(store)
    assert store.generation() == before and store.count() == (1, 1, 2)


def test_generation_bumps_exactly_once_per_write(store):
    assert store.generation() == 0
    result = store.write_product(SHOE, [image("a"), image("b")], replace_images=True)
    assert store.generation() == 1
    store.write_product(Product("SKU-2"), [], replace_images=False)
    assert store.generation() == 2
    store.delete_image("SKU-1", result.image_ids[0])
    store.delete_product("SKU-2")
    assert store.generation() == 4


def fail_insert(*args, **kwargs):
    raise RuntimeError("disk on fire")


@pytest.mark.parametrize("how", ["bad-vector", "insert-raises"])
def test_failed_write_rolls_back_everything(store, monkeypatch, how):
    store.write_product(Product("SKU-0", title="Kept"), [image("z")], replace_images=True)
    images = [image("a"), image("b")]
    if how == "bad-vector":
        images[1] = replace(images[1], vectors={"full": "not a vector"})
    else:
        monkeypatch.setattr(type(store), "_insert_image", fail_insert)
    with pytest.raises((ValueError, RuntimeError)):
        store.write_product(SHOE, images, replace_images=True)
    with pytest.raises((ValueError, RuntimeError)):
        store.write_product(Product("SKU-0", title="Changed"), images, replace_images=True)

    assert store.generation() == 1 and store.count() == (1, 1, 2)
    assert store.get_product("SKU-0").title == "Kept" and store.fts_search(["changed"], 10) == []
    with pytest.raises(NotFoundError):
        store.get_product("SKU-1")


@pytest.mark.parametrize("query", ["trail", "arlagardar", "Arlagårdar", "waterproof", "outdoor", "MJÖLK", "mjolk",
                                   "shoes"])
def test_fts_search_finds_product_by_any_field(store, query):
    store.write_product(SHOE, [image("a", words=("MJÖLK",))], replace_images=True)
    store.write_product(Product("SKU-2", title="Red kettle"), [image("b")], replace_images=True)
    hits = store.fts_search([query], 10)
    assert [sku for sku, _ in hits] == ["SKU-1"] and hits[0][1] > 0


@pytest.mark.parametrize("query", ['"unterminated', "AND", "nosuchcolumn:x", "a OR"])
def test_fts_match_bad_expression_raises_invalid_input(tmp_path, query):
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    store.write_product(SHOE, [], replace_images=True)
    with pytest.raises(InvalidInputError):
        store.fts_match(query, 10)
    store.close()


def test_texts_hold_metadata_and_ocr_words_and_the_palettes_colour_names(store):
    from core.colours import colour_names

    im = image("a", words=("MJÖLK", "1L"))
    store.write_product(SHOE, [im], replace_images=True)
    doc, colours = store.texts_and_colours("SKU-1")["SKU-1"]
    assert store.texts_and_colours() == {"SKU-1": (doc, colours)}
    for word in ("Trail", "Arlagårdar", "outdoor", "Lightweight", "MJÖLK", "1L"):
        assert word in doc
    assert colours == colour_names(im.palette) and all(c in doc for c in colours)
    assert store.texts_and_colours("NOPE") == {}


@pytest.mark.parametrize("kwargs", [{"sku": ""}, {"sku": "   "}, {"sku": "a/b"}, {"sku": " SKU"}, {"sku": "SKU "},
                                    {"sku": "a\nb"}, {"sku": "x" * 201}, {"sku": "S", "price": -1.0},
                                    {"sku": "S", "price": float("nan")}])
def test_product_validation_rejects(kwargs):
    with pytest.raises(InvalidInputError):
        Product(**kwargs)


def test_reopening_the_catalogue_sees_everything(store):
    result = store.write_product(SHOE, [image("a", words=("MJÖLK",))], replace_images=True)
    store.cache_features("k", b"v")
    store.cache_features("k", b"v2")
    store.close()
    again = open_again(store)
    try:
        assert again.get_product("SKU-1") == SHOE and again.count() == (1, 1, 2)
        assert again.generation() == 1 and again.cached_features("k") == b"v2"
        assert [sku for sku, _ in again.fts_search(["mjolk"], 5)] == ["SKU-1"]
        ids, vecs, _ = again.vectors(DIM)
        np.testing.assert_array_equal(ids, result.added_ids)
        np.testing.assert_array_equal(vecs, result.added_vectors)
    finally:
        again.close()


def test_other_schema_version_raises_storage_error(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    CatalogStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StorageError, match="schema version 99"):
        CatalogStore(path)


def test_a_file_that_is_not_sqlite_raises_storage_error(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(StorageError):
        CatalogStore(path)


def test_feature_cache_round_trips_without_bumping_generation(store):
    blob = bytes(range(256))
    store.cache_features("sha:model", blob)
    assert store.cached_features("sha:model") == blob
    store.cache_features("sha:model", b"newer")
    assert store.cached_features("sha:model") == b"newer"
    assert store.cached_features("unknown") is None
    assert store.generation() == 0


def test_vectors_returns_everything_in_id_order(store):
    assert store.vectors(DIM)[0].shape == (0,) and store.vectors(DIM)[1].shape == (0, DIM)
    one = store.write_product(SHOE, [image("a"), image("b", regions=("full",))], replace_images=True)
    two = store.write_product(Product("SKU-2"), [image("c")], replace_images=True)

    ids, vecs, owners = store.vectors(DIM)
    np.testing.assert_array_equal(ids, np.concatenate([one.added_ids, two.added_ids]))
    assert np.all(np.diff(ids) > 0)
    np.testing.assert_array_equal(vecs, np.concatenate([one.added_vectors, two.added_vectors]))
    image_ids = one.image_ids + two.image_ids
    assert owners == [(image_ids[0], "SKU-1", "full"), (image_ids[0], "SKU-1", "crop"),
                      (image_ids[1], "SKU-1", "full"), (image_ids[2], "SKU-2", "full"),
                      (image_ids[2], "SKU-2", "crop")]
    assert store.vector_owners("SKU-2") == [(int(i), image_ids[2], r) for i, r in zip(two.added_ids, ("full", "crop"))]


def test_vector_owner_columns_are_the_vectors_owners_in_id_order_without_reading_vectors(store):
    one = store.write_product(SHOE, [image("a"), image("b", regions=("full",))], replace_images=True)
    two = store.write_product(Product("SKU-2"), [image("c", regions=("centre70", "full"))], replace_images=True)
    store.write_product(SHOE, [image("b", regions=("full",)), image("d")], replace_images=True)  # "a" goes
    store.write_product(Product("SKU-3"), [], replace_images=False)  # no images: no owners

    _, _, expected = store.vectors(DIM)
    columns = store.vector_owner_columns(chunk=2)  # several chunks
    np.testing.assert_array_equal(columns.ids, store.vector_ids())
    assert [(int(i), columns.sku_names[s], columns.region_names[r])
            for i, s, r in zip(columns.images, columns.skus, columns.regions)] == expected
    assert not set(one.added_ids[:2].tolist()) & set(columns.ids.tolist())
    assert set(two.added_ids.tolist()) <= set(columns.ids.tolist())
    if isinstance(store, PostgresStore):
        return
    with sqlite3.connect(store.path) as conn:  # both reads are answered from indexes alone
        plans = [conn.execute(f"EXPLAIN QUERY PLAN {q}").fetchall()[0][3]
                 for q in ("SELECT id, sku FROM images", "SELECT id, image_id, region FROM vectors INDEXED BY vectors_owner")]
    assert all("COVERING INDEX" in plan for plan in plans), plans


def test_a_catalogue_from_before_the_owner_index_gets_it(tmp_path):
    path = tmp_path / "c.sqlite3"
    store = CatalogStore(path)
    store.write_product(SHOE, [image("a")], replace_images=True)
    store.close()
    with sqlite3.connect(path) as conn:  # how the vectors were indexed before
        conn.execute("DROP INDEX vectors_owner")
        conn.execute("CREATE INDEX vectors_image ON vectors(image_id)")
    store = CatalogStore(path)
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    assert "vectors_owner" in names and "vectors_image" not in names
    assert len(store.vector_owner_columns().ids) == 2
    store.close()


def test_readers_never_see_a_write_in_progress(tmp_path):
    """Reads on other threads see the last commit while a write transaction is open."""
    import threading

    store = CatalogStore(tmp_path / "c.sqlite3")
    store.write_product(Product("A", "first"), [], replace_images=False)
    seen: list[str] = []
    with store._write(["A"]) as conn:
        conn.execute("UPDATE products SET title = 'half-written' WHERE sku = 'A'")
        t = threading.Thread(target=lambda: seen.append(store.get_product("A").title))
        t.start()
        t.join(10)
    assert seen == ["first"]
    assert store.get_product("A").title == "half-written"
    store.close()


def test_schema_1_is_upgraded_with_colour_words_in_the_text_index(tmp_path):
    path = tmp_path / "c.sqlite3"
    store = CatalogStore(path)
    store.write_product(Product("A", "Oat drink"), [], replace_images=False)
    store.close()
    with sqlite3.connect(path) as conn:  # what a version-1 database looked like
        conn.execute("DROP TABLE products_fts")
        conn.execute("CREATE VIRTUAL TABLE products_fts USING fts5(title, brand, category, tags, description, ocr)")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = CatalogStore(path)
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert [s for s, _ in store.fts_search(["oat"], 5)] == ["A"]
    store.close()


def _given(record: dict) -> dict[str, float]:
    """The weights a tuned record gives (those it leaves out weigh 0: they are filled in as such; the
    semantic weight is not tuned: the engine adds the one set for it)."""
    assert set(record["weights"]) == set(PHOTO_SIGNALS)
    return {s: w for s, w in record["weights"].items() if w}


def test_tuned_weights_follow_the_embedder_then_its_float_model_then_the_plain_ones(store):
    import json

    from pipeline.tuned import tuned_key, tuned_weights

    assert tuned_weights(store, "ft-v3") is None
    store.set_meta(tuned_key(None), json.dumps({"weights": {"embedding": 1.0}}))
    assert _given(tuned_weights(store, "ft-v3")) == {"embedding": 1.0}  # nothing of its own: the plain ones
    store.set_meta(tuned_key("ft-v3"), json.dumps({"weights": {"embedding": 0.9, "text": 0.1}}))
    assert _given(tuned_weights(store, "ft-v3")) == {"embedding": 0.9, "text": 0.1}
    assert _given(tuned_weights(store, "ft-v3-int8")) == {"embedding": 0.9, "text": 0.1}  # its float model's
    assert _given(tuned_weights(store, "ft-v3-int8-0a1b2c3d")) == {"embedding": 0.9, "text": 0.1}
    assert _given(tuned_weights(store, "ft-v2-int8")) == {"embedding": 1.0}
    assert _given(tuned_weights(store, None)) == {"embedding": 1.0}


def test_weights_tuned_with_shop_photos_come_first_for_a_gallery_with_photos(store):
    import json

    from pipeline.tuned import tuned_key, tuned_weights

    store.set_meta(tuned_key("ft-v3"), json.dumps({"weights": {"embedding": 0.9, "text": 0.1}}))
    store.set_meta(tuned_key(None, photos=True), json.dumps({"weights": {"embedding": 1.0}}))
    # an embedder's own catalogue-only weights beat ImageNet's weights learnt with photos
    assert _given(tuned_weights(store, "ft-v3", photos=True)) == {"embedding": 0.9, "text": 0.1}
    store.set_meta(tuned_key("ft-v3", photos=True), json.dumps({"weights": {"embedding": 0.8, "colour": 0.2}}))
    assert _given(tuned_weights(store, "ft-v3-int8", photos=True)) == {"embedding": 0.8, "colour": 0.2}
    assert _given(tuned_weights(store, "ft-v3-int8")) == {"embedding": 0.9, "text": 0.1}  # G1's stay G1's
    assert tuned_weights(store, None) is None and _given(tuned_weights(store, None, photos=True)) == {"embedding": 1.0}


def test_image_signals_reads_only_the_images_asked_for(store):
    store.write_product(SHOE, [image("a", labels=("boot",)), image("b")], replace_images=True)
    store.write_product(Product("SKU-2"), [image("c")], replace_images=True)
    ids = [im.id for im in store.images()]
    rows = store.image_signals([ids[2], ids[0], 10_000])
    assert sorted((r[0], r[1]) for r in rows) == [(ids[0], SHOE.sku), (ids[2], "SKU-2")]
    first = next(r for r in rows if r[0] == ids[0])
    assert first[3].labels == ("boot",) and np.allclose(first[2].weights, [0.25, 0.75])
    assert store.image_signals([]) == []


def test_vectors_are_read_in_chunks_and_by_id_with_missing_ones_as_zeros(store):
    store.write_product(SHOE, [image("a"), image("b")], replace_images=True)
    ids, vecs, _ = store.vectors(DIM)
    chunks = list(store.vector_chunks(DIM, chunk=3))
    assert [len(c[0]) for c in chunks] == [3] * (len(ids) // 3) + ([len(ids) % 3] if len(ids) % 3 else [])
    assert np.array_equal(np.concatenate([c[0] for c in chunks]), ids)
    assert np.array_equal(np.concatenate([c[1] for c in chunks]), vecs)
    gone = int(ids.max()) + 100
    picked = store.vectors_by_id(np.array([ids[1], gone, ids[0]]), DIM, missing_ok=True)
    assert np.array_equal(picked[[0, 2]], vecs[[1, 0]]) and not picked[1].any()
    with pytest.raises(StorageError, match="not stored"):
        store.vectors_by_id(np.array([gone]), DIM)


def test_write_products_writes_all_in_one_transaction_or_none(store, monkeypatch):
    results = store.write_products([(SHOE, [image("a")], True, None), (Product("SKU-2"), [image("b")], True, "h2")])
    assert [len(r.added_ids) for r in results] == [2, 2] and store.count()[:2] == (2, 2)
    generation = store.generation()
    real = store._insert_image

    def fail_on_c(conn, sku, im, now):
        if im.file.endswith("c.jpg"):
            raise RuntimeError("disk trouble")
        return real(conn, sku, im, now)

    monkeypatch.setattr(store, "_insert_image", fail_on_c)
    with pytest.raises(RuntimeError):
        store.write_products([(Product("SKU-3"), [image("d")], True, None), (Product("SKU-4"), [image("c")], True, None)])
    assert store.count()[:2] == (2, 2) and store.generation() == generation  # SKU-3 rolled back with SKU-4
    with pytest.raises(NotFoundError):
        store.get_product("SKU-3")


def test_the_change_log_names_the_products_each_write_changed(store, monkeypatch):
    from pipeline import store_base

    assert store.changes_since(0) == (0, set())
    one = store.write_products([(SHOE, [image("a")], True, None), (Product("SKU-2"), [image("b")], True, None)])
    store.delete_image("SKU-2", one[1].image_ids[0])
    assert store.changes_since(0) == (2, {"SKU-1", "SKU-2"})
    assert store.changes_since(1) == (2, {"SKU-2"}) and store.changes_since(2) == (2, set())
    store.write_products([])  # a write that changed nothing is still a generation
    assert store.changes_since(2) == (3, set())
    store.replace_embeddings([(iid, {}, Tags(("x",), np.ones(1))) for iid in (one[0].image_ids[0],)], "e:8", "", "{}")
    assert store.changes_since(3) == (4, None)  # everything changed: reload whole
    monkeypatch.setattr(store_base, "CHANGES_KEPT", 2)
    store.delete_product("SKU-2")
    store.write_product(SHOE, [], replace_images=False)
    assert store.changes_since(5) == (6, {"SKU-1"})
    assert store.changes_since(2) == (6, None)  # the log no longer reaches back that far
