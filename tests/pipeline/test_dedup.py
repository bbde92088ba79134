"""Near-duplicates with the real stages: a folder, the catalogue, one new photo, the report."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from core.catalog import Product
from pipeline import dedup as dedup_module
from pipeline.catalog_source import read_catalog
from pipeline.dedup import Deduplicator
from pipeline.engine import Engine
from pipeline.indexing import index_catalog
from service.dedup_html import render_report
from tests.conftest import CATALOGUE, DATASETS, jpeg_bytes, make_catalogue, product_image
from tests.features.test_keypoints_orb import textured

pytestmark = [pytest.mark.model, pytest.mark.slow]


def _rotated_crop(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    pil = Image.fromarray(image[h // 10:h - h // 12, w // 12:w - w // 10])
    return np.asarray(pil.rotate(7, resample=Image.Resampling.BILINEAR, fillcolor=(128, 128, 128)))


@pytest.fixture
def folder(tmp_path):
    """Two originals with copies of several kinds, an unrelated image, and a corrupt file."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    a, b = textured(101), textured(102)
    (root / "a.jpg").write_bytes(jpeg_bytes(a))
    (root / "a-same-bytes.jpg").write_bytes(jpeg_bytes(a))
    (root / "sub" / "a-small.jpg").write_bytes(jpeg_bytes(np.asarray(Image.fromarray(a).resize((200, 150))), 40))
    (root / "a-mirror.png").write_bytes(_png(np.ascontiguousarray(a[:, ::-1])))
    (root / "b.jpg").write_bytes(jpeg_bytes(b))
    (root / "b-cropped-turned.jpg").write_bytes(jpeg_bytes(_rotated_crop(b)))
    (root / "other.jpg").write_bytes(jpeg_bytes(textured(103)))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image, not looked at")
    return root


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def engine(settings, real_stages):
    eng = Engine(settings, real_stages)
    yield eng
    eng.close()


def test_folder_groups_each_original_with_its_copies(engine, folder):
    report = Deduplicator(engine).folder(folder).to_json()
    groups = sorted(sorted(im["file"] for im in g["images"]) for g in report["groups"])
    assert groups == [["a-mirror.png", "a-same-bytes.jpg", "a.jpg", "sub/a-small.jpg"],
                      ["b-cropped-turned.jpg", "b.jpg"]]
    layers = {frozenset((p["a"], p["b"])): p["layer"] for g in report["groups"] for p in g["pairs"]}
    assert layers[frozenset(("a.jpg", "a-same-bytes.jpg"))] == "exact"
    assert "phash" in layers.values() and {"visual", "keypoints"} & set(layers.values())
    assert [s["item"] for s in report["skipped"]] == ["broken.jpg"]
    for g in report["groups"]:
        assert set(g) == {"skus", "images", "pairs"} and g["skus"] == []
        for p in g["pairs"]:
            assert set(p) == {"a", "b", "layer", "score"} and 0 < p["score"] <= 1


def test_second_run_reads_signatures_from_the_cache(engine, folder, monkeypatch):
    first = Deduplicator(engine).folder(folder).to_json()

    def no_embedding(images):
        raise AssertionError("embedded again")
    monkeypatch.setattr(engine.stages.embedder, "embed", no_embedding)
    monkeypatch.setattr(engine.stages.hasher, "hash", lambda image: (_ for _ in ()).throw(AssertionError("hashed")))
    assert Deduplicator(engine).folder(folder).to_json() == first


@pytest.fixture
def catalogue_engine(settings, real_stages, tmp_path):
    eng = Engine(settings, real_stages)
    index_catalog(eng, read_catalog(make_catalogue(tmp_path / "catalog")))
    colour, word, shape = CATALOGUE["ARLA-MILK"]
    copy = np.asarray(Image.fromarray(product_image(colour, word, shape)).resize((240, 240)))
    eng.add_product(Product("ARLA-MILK-OLD", title="Arla (old listing)"), [("old.jpg", jpeg_bytes(copy, 60))])
    yield eng
    eng.close()


def test_catalogue_groups_the_skus_that_share_an_image(catalogue_engine):
    report = Deduplicator(catalogue_engine).catalogue().to_json()
    assert [g["skus"] for g in report["groups"]] == [["ARLA-MILK", "ARLA-MILK-OLD"]]
    group = report["groups"][0]
    ids = {im["image_id"] for im in group["images"]}
    assert all(p["a"] in ids and p["b"] in ids for p in group["pairs"])
    assert report["skipped"] == []


def test_a_missing_file_is_skipped_not_fatal(catalogue_engine):
    victim = catalogue_engine.store.images("LIME")[0]
    (catalogue_engine.data / victim.file).unlink()
    # the hashes of indexed images are cached at indexing time: drop them to force a read
    catalogue_engine.store._conn.execute("DELETE FROM features WHERE key LIKE 'hashes:%'")
    report = Deduplicator(catalogue_engine).catalogue().to_json()
    assert [s["item"].split(" ")[0] for s in report["skipped"]] == [f"LIME/{victim.id}"]
    assert [g["skus"] for g in report["groups"]] == [["ARLA-MILK", "ARLA-MILK-OLD"]]


def test_a_photo_is_recognised_as_its_sku_or_as_new(catalogue_engine):
    finder = Deduplicator(catalogue_engine)
    colour, word, shape = CATALOGUE["RED-APPLE"]
    copy = _rotated_crop(product_image(colour, word, shape, size=400))
    report = finder.photo(jpeg_bytes(copy), "upload.jpg").to_json()
    assert [g["skus"] for g in report["groups"]] == [["RED-APPLE"]]
    assert report["groups"][0]["images"][0] == {"sku": None, "image_id": None, "file": "upload.jpg"}
    assert finder.photo(jpeg_bytes(textured(55)), "new.jpg").to_json() == {"groups": [], "skipped": []}


def test_the_html_report_has_thumbnails_and_escapes_names(engine, folder, tmp_path):
    shutil.copy(folder / "a.jpg", folder / "<b>x.jpg")
    report = Deduplicator(engine).folder(folder).to_json()
    page = render_report(report, lambda im: folder / im["file"], "Near-duplicates <test>")
    assert page.count("data:image/jpeg;base64,") >= 6
    assert "&lt;b&gt;x.jpg" in page and "<b>x.jpg" not in page and "&lt;test&gt;" in page
    assert "broken.jpg" in page


@pytest.mark.dataset
def test_ukbench_copies_are_grouped_and_the_corrupt_file_reported(engine):
    from evaluation.dedup_eval import ukbench

    root = DATASETS / "ukbench-dups"
    if not root.is_dir():
        pytest.skip(f"{root} is not there")
    res = ukbench(engine, root)
    assert res["grouped_with_original"] == res["copies"] == 5
    assert res["groups_mixing_originals"] == 0
    assert [s["item"] for s in res["skipped"]] == ["mixed_images/ukbench09268_corrupt.jpg"]
    json.dumps(res)


def _pairs_of(report: dict) -> set[tuple[frozenset, str]]:
    return {(frozenset((p["a"], p["b"])), p["layer"]) for g in report["groups"] for p in g["pairs"]}


def test_the_catalogue_report_is_cached_and_only_new_images_are_looked_at(catalogue_engine, monkeypatch):
    finder = Deduplicator(catalogue_engine)
    first = finder.catalogue().to_json()

    def recompute(*args, **kwargs):
        raise AssertionError("computed again")

    with monkeypatch.context() as m:  # nothing changed: read back, nothing computed
        m.setattr(Deduplicator, "_catalogue_pairs", recompute)
        assert Deduplicator(catalogue_engine).catalogue().to_json() == first

    colour, word, shape = CATALOGUE["RED-APPLE"]
    copy = np.asarray(Image.fromarray(product_image(colour, word, shape)).resize((300, 300)))
    catalogue_engine.add_product(Product("APPLE-COPY", title="apple again"), [("copy.jpg", jpeg_bytes(copy))])
    catalogue_engine.add_product(Product("NEW-THING", title="new"), [("new.jpg", jpeg_bytes(textured(77)))])
    new_ids = {im.id for sku in ("APPLE-COPY", "NEW-THING") for im in catalogue_engine.store.images(sku)}
    looked: list = []
    real_find = dedup_module.find_pairs

    def spy(items, settings, checks=None, progress=None, fresh=None):
        looked.append(fresh)
        return real_find(items, settings, checks, progress, fresh)

    with monkeypatch.context() as m:
        m.setattr(dedup_module, "find_pairs", spy)
        second = Deduplicator(catalogue_engine).catalogue().to_json()
    images = [im.id for im in catalogue_engine.store.image_refs()]
    assert len(looked) == 1 and {images[i] for i in looked[0]} == new_ids  # only the new images
    whole = Deduplicator(catalogue_engine).catalogue(full=True).to_json()
    assert sorted(g["skus"] for g in second["groups"]) == [["APPLE-COPY", "RED-APPLE"], ["ARLA-MILK", "ARLA-MILK-OLD"]]
    assert _pairs_of(second) == _pairs_of(whole)

    catalogue_engine.remove_product("ARLA-MILK-OLD")
    with monkeypatch.context() as m:  # a deletion drops its pairs without computing anything
        m.setattr(Deduplicator, "_catalogue_pairs", recompute)
        third = Deduplicator(catalogue_engine).catalogue().to_json()
    assert [g["skus"] for g in third["groups"]] == [["APPLE-COPY", "RED-APPLE"]]
