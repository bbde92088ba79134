"""A background remover that keeps its masks in a persistent cache, keyed by pixel digest.

Used by the evaluation commands: the mask (the expensive stage) is computed once per image
and model, so re-analysing with other OCR, colour or embedding settings stays cheap.
"""

from __future__ import annotations

import hashlib
import io
import threading
from contextlib import contextmanager

import numpy as np

from core.protocols import BackgroundRemover
from core.types import Mask, check_image
from pipeline.build import RECORDED, build_stages, make_remover
from pipeline.database import FeatureCache


class PersistentMasks:
    def __init__(self, inner: BackgroundRemover, cache, model: str) -> None:
        """``cache`` has ``cached_features(key)`` / ``cache_features(key, bytes)`` (a FeatureCache)."""
        self.inner = inner
        self.cache = cache
        self.model = model
        self._bypass = threading.local()

    @contextmanager
    def uncached(self):
        """Compute masks for real inside this block (on this thread): for timing the stage."""
        self._bypass.on = True
        try:
            yield
        finally:
            self._bypass.on = False

    def warmup(self) -> None:
        self.inner.warmup()

    def remove(self, image: np.ndarray) -> Mask:
        from PIL import Image

        check_image(image)
        if getattr(self._bypass, "on", False):
            return self.inner.remove(image)
        digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()
        key = f"mask:{self.model}:{digest}:{image.shape[0]}x{image.shape[1]}"
        hit = self.cache.cached_features(key)
        if hit is not None:
            return Mask(np.asarray(Image.open(io.BytesIO(hit)), np.float32) / 255.0)
        mask = self.inner.remove(image)
        buf = io.BytesIO()
        Image.fromarray(np.round(mask.alpha * 255).astype(np.uint8)).save(buf, "PNG")
        self.cache.cache_features(key, buf.getvalue())
        return mask


def cached_mask_stages(settings, trained=RECORDED):
    """Stages whose background masks persist in ``<data>/eval/features.sqlite3``, so re-analysis with
    other OCR, colour or embedding settings is cheap.  ``trained``: as :func:`pipeline.build.build_stages`."""
    cache = FeatureCache(settings.data / "eval" / "features.sqlite3")
    remover = PersistentMasks(make_remover(settings), cache, settings.background.model)
    return build_stages(settings, trained=trained, remover=remover)
