"""The transformed-copy generator used to measure near-duplicate detection."""

from __future__ import annotations

import numpy as np
import pytest

from core.types import Mask
from evaluation.dedup_copies import KINDS, make_copy
from tests.features.test_keypoints_orb import textured


def centre_mask(image: np.ndarray) -> Mask:
    h, w = image.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    alpha[h // 4:3 * h // 4, w // 4:3 * w // 4] = 1
    return Mask(alpha)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_gives_an_rgb_image_and_is_seeded(kind):
    img = textured(7)
    a = make_copy(img, kind, np.random.default_rng(3), centre_mask)
    b = make_copy(img, kind, np.random.default_rng(3), centre_mask)
    assert a.image.dtype == np.uint8 and a.image.ndim == 3 and a.image.shape[2] == 3
    assert np.array_equal(a.image, b.image) and a.jpeg_quality == b.jpeg_quality
    assert 30 <= a.jpeg_quality <= 95
    if kind not in ("jpeg",):
        assert not np.array_equal(a.image, img) or a.image.shape != img.shape


def test_a_crop_keeps_at_least_eighty_percent_of_each_side():
    img = textured(8)
    for seed in range(20):
        c = make_copy(img, "crop", np.random.default_rng(seed)).image
        assert c.shape[0] >= 0.8 * img.shape[0] - 1 and c.shape[1] >= 0.8 * img.shape[1] - 1


def test_background_replacement_keeps_the_masked_pixels():
    img = textured(9)
    c = make_copy(img, "background", np.random.default_rng(0), centre_mask).image
    h, w = img.shape[:2]
    assert np.array_equal(c[h // 4:3 * h // 4, w // 4:3 * w // 4], img[h // 4:3 * h // 4, w // 4:3 * w // 4])
    assert not np.array_equal(c[:h // 8], img[:h // 8])


def test_background_needs_the_mask_stage_and_unknown_kinds_are_refused():
    img = textured(10)
    with pytest.raises(ValueError, match="mask"):
        make_copy(img, "background", np.random.default_rng(0))
    with pytest.raises(ValueError, match="kind"):
        make_copy(img, "sepia", np.random.default_rng(0))
    combined = make_copy(img, "combined", np.random.default_rng(0))  # without a mask: no background step
    assert combined.kind == "combined"
