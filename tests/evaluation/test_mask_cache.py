"""Masks persist by pixel digest: the wrapped remover runs once per distinct image."""

from __future__ import annotations

import numpy as np

from core.types import Mask
from evaluation.mask_cache import PersistentMasks
from pipeline.database import FeatureCache


class CountingRemover:
    def __init__(self):
        self.calls = 0

    def warmup(self):
        pass

    def remove(self, image):
        self.calls += 1
        return Mask((image[..., 0] > 100).astype(np.float32))


def test_masks_survive_a_new_cache_object(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    image[5:15, 10:20] = 200
    inner = CountingRemover()
    first = PersistentMasks(inner, FeatureCache(tmp_path / "f.sqlite3"), "m").remove(image)
    again = PersistentMasks(inner, FeatureCache(tmp_path / "f.sqlite3"), "m").remove(image.copy())
    assert inner.calls == 1
    assert np.array_equal(first.alpha, again.alpha)
    PersistentMasks(inner, FeatureCache(tmp_path / "f.sqlite3"), "other-model").remove(image)
    assert inner.calls == 2


def test_uncached_block_computes_for_real(tmp_path):
    image = np.full((20, 30, 3), 200, np.uint8)
    inner = CountingRemover()
    masks = PersistentMasks(inner, FeatureCache(tmp_path / "f.sqlite3"), "m")
    masks.remove(image)
    with masks.uncached():
        masks.remove(image)
        masks.remove(image)
    masks.remove(image)
    assert inner.calls == 3
