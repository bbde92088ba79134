"""IS-Net background removal (the real ONNX model) on generated product pictures on white."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.protocols import BackgroundRemover
from core.types import Mask

pytestmark = pytest.mark.model


def drawn(shape: str, colour: tuple[int, int, int], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A coloured shape on white and the boolean mask of where it was drawn."""
    img = Image.new("RGB", (width, height), "white")
    truth = Image.new("L", (width, height), 0)
    xy = (width // 5, height // 6, width - width // 5, height - height // 6)
    for canvas, fill in ((ImageDraw.Draw(img), colour), (ImageDraw.Draw(truth), 255)):
        if shape == "ellipse":
            canvas.ellipse(xy, fill=fill)
        else:
            canvas.rectangle(xy, fill=fill)
    return np.asarray(img), np.asarray(truth) > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def remover(real_stages):
    return real_stages.remover


def test_implements_protocol(remover) -> None:
    assert isinstance(remover, BackgroundRemover)


@pytest.mark.parametrize(
    ("shape", "colour", "width", "height"),
    [("ellipse", (200, 20, 20), 320, 320), ("box", (30, 60, 200), 400, 260)],
)
def test_mask_covers_the_drawn_shape(remover, shape: str, colour, width: int, height: int) -> None:
    image, truth = drawn(shape, colour, width, height)
    mask = remover.remove(image)
    assert isinstance(mask, Mask)
    assert mask.shape == (height, width)
    assert mask.alpha.dtype == np.float32
    assert float(mask.alpha.min()) >= 0.0 and float(mask.alpha.max()) <= 1.0
    assert iou(mask.binary(0.5), truth) > 0.7


def test_the_same_image_runs_the_model_once(real_stages):
    remover = real_stages.remover
    session = remover._load()
    calls = []
    original = session.predict

    def counting(img, *a, **kw):
        calls.append(img.size)
        return original(img, *a, **kw)

    session.predict = counting
    try:
        image = np.full((64, 96, 3), 255, np.uint8)
        image[10:50, 20:70] = (0, 120, 200)
        first = remover.remove(image)
        again = remover.remove(image.copy())
        other = remover.remove(image[:, :90].copy())
    finally:
        session.predict = original
    assert again is first and other.shape == (64, 90)
    assert len(calls) == 2
