"""Perceptual hashes: stable under resize, JPEG and light changes; the mirror/turn variants match flips."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from core.types import ImageHashes, hamming
from features.perceptual_hash import PerceptualHasher
from tests.features.test_keypoints_orb import textured


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.fixture(scope="module")
def hasher():
    return PerceptualHasher()


def test_copies_hash_close_and_other_images_far(hasher):
    img = textured(1)
    h = hasher.hash(img)
    small = np.asarray(Image.fromarray(img).resize((150, 110)))
    darker = np.asarray(ImageEnhance.Brightness(Image.fromarray(img)).enhance(0.8))
    for copy in (small, _jpeg(img, 35), darker):
        assert hamming(h.phash, hasher.hash(copy).phash) <= 6
    others = [hamming(h.phash, hasher.hash(textured(s)).phash) for s in range(2, 8)]
    assert min(others) > 12


def test_a_mirrored_or_turned_copy_matches_a_variant(hasher):
    img = textured(3)
    h = hasher.hash(img)
    for copy in (img[:, ::-1], np.rot90(img), np.rot90(img, 2)):
        c = hasher.hash(np.ascontiguousarray(copy))
        assert hamming(h.phash, c.phash) > 12  # upright, the copy looks different
        assert min(hamming(v, h.phash) for v in c.phash_variants) <= 6


def test_hashes_round_trip_and_validate():
    h = ImageHashes(2**64 - 1, 0, (1, 2, 3, 4))
    assert ImageHashes.from_json(h.to_json()) == h
    with pytest.raises(ValueError, match="64-bit"):
        ImageHashes(2**64, 0)
    with pytest.raises(ValueError, match="64-bit"):
        ImageHashes(-1, 0)


def test_hue_histogram_tells_colour_variants_apart(hasher):
    red = np.zeros((100, 100, 3), np.uint8)
    red[..., 0] = 220
    green = red[..., [1, 0, 2]].copy()
    grey = np.full((100, 100, 3), 128, np.uint8)
    hr, hg, hgrey = hasher.hash(red), hasher.hash(green), hasher.hash(grey)
    assert hr.chroma == pytest.approx(1.0) and hgrey.chroma == 0.0
    assert sum(hr.hues) == pytest.approx(1.0) and sum(hgrey.hues) == 0.0
    assert sum(min(a, b) for a, b in zip(hr.hues, hg.hues)) == 0.0
    assert ImageHashes.from_json(hr.to_json()) == hr
