"""Embedder training data: held-out split, batches per SKU, views and augmentations (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidInputError
from training.embedder_data import SkuBatches, TrainImage, augment, held_out_sha256, split_holdout, view, visit_cluster


def items(per_sku: dict[int, int]) -> list[TrainImage]:
    out, n = [], 0
    for label, count in per_sku.items():
        for i in range(count):
            img = np.full((60, 80, 3), 40 * label, np.uint8)
            out.append(TrainImage(label, img, (10, 10, 50, 40) if i else None, i == 0, n))
            n += 1
    return out


def test_holdout_takes_the_last_photos_of_each_sku_and_keeps_primaries():
    data = items({0: 11, 1: 6, 2: 3})
    train, held = split_holdout(data, 0.2)
    assert len(train) + len(held) == len(data)
    assert all(it.primary for it in data if it.primary and it in train)
    assert [it.image_id for it in held if it.label == 0] == [9, 10]  # the last 2 of 10 photos
    assert [it.label for it in held].count(1) == 1 and 2 not in {it.label for it in held}  # too few to hold out
    assert split_holdout(data, 0) == (data, [])


def _visits(rng, sizes: list[int], dim: int = 16) -> np.ndarray:
    """Unit vectors in tight clusters around one random centre per visit."""
    rows = [c + 0.05 * rng.standard_normal((n, dim)) for c, n in zip(rng.standard_normal((len(sizes), dim)), sizes)]
    v = np.concatenate(rows)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_visit_holdout_takes_one_whole_cluster_of_a_skus_photos():
    rng = np.random.default_rng(0)
    v = _visits(rng, [9, 3])  # a long visit and a short one
    assert visit_cluster(v, 0.1) == [9, 10, 11]
    # one visit and a stray photo: no split of these has a cluster between the share and half
    assert visit_cluster(_visits(rng, [11, 1]), 0.2) == []
    assert visit_cluster(v[:7], 0.1) == []  # too few photos to tell visits apart
    assert visit_cluster(_visits(rng, [6, 6]), 0.1) in ([0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11])


def test_a_visit_holdout_keeps_primaries_and_holds_whole_visits_out_per_sku():
    rng = np.random.default_rng(1)
    data = items({0: 13, 1: 5})
    vectors = np.concatenate([_visits(rng, [10, 3]), _visits(rng, [5])])  # SKU 0: primary + 9, then 3 apart
    train, held = split_holdout(data, 0.1, vectors)
    assert [it.image_id for it in held] == [10, 11, 12]  # SKU 1 has too few photos to hold a visit out
    assert [it.image_id for it in train] == list(range(10)) + [13, 14, 15, 16, 17]


def test_held_out_photos_are_known_from_the_stored_catalogue_alone():
    from types import SimpleNamespace

    data = items({0: 11, 1: 6, 2: 3})
    stored = [SimpleNamespace(id=it.image_id, sku=f"SKU{it.label}", sha256=f"h{it.image_id}") for it in data]
    assert held_out_sha256(stored, 0.2) == {f"h{it.image_id}" for it in split_holdout(data, 0.2)[1]}
    assert held_out_sha256(stored, 0) == set()


def test_batches_draw_several_images_of_each_sku_with_its_primary():
    data = items({0: 5, 1: 2, 2: 8, 3: 4})
    batches = SkuBatches(data, skus=2, per_sku=3, with_primary=True, seed=1)
    drawn = list(batches)
    assert len(drawn) == len(batches) == 4  # 19 images / (2 x 3)
    for batch in drawn:
        assert len(batch) == 6
        labels = [data[i].label for i in batch]
        for label in set(labels):
            assert labels.count(label) == 3
            assert any(data[i].primary and data[i].label == label for i in batch)
    with pytest.raises(InvalidInputError, match="at least 2 SKUs"):
        SkuBatches(items({0: 5}), 2, 2, True, 0)
    with pytest.raises(InvalidInputError, match="at least 2 images per SKU"):
        SkuBatches(data, 2, 1, True, 0)


def test_views_and_augmentations_stay_rgb_images_of_the_product():
    rng = np.random.default_rng(0)
    item = items({1: 2})[1]
    crops = {view(item, rng, crop_share=1.0).shape for _ in range(20)}
    assert all(40 <= w <= 48 and 30 <= h <= 36 for h, w, _ in crops)  # the box, loosened by up to 10%
    assert view(item, rng, crop_share=0.0).shape == (60, 80, 3)
    red = np.zeros((60, 80, 3), np.uint8)
    red[..., 0] = 200
    for _ in range(20):
        out = augment(red, rng)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and min(out.shape[:2]) >= 8
        inner = out[out.shape[0] // 2, out.shape[1] // 2]
        assert inner[0] > inner[1] and inner[0] > inner[2]  # still red: hue is never changed


def test_visit_vectors_embed_whole_images_in_batches_normalised():
    from training.embedder import visit_vectors

    class Sums:
        def embed(self, images):
            return np.stack([np.full(4, float(im.sum() % 97 + 1)) for im in images]), []

    data = items({0: 5, 1: 4})
    seen = []
    v = visit_vectors([it.image for it in data], Sums(), lambda what, done, total: seen.append((what, done, total)),
                      batch=4)
    assert v.shape == (9, 4) and np.allclose(np.linalg.norm(v, axis=1), 1)
    assert seen == [("visits", 4, 9), ("visits", 8, 9), ("visits", 9, 9)]
