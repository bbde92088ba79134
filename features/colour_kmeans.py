"""Dominant colours by k-means in CIELAB.

:class:`KMeansColourExtractor` samples the masked pixels of an RGB image, converts
them to CIELAB (D65, 2 degree observer) and clusters them; the palette holds the
cluster centres with their pixel shares, heaviest first (colour conversions and names live in
:mod:`core.colours`).
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import ThreadpoolController

from core.colours import rgb_to_lab
from core.settings import ColourSettings
from core.types import Mask, Palette, check_image

log = logging.getLogger(__name__)

MIN_MASKED_PIXELS = 32

class KMeansColourExtractor:
    """A :class:`~core.protocols.ColorExtractor`: k-means over sampled masked pixels in CIELAB."""

    def __init__(self, settings: ColourSettings) -> None:
        self.settings = settings
        self._threads: ThreadpoolController | None = None

    def extract(self, image: np.ndarray, mask: Mask | None) -> Palette:
        """Dominant colours of the masked pixels (all pixels when the mask is None or nearly empty)."""
        pixels = self._sample(check_image(image), mask)
        colours, counts = np.unique(pixels, axis=0, return_counts=True)
        lab = rgb_to_lab(colours)
        k = min(self.settings.k, len(colours))
        if k == 1:
            return Palette(np.average(lab, axis=0, weights=counts)[None], np.ones(1))
        if self._threads is None:
            self._threads = ThreadpoolController()
        # Tiny problem: one thread is faster and avoids OpenMP stalls on busy CPUs.
        with self._threads.limit(limits=1, user_api="openmp"):
            km = KMeans(n_clusters=k, n_init=3, random_state=self.settings.seed)
            km.fit(lab, sample_weight=counts.astype(np.float64))
        shares = np.bincount(km.labels_, weights=counts, minlength=k)
        keep = np.flatnonzero(shares > 0)
        order = keep[np.argsort(-shares[keep], kind="stable")]
        return Palette(km.cluster_centers_[order], shares[order] / shares[order].sum())

    def _sample(self, image: np.ndarray, mask: Mask | None) -> np.ndarray:
        """At most ``sample_pixels`` pixels ``(N, 3)``, drawn deterministically."""
        height, width = image.shape[:2]
        flat = image.reshape(-1, 3)
        selected: np.ndarray | None = None
        if mask is not None:
            if mask.shape != (height, width):
                raise ValueError(f"expected a mask of shape {(height, width)}, got {mask.shape}")
            selected = np.flatnonzero(mask.binary())
            if len(selected) < MIN_MASKED_PIXELS:
                log.debug("mask has %d pixels (< %d); using all pixels", len(selected), MIN_MASKED_PIXELS)
                selected = None
        n = height * width if selected is None else len(selected)
        limit = max(1, self.settings.sample_pixels)
        if n <= limit:
            idx = np.arange(n)
        else:
            idx = np.sort(np.random.default_rng(self.settings.seed).choice(n, size=limit, replace=False))
        return flat[idx if selected is None else selected[idx]]
