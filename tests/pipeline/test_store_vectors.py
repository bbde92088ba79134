"""Vectors stored in float16: read back close to what was written, older float32 rows still read,
and on real embeddings the neighbours are those of float32 (also through the 4-bit IVF codes)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from core.errors import StorageError
from core.settings import IndexSettings
from fusion.faiss_index import FaissIndex
from pipeline.store import decode_vectors, encode_vector
from tests.conftest import DATASETS


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_float16_rows_read_back_within_rounding_and_take_half_the_bytes():
    vecs = unit_rows(20, 1280)
    blobs = [encode_vector(v) for v in vecs]
    assert {len(b) for b in blobs} == {2 * 1280}
    back = decode_vectors(blobs, 1280)
    assert back.dtype == np.float32 and back.shape == (20, 1280)
    assert np.abs(back - vecs).max() < 1e-3
    assert np.abs((back * vecs).sum(axis=1) - 1).max() < 1e-3


def test_float32_rows_of_older_catalogues_and_mixed_rows_still_read():
    vecs = unit_rows(3, 16)
    old = [np.ascontiguousarray(v, np.float32).tobytes() for v in vecs]
    assert np.array_equal(decode_vectors(old, 16), vecs)
    mixed = decode_vectors([old[0], encode_vector(vecs[1]), old[2]], 16)
    assert np.array_equal(mixed[0], vecs[0]) and np.abs(mixed[1] - vecs[1]).max() < 1e-3
    assert decode_vectors([], 16).shape == (0, 16)
    with pytest.raises(StorageError, match="do not fit dimension 16"):
        decode_vectors([b"\x00" * 10], 16)


@pytest.mark.dataset
def test_real_embeddings_find_the_same_neighbours_in_float16(real_stages):
    """The grocery catalogue's 81 pictures against 40 shopper photos, whole-image embeddings."""
    from PIL import Image

    root = DATASETS / "grocery"
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"{root} is not there")
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    catalogue = [r["path"] for r in rows if r["split"] == "catalog"]
    photos = [r["path"] for r in rows if r["split"] == "train"][::40][:40]

    def embed(paths: list[str]) -> np.ndarray:
        images = [np.asarray(Image.open(root / p).convert("RGB")) for p in paths]
        vecs, _ = real_stages.embedder.embed(images)
        return np.asarray(vecs, np.float32)

    gallery, queries = embed(catalogue), embed(photos)
    half = decode_vectors([encode_vector(v) for v in gallery], gallery.shape[1])
    exact = np.argsort(-(queries @ gallery.T), axis=1)[:, :10]
    compact = np.argsort(-(queries @ half.T), axis=1)[:, :10]
    assert np.array_equal(exact[:, 0], compact[:, 0])  # the same best match for every photo
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, compact)])
    assert overlap >= 0.99, overlap
    # the large-catalogue index: 4-bit codes pick the candidates, the float16 vectors re-rank them
    ids = np.arange(len(half), dtype=np.int64)
    index = FaissIndex.build(half.shape[1], IndexSettings(kind="ivf-sq4", nprobe=64, rerank=10, use_gpu="never"),
                             ids, half, exact=lambda wanted: half[wanted])
    _, coded = index.search(queries, 10)
    assert np.array_equal(exact[:, 0], coded[:, 0])
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, coded)])
    assert overlap >= 0.95, overlap
