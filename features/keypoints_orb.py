"""Local features (OpenCV ORB, Apache-2.0) and geometric verification of a pair of images.

A re-uploaded copy keeps the image's local structure: its ORB keypoints match the
original's under one similarity transform (rotation, scale, shift), found by RANSAC.  Two
photos of look-alike products (the same brand's cartons in two flavours) share a logo but
far fewer consistent matches, relative to the keypoints they have.

Look-alikes can still share enough keypoints (the whole carton design but for the fruit and
the flavour's name), so the transform is then used to lay one image over the other: after a
least-squares colour fit (which absorbs brightness, contrast and saturation changes), a copy's
pixels agree nearly everywhere inside the matched region (the hull of the inliers), while a
variant differs in a block of cells.  The share of differing cells is ``Verification.differing``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from core.settings import KeypointSettings
from core.types import Verification, check_image

log = logging.getLogger(__name__)

_COMPARE_MIN_INLIERS = 12  # fewer matches place the images too loosely to compare their pixels


@dataclass(frozen=True)
class Keypoints:
    points: np.ndarray  # (N, 2) float32, pixels of the resized image
    descriptors: np.ndarray  # (N, 32) uint8
    hues: np.ndarray  # (N,) float32 in [0, 1): the hue around each point; -1 where it is too grey
    thumb: np.ndarray  # RGB uint8, longest side KeypointSettings.compare_side, for laying images over each other
    scale: float  # thumb pixels per keypoint pixel

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
        thumb = _resized(image, self.settings.compare_side)
        image = _resized(image, self.settings.max_side)
        scale = thumb.shape[1] / image.shape[1]
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        orb = cv2.ORB_create(nfeatures=self.settings.features)  # type: ignore[attr-defined]  # (not in cv2's stubs)
        kps, desc = orb.detectAndCompute(grey, None)
        if desc is None:
            return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), np.zeros(0, np.float32),
                             thumb, scale)
        points = np.asarray([k.pt for k in kps], np.float32).reshape(-1, 2)
        return Keypoints(points, desc, _hues_at(image, points), thumb, scale)

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
        transform, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                                      ransacReprojThreshold=self.settings.ransac_pixels)
        if mask is None or transform is None:
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
        differing = None
        if inliers >= _COMPARE_MIN_INLIERS:
            differing = differing_share(a, b, transform, src[keep], self.settings)
        return Verification(inliers, min(1.0, inliers / fewer), round(shift, 4),
                            None if differing is None else round(differing, 4))

    def accepts(self, v: Verification) -> bool:
        """Enough matches under one transform, the same colours where they match, and pixels that
        agree once laid over each other."""
        return (v.inliers >= self.settings.min_inliers and v.ratio >= self.settings.min_inlier_ratio
                and v.hue_shift <= self.settings.max_hue_shift and not self.contradicts(v))

    def frames_differ(self, a: Keypoints, b: Keypoints) -> bool:
        """For a pair whose keypoints are too few to place one on the other (a plain fruit, a
        smooth carton) but whose hashes say they share one layout: lay the two whole frames over
        each other as they are (each scaled to the other's size) and compare their pixels."""
        ha, wa = a.thumb.shape[:2]
        hb, wb = b.thumb.shape[:2]
        frame = np.asarray([[0, 0], [wa - 1, 0], [wa - 1, ha - 1], [0, ha - 1]], np.float32) / a.scale  # keypoint pixels of a
        stretch = np.asarray([[wb / wa * a.scale / b.scale, 0, 0], [0, hb / ha * a.scale / b.scale, 0]], np.float64)
        differing = differing_share(a, b, stretch, frame, self.settings)
        return differing is not None and differing > self.settings.max_differing

    def contradicts(self, v: Verification) -> bool:
        """The two images, laid over each other, differ in too many places to be one picture
        (whichever layer found the pair)."""
        return v.differing is not None and v.differing > self.settings.max_differing


def differing_share(a: Keypoints, b: Keypoints, transform: np.ndarray, inliers: np.ndarray,
                    settings: KeypointSettings) -> float | None:
    """The share of cells (``compare_cell`` pixels square, on the thumbnails) inside the hull of
    ``inliers`` (points of ``a``) where ``b``, moved by ``transform`` (a -> b, keypoint pixels)
    onto ``a`` and colour-fitted to it, differs by more than ``cell_difference`` grey levels on
    average.  None when the matched region is too small to say."""
    import cv2

    ta, tb = a.thumb, b.thumb
    h, w = ta.shape[:2]
    m = transform.astype(np.float64).copy()  # keypoint pixels of a -> of b, into thumb pixels
    m[:, :2] *= b.scale / a.scale
    m[:, 2] *= b.scale
    flags = cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(tb, m, (w, h), flags=cv2.INTER_LINEAR | flags, borderValue=(0, 0, 0))
    valid = cv2.warpAffine(np.ones(tb.shape[:2], np.uint8), m, (w, h), flags=cv2.INTER_NEAREST | flags)
    region = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(region, cv2.convexHull((inliers * a.scale).astype(np.float32)).astype(np.int32), 1)
    inside = region.astype(bool) & np.asarray(valid, bool)
    cell = settings.compare_cell
    if inside.sum() < 4 * cell * cell:
        return None
    sigma = 2.4 * settings.compare_side / 256  # forgives re-compression and resampling
    pa = cv2.GaussianBlur(ta, (5, 5), sigma).astype(np.float32)
    pb = cv2.GaussianBlur(warped, (5, 5), sigma).astype(np.float32)
    design = np.c_[pb[inside], np.ones(int(inside.sum()), np.float32)]
    fit, *_ = np.linalg.lstsq(design, pa[inside], rcond=None)  # b's colours in a's terms (affine)
    residual = np.abs(pa - (pb @ fit[:3] + fit[3])).mean(axis=2)
    hh, ww = h // cell * cell, w // cell * cell

    def cells(x: np.ndarray) -> np.ndarray:
        return x[:hh, :ww].reshape(hh // cell, cell, ww // cell, cell).sum(axis=(1, 3))

    count = cells(inside.astype(np.float32))
    used = count >= cell * cell / 2
    if not used.any():
        return None
    mean_residual = cells(np.where(inside, residual, 0.0))[used] / count[used]
    return float((mean_residual > settings.cell_difference).mean())


def _resized(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale == 1:
        return image
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)


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
