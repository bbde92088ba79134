"""bench-scale's assembly: copies of real analyses with vectors of their own, through the store's writes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.errors import InvalidInputError
from core.settings import Settings
from evaluation.bench_scale import ASSEMBLED_KEY, MARKER, ScaleRow, _assembled, assemble, bench_size, scale_markdown
from pipeline.store import CatalogStore
from tests.pipeline.test_store import DIM, image


def test_assembly_writes_three_images_a_product_each_with_its_own_vectors(tmp_path):
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    models = [(image("a", words=("OATLY",)), "Oat drink"), (image("b", regions=("full",)), "Red apple")]
    vectors = np.random.default_rng(0).normal(size=(20, DIM)).astype(np.float32)
    written = assemble(store, models, vectors, 7)
    assert written == 2 + 1 + 2 + 1 + 2 + 1 + 2  # a: full and crop, b: full only
    products, images, stored = store.count()
    assert (products, images, stored) == (3, 7, written)
    ids, vecs, _ = store.vectors(DIM)
    assert np.allclose(vecs, vectors[:written], atol=1e-2)  # float16 in the store
    assert len({im.sha256 for im in store.images()}) == 7
    assert [p.sku for p in store.list_products()] == ["SCALE-0000000", "SCALE-0000001", "SCALE-0000002"]
    store.close()


def test_a_folder_not_made_by_bench_scale_is_left_alone(tmp_path):
    (tmp_path / "precious.txt").write_text("a shop's data")
    with pytest.raises(InvalidInputError, match="not made by bench-scale"):
        bench_size(Settings(data=tmp_path), None, 10, lambda: np.zeros((1, DIM)), [], [], print)  # type: ignore[arg-type]
    assert (tmp_path / "precious.txt").read_text() == "a shop's data" and not (tmp_path / MARKER).exists()
    assert "| images |" in scale_markdown([])


def test_the_table_has_vector_search_and_the_protocol_rows():
    row = ScaleRow(100_000, 200_000, "ivf-sq8", 60, 80, 7, 300, 3300, 25_000, 2_700, 4.5, 4.8, 1.3, 190, 380,
                   2.1, 3.4, "G1", 296, 0.41, 0.42, 0.97, 0.981, 64, (12.0, 15.0),
                   ((256, 0.42, 0.99, 40.0, 50.0, 0.998),))
    md = scale_markdown([row])
    assert "| 2.1 / 3.4 | 190.0 / 380.0 | 60 |" in md
    assert ("| 100,000 | G1 (ivf-sq8, nprobe 64; vector search 12 / 15 ms) | 296 | 0.410 | 0.420 | -0.010 | 97.0% "
            "| 0.981 |") in md
    assert "| 100,000 | G1 (ivf-sq8, nprobe 256; vector search 40 / 50 ms) | 296 | 0.420 | 0.420 | +0.000 | 99.0% | 0.998 |" in md
    reused = scale_markdown([dataclasses.replace(row, assemble_s=float("nan"))])
    assert "| 190.0 / 380.0 | reused |" in reused


def test_only_a_finished_assembly_of_the_same_size_is_reused(tmp_path):
    folder = tmp_path / "1000"
    folder.mkdir()
    assert not _assembled(folder, 7)
    (folder / MARKER).write_text("made by bench-scale")
    store = CatalogStore(folder / "catalog.sqlite3")
    assemble(store, [(image("a"), "Oat drink")], np.random.default_rng(0).normal(size=(20, DIM)), 7)
    store.close()
    assert not _assembled(folder, 7)  # cut short before it was marked finished
    store = CatalogStore(folder / "catalog.sqlite3")
    store.set_meta(ASSEMBLED_KEY, "7")
    store.close()
    assert _assembled(folder, 7) and not _assembled(folder, 8)
