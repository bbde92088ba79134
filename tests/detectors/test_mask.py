"""Boxes from a foreground mask (pure), and MaskDetector around a fixed fake remover."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.protocols import Detector
from core.settings import BackgroundSettings, DetectorSettings
from core.types import Box, Mask
from detectors.mask import MaskDetector, boxes_from_mask


def two_blobs(h: int = 100, w: int = 120) -> np.ndarray:
    """A big blob (rows 10-49, cols 5-54, alpha 0.9) and a small one (rows 60-79, cols 80-109, alpha 1)."""
    alpha = np.zeros((h, w), np.float32)
    alpha[10:50, 5:55] = 0.9
    alpha[60:80, 80:110] = 1.0
    return alpha


def coords(box: Box) -> tuple[float, float, float, float]:
    return (box.x1, box.y1, box.x2, box.y2)


def test_two_separated_blobs_give_two_tight_boxes_largest_first() -> None:
    alpha = two_blobs()
    alpha[60:80, 80:110][5, 5] = 0.7  # the small blob is not uniform: its mask must keep the values
    big, small = boxes_from_mask(Mask(alpha), 0.5, 0.01, 10)
    assert coords(big) == (5.0, 10.0, 55.0, 50.0)
    assert coords(small) == (80.0, 60.0, 110.0, 80.0)
    assert big.score == pytest.approx(0.9) and small.label == "object"
    assert big.mask.shape == (40, 50) and small.mask.shape == (20, 30)
    np.testing.assert_array_equal(big.mask.alpha, alpha[10:50, 5:55])
    np.testing.assert_array_equal(small.mask.alpha, alpha[60:80, 80:110])


def test_component_mask_zeroes_the_other_blob_inside_its_box() -> None:
    alpha = np.zeros((60, 60), np.float32)
    alpha[5:50, 5:10] = 1.0  # an L: vertical bar ...
    alpha[45:50, 5:50] = 1.0  # ... and its foot
    alpha[10:20, 20:30] = 0.8  # a separate square inside the L's bounding box
    boxes = boxes_from_mask(Mask(alpha), 0.5, 0.0, 10)
    assert len(boxes) == 2
    l_shape = boxes[0]
    assert coords(l_shape) == (5.0, 5.0, 50.0, 50.0)
    assert float(l_shape.mask.alpha[5:15, 15:25].max()) == 0.0  # the square, in the L box's coordinates
    assert float(l_shape.mask.alpha.sum()) == float(alpha[5:50, 5:10].sum() + alpha[45:50, 10:50].sum())


def test_blob_smaller_than_min_area_fraction_is_dropped() -> None:
    alpha = two_blobs()  # 12000 px; small blob 600 px = 5 %, big 2000 px = 16.7 %
    assert len(boxes_from_mask(Mask(alpha), 0.5, 0.04, 10)) == 2
    [only] = boxes_from_mask(Mask(alpha), 0.5, 0.06, 10)
    assert coords(only) == (5.0, 10.0, 55.0, 50.0)
    assert boxes_from_mask(Mask(alpha), 0.5, 0.2, 10) == []


def test_threshold_decides_the_foreground() -> None:
    assert len(boxes_from_mask(Mask(two_blobs()), 0.95, 0.0, 10)) == 1


@pytest.mark.parametrize("alpha", [np.zeros((30, 40), np.float32), np.full((30, 40), 0.2, np.float32)])
def test_empty_mask_gives_no_boxes(alpha: np.ndarray) -> None:
    assert boxes_from_mask(Mask(alpha), 0.5, 0.0, 10) == []


def test_max_boxes_keeps_the_largest() -> None:
    alpha = np.zeros((50, 200), np.float32)
    for i, width in enumerate((4, 10, 6, 8)):
        alpha[10:40, i * 40:i * 40 + width] = 1.0
    boxes = boxes_from_mask(Mask(alpha), 0.5, 0.0, 2)
    assert [b.width for b in boxes] == [10.0, 8.0]
    assert len(boxes_from_mask(Mask(alpha), 0.5, 0.0, 10)) == 4


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 24), st.integers(1, 24)), elements=st.floats(0, 1, width=32)),
       st.floats(0.05, 1.0), st.floats(0.0, 0.3), st.integers(1, 5))
def test_boxes_stay_inside_the_image(alpha, threshold, min_area, max_boxes) -> None:
    h, w = alpha.shape
    boxes = boxes_from_mask(Mask(alpha), threshold, min_area, max_boxes)
    assert len(boxes) <= max_boxes
    for box in boxes:
        assert 0 <= box.x1 < box.x2 <= w and 0 <= box.y1 < box.y2 <= h
        assert box.mask.shape == (int(box.height), int(box.width))
        assert 0.0 <= box.score <= 1.0


# --- MaskDetector -----------------------------------------------------------------------


class FixedRemover:
    """A BackgroundRemover returning the same mask for any image (the model is not under test)."""

    def __init__(self, alpha: np.ndarray) -> None:
        self.mask = Mask(alpha)
        self.calls = 0
        self.warmed = False

    def remove(self, image: np.ndarray) -> Mask:
        self.calls += 1
        assert image.shape[:2] == self.mask.shape
        return self.mask

    def warmup(self) -> None:
        self.warmed = True


def test_mask_detector_expands_boxes_and_crops_the_mask() -> None:
    alpha = two_blobs()
    remover = FixedRemover(alpha)
    detector = MaskDetector(remover, DetectorSettings(expand=0.1), BackgroundSettings(threshold=0.5))
    assert isinstance(detector, Detector)
    detector.warmup()
    assert remover.warmed
    image = np.full((100, 120, 3), 255, np.uint8)
    big, small = detector.detect(image)
    assert remover.calls == 1
    assert coords(big) == pytest.approx((0.0, 6.0, 60.0, 54.0))  # 50x40 grown by 5/4 px, clipped at x=0
    assert coords(small) == pytest.approx((77.0, 58.0, 113.0, 82.0))
    assert big.score == pytest.approx(0.9) and big.label == "object"
    for box in (big, small):
        expected = Mask(alpha).crop(box)
        assert box.mask.shape == expected.shape
        np.testing.assert_array_equal(box.mask.alpha, expected.alpha)


def test_mask_detector_with_no_foreground_finds_nothing() -> None:
    detector = MaskDetector(FixedRemover(np.zeros((20, 30), np.float32)), DetectorSettings(), BackgroundSettings())
    assert detector.detect(np.zeros((20, 30, 3), np.uint8)) == []
