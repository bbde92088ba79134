"""The product detector shipped in detectors/weights: present, the file its card describes, loaded
offline by default, and finding products (the training itself is tested in test_training_data.py)."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
from PIL import Image

from core.settings import DetectorSettings, ModelSettings, Settings
from detectors.yolo import YoloDetector
from pipeline.build import SHIPPED_DETECTOR, build_stages
from tests.conftest import DATASETS, product_image

CARD = SHIPPED_DETECTOR.parent / "MODEL_CARD.md"


def test_the_weights_are_shipped_with_their_card() -> None:
    assert SHIPPED_DETECTOR.is_file(), "the shipped detector is part of the project"
    assert SHIPPED_DETECTOR.stat().st_size < 20 * 2**20  # a small model
    card = CARD.read_text()
    sha = re.search(r"sha256 `([0-9a-f]{64})`", card)
    assert sha, "the model card names the weights' sha256"
    assert hashlib.sha256(SHIPPED_DETECTOR.read_bytes()).hexdigest() == sha.group(1)
    for must in ("AGPL-3.0", "skulens detector train", "seed"):
        assert must in card


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> YoloDetector:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))  # nothing ultralytics writes lands in the repo
        det = build_stages(Settings()).detector
        assert type(det) is YoloDetector and det.settings.weights == SHIPPED_DETECTOR  # the default
        det.warmup()
    return det


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.slow
def test_it_segments_a_product_on_a_plain_background(shipped: YoloDetector) -> None:
    """A round, fruit-like product on white. (A flat drawn rectangle with a word on it is often
    boxed by its word alone: real packaging has shading and edges; see MODEL_CARD.md.)"""
    size = 320
    image = product_image((200, 20, 20), "APPLE", "ellipse", size=size)
    m = size // 6
    truth = (m, m, size - m, size - m)
    boxes = shipped.detect(image)
    assert boxes, "no product found"
    best = boxes[0]
    assert _iou((best.x1, best.y1, best.x2, best.y2), truth) > 0.8
    assert shipped.own_masks and best.mask is not None
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= (size / 2 - m) ** 2
    x1, y1, x2, y2 = best.as_int()
    found = np.zeros((size, size), bool)
    found[y1:y2, x1:x2] = best.mask.binary(0.5)
    assert (found & disc).sum() / (found | disc).sum() > 0.8  # mask IoU with the drawn disc


@pytest.mark.slow
@pytest.mark.dataset
def test_it_finds_each_of_several_catalogue_products_in_one_picture(shipped: YoloDetector) -> None:
    """Three real catalogue products pasted side by side on grey: three boxes where they are."""
    catalog = DATASETS / "grocery" / "catalog"
    if not catalog.is_dir():
        pytest.skip(f"no grocery catalogue at {catalog}")
    canvas = np.full((360, 900, 3), 128, np.uint8)
    truths = []
    for i, name in enumerate(("Arla-Standard-Milk", "Pink-Lady", "Tropicana-Apple-Juice")):
        path = next(catalog.glob(f"{name}.*"), None)
        if path is None:
            pytest.skip(f"{name} is not in {catalog}")
        product = np.asarray(Image.open(path).convert("RGB").resize((240, 240)))
        fg = (product < 235).any(axis=2)  # the catalogue's white background is left out
        ys, xs = np.nonzero(fg)
        x0, y0 = 30 + i * 290, 60
        region = canvas[y0:y0 + 240, x0:x0 + 240]
        region[fg] = product[fg]
        truths.append((x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1))
    boxes = shipped.detect(canvas)
    for truth in truths:
        assert max((_iou((b.x1, b.y1, b.x2, b.y2), truth) for b in boxes), default=0.0) > 0.6, truth


def test_named_weights_override_the_shipped_ones(tmp_path) -> None:
    mine = tmp_path / "mine.pt"
    det = build_stages(Settings(detector=DetectorSettings(weights=mine))).detector
    assert det.settings.weights == mine
    assert YoloDetector(DetectorSettings(weights=SHIPPED_DETECTOR), ModelSettings()).name.startswith("yolo:")
