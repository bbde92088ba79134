"""Class-agnostic salient-object detector: boxes from the background-removal mask.

Used with ``SKULENS_DETECTOR__BACKEND=mask``, or when there are no YOLO weights (neither shipped
nor named).  Each connected foreground component large enough becomes a box; the box carries
its part of the mask so that the background stage need not run the model a second time.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from core.protocols import BackgroundRemover
from core.settings import BackgroundSettings, DetectorSettings
from core.types import Box, Mask, check_image

log = logging.getLogger(__name__)


def boxes_from_mask(mask: Mask, threshold: float, min_area_fraction: float, max_boxes: int) -> list[Box]:
    """Boxes of the connected components of ``mask >= threshold``, largest first."""
    binary = mask.binary(threshold)
    if not binary.any():
        return []
    labels, count = ndimage.label(binary)
    h, w = binary.shape
    min_pixels = max(1.0, min_area_fraction * h * w)
    sizes = ndimage.sum_labels(binary, labels, index=np.arange(1, count + 1))
    means = ndimage.mean(mask.alpha, labels, index=np.arange(1, count + 1))
    slices = ndimage.find_objects(labels)
    found = []
    for idx, (sl, size, mean) in enumerate(zip(slices, sizes, means)):
        if sl is None or size < min_pixels:
            continue
        ys, xs = sl
        component = Mask(np.where(labels[sl] == idx + 1, mask.alpha[sl], 0.0).astype(np.float32))
        box = Box(float(xs.start), float(ys.start), float(xs.stop), float(ys.stop),
                  float(np.clip(mean, 0.0, 1.0)), "object", component)
        found.append((size, box))
    found.sort(key=lambda item: -item[0])
    return [box for _, box in found[:max_boxes]]


class MaskDetector:
    """``detect(image) -> list[Box]`` from a :class:`BackgroundRemover`'s mask."""

    own_masks = False  # its boxes' masks are the background stage's, not its own
    name = None  # no weights of its own

    def __init__(self, remover: BackgroundRemover, settings: DetectorSettings, background: BackgroundSettings):
        self.remover = remover
        self.settings = settings
        self.threshold = background.threshold

    def warmup(self) -> None:
        self.remover.warmup()

    def detect(self, image: np.ndarray) -> list[Box]:
        mask = self.remover.remove(check_image(image))
        boxes = boxes_from_mask(mask, self.threshold, self.settings.min_area_fraction, self.settings.max_boxes)
        h, w = image.shape[:2]
        out = []
        for box in boxes:
            grown = box.expand(self.settings.expand, w, h)
            out.append(Box(grown.x1, grown.y1, grown.x2, grown.y2, box.score, box.label, mask.crop(grown)))
        log.debug("mask detector: %d boxes", len(out))
        return out
