"""The engine with the real models: index, search, change the catalogue, restart, bad input.

Every test runs on each catalogue store: the data directory's SQLite file and a real PostgreSQL
server (``postgres`` marker)."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

from core.errors import ConflictError, InvalidImageError, NotFoundError, StorageError
from core.settings import IndexSettings, Settings, StoreSettings
from core.types import SIGNALS
from pipeline.catalog_source import read_catalog
from pipeline.engine import Engine
from pipeline.indexing import index_catalog
from pipeline.reembed import reembed
from pipeline.store import INDEX_REGIONS_KEY, open_store
from tests.conftest import CATALOGUE, DEPLOYMENTS, jpeg_bytes, make_catalogue, new_collection, product_image

pytestmark = [pytest.mark.model, pytest.mark.slow]


def query_photo(sku: str) -> bytes:
    """A 'shopper photo' of a product: the catalogue picture shifted, cropped and recompressed."""
    colour, word, shape = CATALOGUE[sku]
    img = product_image(colour, word, shape, size=400)
    canvas = np.full((480, 520, 3), 235, np.uint8)
    canvas[50:450, 80:480] = img
    return jpeg_bytes(canvas[20:470, 30:500], quality=70)


_names = iter(range(1 << 30))


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def backend(request) -> str:
    return request.param


def deployment(backend: str, data, request) -> Settings:
    """Settings for ``backend`` on the data directory ``data``: a new PostgreSQL database and a new
    Milvus collection where it names them."""
    store, index = StoreSettings(), IndexSettings()
    if backend.startswith("postgres"):
        server = request.getfixturevalue("postgres_server")
        store = StoreSettings(url=server.create_database(f"engine_{next(_names)}"))
    if backend.endswith("milvus"):
        index = IndexSettings(uri=request.getfixturevalue("milvus_server").uri, collection=new_collection())
    return Settings(data=data, store=store, index=index)


@pytest.fixture(scope="module")
def indexed_template(real_stages, tmp_path_factory, backend, request):
    """The four-product catalogue indexed once; each test gets a copy of its data directory (and,
    on PostgreSQL, of its database)."""
    root = tmp_path_factory.mktemp("template")
    folder = make_catalogue(root / "catalog")
    settings = deployment(backend, root / "data", request)
    if settings.store.url:
        (root / "database.txt").write_text(settings.store.url.rsplit("/", 1)[1])
    eng = Engine(settings, real_stages)
    report = index_catalog(eng, read_catalog(folder))
    eng.close()
    assert sorted(report.indexed) == sorted(CATALOGUE) and not report.skipped
    return root


@pytest.fixture
def settings(tmp_path, backend, request) -> Settings:
    """A fresh data directory, and on PostgreSQL a fresh database (on Milvus a fresh collection)."""
    return deployment(backend, tmp_path / "data", request)


@pytest.fixture
def catalogue_dir(indexed_template):
    return indexed_template / "catalog"


@pytest.fixture
def engine(settings, real_stages, indexed_template, request):
    shutil.copytree(indexed_template / "data", settings.data)
    if settings.store.url:  # the template's database too
        template = (indexed_template / "database.txt").read_text()
        request.getfixturevalue("postgres_server").create_database(settings.store.url.rsplit("/", 1)[1],
                                                                   template=template, replace=True)
    eng = Engine(settings, real_stages)
    yield eng
    eng.close()


def top(engine: Engine, sku: str) -> list[str]:
    return [m.sku for m in engine.search(query_photo(sku), k=4).groups[0].matches]


def test_search_finds_each_product_with_every_signal(engine):
    for sku in CATALOGUE:
        result = engine.search(query_photo(sku), k=4)
        matches = result.groups[0].matches
        assert matches[0].sku == sku
        for m in matches:
            assert set(m.signals) == set(SIGNALS)
            assert all(0.0 <= v <= 1.0 for v in m.signals.values())
        assert {"decode", "detect", "colour", "ocr", "embed", "rank"} <= set(result.timings)


def test_ocr_words_reach_the_text_signal(engine):
    result = engine.search(query_photo("OATLY-OAT"), k=4)
    words = {w.lower() for w in result.groups[0].features.ocr.tokens}
    assert "oatly" in words
    assert result.groups[0].matches[0].signals["text"] > 0.3


def test_text_only_search(engine):
    matches = engine.search(None, text="lime", k=3).groups[0].matches
    assert matches[0].sku == "LIME"
    assert matches[0].signals["embedding"] == 0.0


def test_remove_and_add_apply_at_once_and_survive_a_restart(engine, settings, real_stages, catalogue_dir):
    engine.remove_product("LIME")
    assert "LIME" not in top(engine, "LIME")
    engine.close()

    reopened = Engine(settings, real_stages)
    assert "LIME" not in top(reopened, "LIME")
    product = read_catalog(catalogue_dir).entries[[e.product.sku for e in read_catalog(catalogue_dir).entries].index("LIME")]
    reopened.add_product(product.product, [("lime.jpg", product.images[0].read_bytes())])
    assert top(reopened, "LIME")[0] == "LIME"
    reopened.close()

    again = Engine(settings, real_stages)
    assert top(again, "LIME")[0] == "LIME"
    assert len(again.view.index) == again.store.count()[2]
    again.close()


def test_a_stale_index_is_brought_level_with_the_database(engine, settings, real_stages):
    before = top(engine, "ARLA-MILK")
    if settings.index.uri:  # Milvus lacks vectors (a process died between its commit and its Milvus write)
        arla = engine.view.vector_owner.of_sku("ARLA-MILK")
        engine.view.index.remove(arla)
        engine.view.index.add(np.array([10_000]), engine.view.index.reconstruct(arla[:1]))  # and holds one it should not
    engine.close()
    if not settings.index.uri:  # an index saved by an older generation (as after a crash between commit and save)
        stamp = engine.index_path.with_suffix(".json")
        stamp.write_text(stamp.read_text().replace('"generation": ', '"generation": 1000'))
    reopened = Engine(settings, real_stages)
    assert top(reopened, "ARLA-MILK") == before
    assert np.array_equal(reopened.view.index.ids(), reopened.store.vector_ids())
    reopened.close()


def test_reindexing_unchanged_catalogue_does_nothing(engine, catalogue_dir):
    report = index_catalog(engine, read_catalog(catalogue_dir))
    assert report.indexed == [] and sorted(report.unchanged) == sorted(CATALOGUE)


def shelf_photo(sku: str) -> bytes:
    """A merchant's photo of a product in a busy shop: the product on a noisy background."""
    tiles = np.random.default_rng(1).integers(0, 256, (12, 13, 3), dtype=np.uint8)  # shelves, other packs
    canvas = np.kron(tiles, np.ones((40, 40, 1), np.uint8))
    canvas[40:440, 60:460] = product_image(*CATALOGUE[sku], size=400)
    return jpeg_bytes(canvas, quality=80)


def test_photos_get_centre_views_and_other_regions_ask_for_a_reindex(engine, settings, real_stages):
    """Packshots are embedded whole and cropped, photos also in their centre views; more views of some
    images than of others would favour them, so a catalogue indexed with other regions is refused by
    name until `skulens reindex` re-embeds it with the settings' regions."""
    assert engine.store.vector_regions() == {"full", "crop"}  # the fixture's pictures are packshots
    engine.add_product(engine.store.get_product("ARLA-MILK"), [("shelf.jpg", shelf_photo("ARLA-MILK"))])
    photo = max(im.id for im in engine.store.images("ARLA-MILK"))
    assert photo in engine.store.region_vectors("centre70", engine.stages.embedder.dim)
    engine.close()
    fewer = settings.model_copy(update={"fusion": settings.fusion.model_copy(update={"index_regions": ("full", "crop")})})
    with pytest.raises(ConflictError, match=r"regions \['full', 'crop', 'centre70', 'centre50'\].*reindex --embedder imagenet"):
        Engine(fewer, real_stages)
    redo = Engine(fewer, real_stages, reembedding=True)
    reembed(redo)
    assert redo.store.vector_regions() == {"full", "crop"}
    assert json.loads(redo.store.get_meta(INDEX_REGIONS_KEY)) == {"regions": ["full", "crop"],
                                                                   "packshot_centre_views": False}
    redo.close()
    reopened = Engine(fewer, real_stages)
    assert top(reopened, "ARLA-MILK")[0] == "ARLA-MILK"
    reopened.close()
    # a catalogue from before the regions were recorded is judged by its vectors
    store = open_store(settings)
    with store._transaction() as tx:
        tx.execute("DELETE FROM meta WHERE key = ?", (INDEX_REGIONS_KEY,))
    store.close()
    with pytest.raises(ConflictError, match=r"regions \['crop', 'full'\]"):
        Engine(settings, real_stages)
    Engine(fewer, real_stages).close()
    # the default regions again, through reindex: the photo's centre views come back
    redo = Engine(settings, real_stages, reembedding=True)
    reembed(redo)
    assert redo.store.vector_regions() == {"full", "crop", "centre70", "centre50"}
    assert set(redo.store.region_vectors("centre50", redo.stages.embedder.dim)) == {photo}
    redo.close()


def _bad_inputs() -> dict[str, bytes]:
    good = jpeg_bytes(product_image((10, 200, 10), "X", "box"))
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, "PNG")
    return {"not an image": b"hello, I am text", "truncated": good[: len(good) // 2], "empty": b"",
            "1x1": tiny.getvalue(), "corrupt": good[:200] + bytes(len(good) - 200)}


@pytest.mark.parametrize("kind", list(_bad_inputs()))
def test_bad_image_is_refused_and_nothing_is_lost(engine, kind):
    counts = engine.store.count()
    before = top(engine, "RED-APPLE")
    from core.catalog import Product

    with pytest.raises(InvalidImageError):
        engine.add_product(Product("NEW-SKU", "New"), [("bad.jpg", _bad_inputs()[kind])])
    with pytest.raises(InvalidImageError):
        engine.search(_bad_inputs()[kind])
    assert engine.store.count() == counts
    assert top(engine, "RED-APPLE") == before


def test_unknown_sku_is_not_found_and_nothing_is_lost(engine):
    counts = engine.store.count()
    with pytest.raises(NotFoundError):
        engine.remove_product("NO-SUCH-SKU")
    with pytest.raises(NotFoundError):
        engine.remove_image("ARLA-MILK", 999_999)
    assert engine.store.count() == counts


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "RGBA", "LA"])
def test_odd_but_valid_images_are_indexed(engine, mode):
    img = Image.fromarray(product_image((200, 120, 20), "ODD", "box"))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(img.convert("L")).astype(np.uint16) * 257))
    else:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, "TIFF" if mode == "CMYK" else "PNG")
    from core.catalog import Product

    result = engine.add_product(Product(f"ODD-{mode.replace(';', '')}", "Odd"), [("odd", buf.getvalue())])
    assert len(result.image_ids) == 1


def test_all_objects_gives_one_group_per_box(engine):
    canvas = np.full((400, 800, 3), 255, np.uint8)
    canvas[40:360, 20:340] = product_image((200, 20, 20), "APPLE", "ellipse")
    canvas[40:360, 460:780] = product_image((30, 60, 200), "ARLA", "box")
    result = engine.search(jpeg_bytes(canvas), k=3, all_objects=True)
    assert len(result.analysis.boxes) >= 2
    assert len(result.groups) == len(result.analysis.boxes)
    firsts = {g.matches[0].sku for g in result.groups}
    assert {"RED-APPLE", "ARLA-MILK"} <= firsts


def test_catalogue_images_keep_the_detectors_masks_unless_at_index_asks_for_teacher_masks(settings, real_stages):
    """With a segmenting detector (the shipped one), indexing keeps its masks by default; with
    ``background.at_index`` each box is masked by IS-Net instead, while a query keeps the detector's
    mask; the two analyses are cached apart."""
    if not getattr(real_stages.detector, "own_masks", False):
        pytest.skip("the default detector gives no masks of its own")
    data = jpeg_bytes(product_image(*CATALOGUE["ARLA-MILK"], size=320))
    regions = settings.fusion.index_regions
    assert settings.background.at_index is False
    eng = Engine(settings, real_stages)
    try:
        _, indexed, _ = eng.analyse(data, "a.jpg", regions, use_cache=True, for_index=True)
        assert indexed.boxes and "background" not in indexed.timings
    finally:
        eng.close()
    teacher = settings.model_copy(update={"data": settings.data.parent / "teacher",
                                          "background": settings.background.model_copy(update={"at_index": True})})
    eng = Engine(teacher, real_stages)
    try:
        _, indexed, _ = eng.analyse(data, "a.jpg", regions, use_cache=True, for_index=True)
        _, query, _ = eng.analyse(data, "a.jpg", regions, use_cache=True)
        assert indexed.boxes and "background" in indexed.timings
        assert "background" not in query.timings
        _, again, _ = eng.analyse(data, "a.jpg", regions, use_cache=True, for_index=True)
        assert again.timings == indexed.timings  # the index analysis, from the cache
    finally:
        eng.close()


def test_a_catalogue_with_shop_photos_ranks_with_the_weights_tuned_for_one(engine, settings, real_stages):
    import json

    from pipeline.tuned import tuned_key

    name = real_stages.embedder.name
    catalogue_weights = {"embedding": 0.6, "colour": 0.4, "tags": 0.0, "text": 0.0, "verify": 0.0}
    photo_weights = {"embedding": 1.0, "colour": 0.0, "tags": 0.0, "text": 0.0, "verify": 0.0}
    engine.store.set_meta(tuned_key(name), json.dumps({"weights": catalogue_weights}))
    engine.store.set_meta(tuned_key(name, photos=True), json.dumps({"weights": photo_weights, "sku_images": 3}))
    engine.close()
    one_picture_each = Engine(settings, real_stages)  # as many images as products: G1's weights
    # the semantic weight is never tuned (photos have no typed words): the one set for it is added
    semantic = {"semantic": settings.fusion.weights.semantic}
    assert one_picture_each.default_weights == {**catalogue_weights, **semantic} and one_picture_each.sku_images == 1
    product = one_picture_each.store.get_product("LIME")
    one_picture_each.add_product(product, [("shelf.jpg", query_photo("LIME"))])
    one_picture_each.close()
    with_photos = Engine(settings, real_stages)
    assert with_photos.default_weights == {**photo_weights, **semantic} and with_photos.sku_images == 3
    assert top(with_photos, "LIME")[0] == "LIME"  # its two images vote
    with_photos.close()


def test_a_read_only_engine_searches_beside_the_writer_and_refuses_writes(engine, settings, real_stages):
    reader = Engine(settings, real_stages, read_only=True)
    try:
        assert top(reader, "ARLA-MILK") == top(engine, "ARLA-MILK")
        with pytest.raises(StorageError, match="read-only"):
            reader.remove_product("ARLA-MILK")
    finally:
        reader.close()
    assert "ARLA-MILK" in [p.sku for p in engine.store.list_products()]
    assert not (settings.data / "index" / "vectors.faiss.tmp").exists()


def test_a_read_only_engine_needs_a_catalogue(tmp_path, real_stages):
    with pytest.raises(NotFoundError, match="no catalogue"):
        Engine(Settings(data=tmp_path / "nothing"), real_stages, read_only=True)


def test_indexing_analyses_ahead_in_workers_and_writes_in_order(settings, real_stages, tmp_path):
    folder = make_catalogue(tmp_path / "catalog")
    (folder / "broken.jpg").write_bytes(b"not a picture")
    source = read_catalog(folder)
    order = [e.product.sku for e in source.entries]
    ahead = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"workers": 2, "ahead": 1})})
    eng = Engine(ahead, real_stages)
    try:
        seen: list[str] = []

        def stop_after_two(sku: str) -> None:
            seen.append(sku)
            if len(seen) == 2:
                raise KeyboardInterrupt  # a stop between entries

        with pytest.raises(KeyboardInterrupt):
            index_catalog(eng, source, stop_after_two)
        assert seen == order[:2]
        written = {p.sku for p in eng.store.list_products(limit=-1)}
        assert written == set(order[:2]) - {"broken"}  # later entries analysed ahead are not written

        seen.clear()
        report = index_catalog(eng, read_catalog(folder), seen.append)
        assert seen == order  # every entry, in the source's order
        assert sorted(report.indexed) == sorted(set(CATALOGUE) - written) and sorted(report.unchanged) == sorted(written)
        assert [s.item for s in report.skipped] == ["broken: broken.jpg", "broken"]
        assert {p.sku for p in eng.store.list_products(limit=-1)} == set(CATALOGUE)
    finally:
        eng.close()


def test_an_import_gives_way_to_a_photo_search_being_analysed(settings, real_stages, tmp_path):
    folder = make_catalogue(tmp_path / "catalog")
    patient = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"search_first_s": 60.0})})
    eng = Engine(patient, real_stages)
    try:
        done: list[object] = []
        with eng.search_first.searching():  # a shopper's photo is being analysed
            importer = threading.Thread(target=lambda: done.append(index_catalog(eng, read_catalog(folder))))
            importer.start()
            time.sleep(1.0)
            assert importer.is_alive() and eng.store.count()[0] == 0  # nothing analysed or written meanwhile
        importer.join(300)
        assert not importer.is_alive() and eng.store.count()[0] == len(CATALOGUE)  # then at full speed
    finally:
        eng.close()


def test_a_picture_prepared_for_a_write_outlives_a_delete_of_its_other_owner(engine, catalogue_dir):
    """An import prepares LIME's picture for a new SKU (file stored, nothing written yet); a merchant
    deletes LIME meanwhile: the file stays for the write that follows, and goes with its last owner."""
    from core.catalog import Product

    data = (catalogue_dir / "LIME.jpg").read_bytes()
    prepared = engine.prepare_image("lime.jpg", data)
    path = engine.data / prepared.file
    assert path.is_file() and [im.file for im in engine.store.images("LIME")] == [prepared.file]
    engine.remove_product("LIME")
    assert path.is_file()  # pinned: the import has not written it yet
    engine.write_prepared(Product("LIME-AGAIN", "Lime again"), [prepared])
    assert engine.store.images("LIME-AGAIN")[0].file == prepared.file and path.is_file()
    engine.remove_product("LIME-AGAIN")
    assert not path.exists()  # no owner and no pin left: the file goes


def test_a_prepared_picture_that_is_never_written_does_not_keep_its_file(engine, catalogue_dir):
    data = (catalogue_dir / "LIME.jpg").read_bytes()
    prepared = engine.prepare_image("lime.jpg", data)
    engine.release_prepared([prepared])  # e.g. the SKU was taken
    engine.remove_product("LIME")
    assert not (engine.data / prepared.file).exists()


def test_image_files_can_live_in_a_folder_of_their_own(settings, real_stages, tmp_path, catalogue_dir):
    """``files.root`` (a shared mount, say): files go there, not into the data directory, and the
    catalogue finds, searches, re-reads and deletes them there."""
    from core.catalog import Product

    shared = tmp_path / "shared-images"
    elsewhere = settings.model_copy(update={"files": settings.files.model_copy(update={"root": shared})})
    eng = Engine(elsewhere, real_stages)
    try:
        eng.add_product(Product("LIME", "Lime"), [("lime.jpg", (catalogue_dir / "LIME.jpg").read_bytes())])
        rel = eng.store.images("LIME")[0].file
        assert (shared / rel).is_file() and not (eng.data / rel).exists()
        assert eng.files.path(rel) == shared / rel
        assert eng.search(query_photo("LIME"), k=1).groups[0].matches[0].sku == "LIME"
        eng.remove_product("LIME")
        assert not (shared / rel).exists()
    finally:
        eng.close()


def test_a_milvus_collection_of_another_catalogue_is_refused(engine, settings, real_stages, tmp_path, request):
    if not settings.index.uri:
        pytest.skip("only a shared index can belong to another catalogue")
    lime = engine.store.get_product("LIME")
    engine.close()
    other = deployment("postgres+milvus", tmp_path / "other", request)
    with pytest.raises(ConflictError, match="holds vectors this catalogue does not"):  # an empty catalogue
        Engine(other.model_copy(update={"index": settings.index}), real_stages)
    eng = Engine(other, real_stages)  # a catalogue of its own, whose ids are the first one's
    eng.add_product(lime, [("shelf.jpg", shelf_photo("LIME"))])
    eng.close()
    with pytest.raises(ConflictError, match="holds vectors this catalogue does not"):
        Engine(settings.model_copy(update={"index": other.index}), real_stages)
    again = Engine(settings, real_stages)
    assert top(again, "LIME")[0] == "LIME"  # nothing was lost to either
    again.close()


def test_filtered_searches_give_the_same_answers_on_every_deployment(engine):
    """Category, brand, tag, price and colour filters, by photo and by words: the expected SKUs
    (the same lists on SQLite + FAISS, PostgreSQL + FAISS and PostgreSQL + Milvus)."""
    from core.catalog import Product
    from core.filters import SearchFilters

    meta = {"ARLA-MILK": ("dairy", "Arla", ("organic",), 1.5), "OATLY-OAT": ("dairy", "Oatly", ("vegan",), 2.5),
            "RED-APPLE": ("fruit", "", ("organic",), 0.5), "LIME": ("fruit", "", (), 0.3)}
    with engine.write_lock():
        for sku, (category, brand, tags, price) in meta.items():
            old = engine.store.get_product(sku)
            engine.add_product(Product(sku, old.title, brand, category, tags, price), [])

    def skus(data, text, **filters) -> list[str]:
        result = engine.search(data, text, k=4, filters=SearchFilters(**filters))
        return sorted(m.sku for m in result.groups[0].matches)

    assert skus(query_photo("LIME"), None, category="fruit") == ["LIME", "RED-APPLE"]
    assert skus(query_photo("LIME"), None, brand="oatly") == ["OATLY-OAT"]
    assert skus(query_photo("ARLA-MILK"), None, tags=("organic",)) == ["ARLA-MILK", "RED-APPLE"]
    assert skus(query_photo("ARLA-MILK"), None, price_min=1.0, price_max=2.0) == ["ARLA-MILK"]
    assert skus(query_photo("RED-APPLE"), None, colour="red") == ["RED-APPLE"]
    assert skus(None, "product", category="dairy") == ["ARLA-MILK", "OATLY-OAT"]
    assert skus(None, "lime", category="dairy") == []
    assert engine.facet_counts().categories == {"dairy": 2, "fruit": 2}
    with engine.write_lock():  # a change of category alone (no new picture) moves LIME between filters
        old = engine.store.get_product("LIME")
        engine.add_product(Product("LIME", old.title, "", "dairy", (), 0.3), [])
    assert "LIME" in skus(query_photo("LIME"), None, category="dairy")
    assert "LIME" not in skus(query_photo("LIME"), None, category="fruit")
    if engine.view.index.filters_inside:  # Milvus filters by itself: LIME's vectors carry the new category
        lime = engine.view.vector_owner.of_sku("LIME")
        query = engine.view.index.reconstruct(lime[:1])
        assert lime[0] in engine.view.index.search(query, 50, SearchFilters(category="dairy"))[1]
        assert lime[0] not in engine.view.index.search(query, 50, SearchFilters(category="fruit"))[1]
