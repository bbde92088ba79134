"""The vector benchmark's real data: growing real vectors keeps them unit-length and near their real
neighbours, embeddings are cached by content, Fashion-MNIST is read from Debian's package."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evaluation.real_vectors import FASHION_MNIST, embed_cached, fashion_mnist, folder_images, grow
from pipeline.database import FeatureCache


def clustered(n_clusters: int = 20, per: int = 20, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    points = np.repeat(centres, per, axis=0) + 0.1 * rng.normal(size=(n_clusters * per, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def test_a_size_below_the_real_count_is_a_subset_of_the_real_vectors():
    real = clustered()
    some = grow(real, 50)
    assert some.shape == (50, 32)
    assert all(any(np.array_equal(row, r) for r in real) for row in some)


def test_grown_vectors_are_unit_and_lie_between_real_neighbours():
    real = clustered()
    grown = grow(real, 3000, seed=1)
    assert grown.shape == (3000, 32) and np.array_equal(grown[:len(real)], real)
    assert np.allclose(np.linalg.norm(grown, axis=1), 1, atol=1e-5)
    new = grown[len(real):]
    best = (new @ real.T).max(axis=1)
    assert best.min() > 0.9  # every new point sits close to a real one, inside its cluster
    random = np.random.default_rng(2).normal(size=(100, 32))
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    assert (random @ real.T).max(axis=1).mean() < best.mean() - 0.3  # unlike random directions


class CountingEmbedder:
    name, dim = "counting-test", 4

    def __init__(self) -> None:
        self.seen = 0

    def embed(self, images):
        self.seen += len(images)
        vecs = np.asarray([[im.mean(), im.std(), im.shape[0], 1.0] for im in images], np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True), []


def test_embeddings_are_cached_by_content(tmp_path):
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (200, 0, 0)]):  # the third is a copy of the first
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"{i}.png")
    items = folder_images([tmp_path])
    assert items[0][0] == items[2][0] and items[0][0] != items[1][0]
    cache, embedder = FeatureCache(tmp_path / "cache" / "v.sqlite3"), CountingEmbedder()
    first = embed_cached(items, embedder, cache)
    assert embedder.seen == 3 and np.array_equal(first[0], first[2])
    again = embed_cached(items, embedder, cache)
    assert embedder.seen == 3 and np.array_equal(first, again)


def test_fashion_mnist_reads_from_the_debian_package():
    if not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{FASHION_MNIST} is not there (Debian's dataset-fashion-mnist)")
    items = fashion_mnist("t10k")
    assert len(items) == 10_000
    image = items[0][1]()
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8 and image.max() > 0
