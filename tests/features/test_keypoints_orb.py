"""ORB keypoints + RANSAC: copies (crop, turn, resize) verify; other images do not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from features.keypoints_orb import OrbVerifier
from pipeline.settings import KeypointSettings
from tests.conftest import FONT


def textured(seed: int, size: tuple[int, int] = (400, 300)) -> np.ndarray:
    """A busy made-up picture: random shapes and words, different for every seed."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(40):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = (x0, y0, x0 + int(rng.integers(10, 90)), y0 + int(rng.integers(10, 90)))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    font = ImageFont.truetype(FONT, 28)
    for _ in range(6):
        word = "".join(chr(int(c)) for c in rng.integers(65, 91, 6))
        draw.text((int(rng.integers(0, w - 120)), int(rng.integers(0, h - 30))), word, fill="black", font=font)
    return np.asarray(img)


@pytest.fixture(scope="module")
def verifier():
    return OrbVerifier(KeypointSettings())


def test_copies_verify(verifier):
    img = textured(11)
    pil = Image.fromarray(img)
    copies = [img[20:280, 30:370], np.asarray(pil.rotate(8, resample=Image.Resampling.BILINEAR)),
              np.asarray(pil.resize((260, 195)))]
    kp = verifier.keypoints(img)
    assert len(kp) > 100
    for copy in copies:
        v = verifier.verify(kp, verifier.keypoints(np.ascontiguousarray(copy)))
        assert verifier.accepts(v), v


def test_different_images_do_not_verify(verifier):
    kps = [verifier.keypoints(textured(s)) for s in (21, 22, 23)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not verifier.accepts(verifier.verify(kps[a], kps[b]))


def test_a_blank_image_has_no_keypoints_and_never_verifies(verifier):
    blank = verifier.keypoints(np.full((64, 64, 3), 255, np.uint8))
    assert len(blank) == 0
    v = verifier.verify(blank, verifier.keypoints(textured(5)))
    assert v.inliers == 0 and not verifier.accepts(v)


def test_the_same_picture_in_other_colours_matches_but_is_refused(verifier):
    img = textured(12)
    recoloured = np.ascontiguousarray(img[..., [1, 2, 0]])  # every hue turned by a third
    v = verifier.verify(verifier.keypoints(img), verifier.keypoints(recoloured))
    assert v.inliers >= 40 and v.hue_shift > 0.2
    assert not verifier.accepts(v)
    same = verifier.verify(verifier.keypoints(img), verifier.keypoints(img[10:, 10:]))
    assert same.hue_shift < 0.02 and verifier.accepts(same)
