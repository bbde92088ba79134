"""SIFT + RANSAC verification: a rendered label against its own photo-like view and another label,
and real shelf photos against their catalogue picture and a look-alike's (dataset-marked)."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.protocols import GeometricVerifier
from core.settings import VerifySettings
from core.types import LocalFeatures
from features.keypoints_sift import SiftVerifier
from tests.conftest import DATASETS, FONT


def label(words: list[str], colour: str, seed: int) -> np.ndarray:
    """A carton front: coloured ground, a pattern of shapes and lines of printed words."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (360, 480), colour)
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x, y, r = (int(v) for v in rng.integers([0, 0, 8], [360, 480, 40]))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    for i, word in enumerate(words):
        draw.text((20, 40 + 80 * i), word, font=ImageFont.truetype(FONT, 44 - 4 * i), fill="white")
    return np.asarray(image)


def shelf_view(image: np.ndarray) -> np.ndarray:
    """The label as a phone sees it: smaller, turned in perspective, on a grey shelf, blurred a little."""
    h, w = image.shape[:2]
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    seen = np.float32([[70, 40], [300, 60], [290, 330], [60, 350]])
    warped = cv2.warpPerspective(image, cv2.getPerspectiveTransform(corners, seen), (380, 400),
                                 borderValue=(128, 128, 128))
    return cv2.GaussianBlur(warped, (3, 3), 0.8)


@pytest.fixture(scope="module")
def verifier() -> SiftVerifier:
    return SiftVerifier(VerifySettings())


def test_is_a_geometric_verifier(verifier: SiftVerifier) -> None:
    assert isinstance(verifier, GeometricVerifier)


def test_a_label_matches_its_own_shelf_view_and_not_another(verifier: SiftVerifier) -> None:
    catalogue = label(["ORANGE", "JUICE", "1 litre"], "#e87511", seed=1)
    other = label(["OAT", "DRINK", "barista"], "#1a5e9a", seed=2)
    query = verifier.features(shelf_view(catalogue))
    same = verifier.inliers(query, verifier.features(catalogue))
    different = verifier.inliers(query, verifier.features(other))
    assert same >= VerifySettings().full_inliers and verifier.score(same) == 1.0
    assert different <= VerifySettings().min_inliers and verifier.score(different) == 0.0


def test_features_round_trip_and_bound(verifier: SiftVerifier) -> None:
    image = label(["ORANGE", "JUICE"], "#e87511", seed=1)
    big = cv2.resize(image, (720, 960))
    f = verifier.features(big)
    assert 0 < len(f) <= VerifySettings().features
    assert f.points.max() <= VerifySettings().side  # found on the image scaled to the side
    back = LocalFeatures.from_bytes(f.to_bytes())
    assert np.array_equal(back.descriptors, f.descriptors) and np.allclose(back.points, f.points, atol=0.25)
    with pytest.raises(ValueError, match="not a SIFT feature record"):
        LocalFeatures.from_bytes(f.to_bytes()[:-1])


def test_plain_images_have_no_evidence(verifier: SiftVerifier) -> None:
    flat = verifier.features(np.full((200, 200, 3), 200, np.uint8))
    assert len(flat) == 0
    assert verifier.inliers(flat, verifier.features(label(["ORANGE"], "#e87511", seed=1))) == 0
    assert verifier.score(0) == 0.0 and verifier.score(10_000) == 1.0


def _photos(product: str, n: int) -> list[np.ndarray]:
    root = DATASETS / "grocery"
    if not (root / "manifest.csv").exists():
        pytest.skip(f"no grocery data set in {root}")
    with open(root / "manifest.csv") as fh:
        paths = [r["path"] for r in csv.DictReader(fh) if r["split"] == "train" and r["class_name"] == product]
    return [np.asarray(Image.open(root / p).convert("RGB")) for p in paths[:n]]


def _packshot(product: str) -> np.ndarray:
    return np.asarray(Image.open(DATASETS / "grocery" / "catalog" / f"{product}.jpg").convert("RGB"))


@pytest.mark.dataset
@pytest.mark.parametrize(("product", "other", "apart"), [
    ("Valio-Vanilla-Yoghurt", "Arla-Natural-Yoghurt", True),  # another brand: no evidence at all
    ("Arla-Standard-Milk", "Arla-Medium-Fat-Milk", False),  # the same brand's other milk: less evidence
])
def test_shelf_photos_match_their_packshot_more_than_a_look_alike(verifier: SiftVerifier, product: str, other: str,
                                                                  apart: bool) -> None:
    mine, theirs = verifier.features(_packshot(product)), verifier.features(_packshot(other))
    counts = [(verifier.inliers(q, mine), verifier.inliers(q, theirs))
              for q in map(verifier.features, _photos(product, 4))]
    assert all(a > b for a, b in counts), counts
    if apart:
        assert all(verifier.score(a) > 0 and verifier.score(b) == 0 for a, b in counts), counts
