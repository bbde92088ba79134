"""ORB keypoints + RANSAC: copies (crop, turn, resize) verify; other images do not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.settings import KeypointSettings
from features.keypoints_orb import OrbVerifier
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


def test_a_variant_sharing_most_keypoints_is_contradicted_by_its_pixels(verifier):
    """Same carton, other flavour: most of the picture (and its keypoints) is shared, but one
    block inside it differs; a copy under brightness, contrast and saturation changes does not."""
    from PIL import ImageEnhance

    img = textured(13)
    variant = img.copy()
    variant[90:210, 120:280] = textured(113)[90:210, 120:280]  # a sixth of the picture, in its middle
    base = verifier.keypoints(img)
    v = verifier.verify(base, verifier.keypoints(variant))
    assert v.inliers >= 40 and v.differing is not None and v.differing > 0.15
    assert verifier.contradicts(v) and not verifier.accepts(v)
    pil = Image.fromarray(img)
    jittered = ImageEnhance.Color(ImageEnhance.Contrast(ImageEnhance.Brightness(pil).enhance(1.25))
                                  .enhance(0.85)).enhance(0.75)
    copy = verifier.verify(base, verifier.keypoints(np.asarray(jittered)))
    assert copy.differing is not None and copy.differing < 0.05
    assert not verifier.contradicts(copy) and verifier.accepts(copy)


def test_frames_are_compared_whole_when_keypoints_cannot_place_them(verifier):
    """Two smooth pictures of one layout (a plain fruit, another fruit): too few keypoints to
    place one on the other, so the frames are laid over each other as they are."""

    def smooth(colour) -> np.ndarray:
        img = Image.new("RGB", (300, 240), "white")
        ImageDraw.Draw(img).ellipse((60, 40, 240, 200), fill=colour)
        return np.asarray(img)

    red = smooth((200, 30, 20))
    copy = np.asarray(Image.fromarray(red).resize((200, 160)))
    other = np.asarray(Image.fromarray(smooth((200, 30, 20))).transpose(Image.Transpose.FLIP_TOP_BOTTOM))
    other = other.copy()
    other[150:240] = (250, 240, 60)  # a different lower half
    kr, kc, ko = (verifier.keypoints(x) for x in (red, copy, other))
    assert verifier.verify(kr, kc).differing is None  # nothing to place them by
    assert not verifier.frames_differ(kr, kc)
    assert verifier.frames_differ(kr, ko)
