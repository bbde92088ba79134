"""Local features (OpenCV ORB, Apache-2.0) and geometric verification of a pair of images.

A re-uploaded copy keeps the image's local structure: its ORB keypoints match the
original's under one similarity transform (rotation, scale, shift), found by RANSAC.  Two
photos of look-alike products (the same brand's cartons in two flavours) share a logo but
far fewer consistent matches, relative to the keypoints they have.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pipeline.settings import KeypointSettings
from pipeline.types import Verification, check_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Keypoints:
    points: np.ndarray  # (N, 2) float32, pixels of the resized image
    descriptors: np.ndarray  # (N, 32) uint8

    def __post_init__(self) -> None:
        if self.points.shape != (len(self.descriptors), 2):
            raise ValueError(f"expected ({len(self.descriptors)}, 2) points, got {self.points.shape}")

    def __len__(self) -> int:
        return len(self.descriptors)


class OrbVerifier:
    """``keypoints(image)`` and ``verify(a, b)``; OpenCV comes with ultralytics, nothing to fetch."""

    name = "orb-ransac"

    def __init__(self, settings: KeypointSettings) -> None:
        self.settings = settings

    def keypoints(self, image: np.ndarray) -> Keypoints:
        import cv2

        check_image(image)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        h, w = grey.shape
        scale = self.settings.max_side / max(h, w)
        if scale != 1:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        orb = cv2.ORB_create(nfeatures=self.settings.features)
        kps, desc = orb.detectAndCompute(grey, None)
        if desc is None:
            return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
        return Keypoints(np.float32([k.pt for k in kps]).reshape(-1, 2), desc)

    def verify(self, a: Keypoints, b: Keypoints) -> Verification:
        import cv2

        fewer = min(len(a), len(b))
        if fewer < 8:
            return Verification(0, 0.0)
        matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
        good = [m[0] for m in matches if len(m) == 2 and m[0].distance < self.settings.ratio_test * m[1].distance]
        if len(good) < 6:
            return Verification(0, 0.0)
        src = a.points[[g.queryIdx for g in good]]
        dst = b.points[[g.trainIdx for g in good]]
        _, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                              ransacReprojThreshold=self.settings.ransac_pixels)
        inliers = int(mask.sum()) if mask is not None else 0
        return Verification(inliers, min(1.0, inliers / fewer))

    def accepts(self, v: Verification) -> bool:
        return v.inliers >= self.settings.min_inliers and v.ratio >= self.settings.min_inlier_ratio
