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
    hues: np.ndarray  # (N,) float32 in [0, 1): the hue around each point; -1 where it is too grey

    def __post_init__(self) -> None:
        if self.points.shape != (len(self.descriptors), 2) or self.hues.shape != (len(self.descriptors),):
            raise ValueError(f"expected ({len(self.descriptors)}, 2) points and as many hues, got "
                             f"{self.points.shape} and {self.hues.shape}")

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
        h, w = image.shape[:2]
        scale = self.settings.max_side / max(h, w)
        if scale != 1:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        orb = cv2.ORB_create(nfeatures=self.settings.features)
        kps, desc = orb.detectAndCompute(grey, None)
        if desc is None:
            return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), np.zeros(0, np.float32))
        points = np.float32([k.pt for k in kps]).reshape(-1, 2)
        return Keypoints(points, desc, _hues_at(image, points))

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
        if mask is None:
            return Verification(0, 0.0)
        keep = mask.ravel().astype(bool)
        inliers = int(keep.sum())
        ha = a.hues[[g.queryIdx for g in good]][keep]
        hb = b.hues[[g.trainIdx for g in good]][keep]
        coloured = (ha >= 0) & (hb >= 0)
        shift = 0.0
        if coloured.sum() >= 8:  # circular hue distance at the matched points, in turns (0..0.5)
            d = np.abs(ha[coloured] - hb[coloured])
            shift = float(np.median(np.minimum(d, 1 - d)))
        return Verification(inliers, min(1.0, inliers / fewer), round(shift, 4))

    def accepts(self, v: Verification) -> bool:
        """Enough matches under one transform, and the same colours where they match."""
        return (v.inliers >= self.settings.min_inliers and v.ratio >= self.settings.min_inlier_ratio
                and v.hue_shift <= self.settings.max_hue_shift)


def _hues_at(image: np.ndarray, points: np.ndarray, radius: int = 3) -> np.ndarray:
    """The hue of the mean colour of a small patch around each point (-1 where it is nearly grey)."""
    import cv2

    blurred = cv2.blur(image, (2 * radius + 1, 2 * radius + 1))
    h, w = image.shape[:2]
    xs = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
    rgb = blurred[ys, xs][None].astype(np.uint8)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)[0].astype(np.float32) / 255.0
    hue = hsv[:, 0].copy()
    hue[(hsv[:, 1] < 0.25) | (hsv[:, 2] < 0.2)] = -1.0
    return hue.astype(np.float32)
