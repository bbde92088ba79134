"""Run the stages on one image: detection -> crop -> mask -> colours -> OCR -> embedding -> keypoints.

Every stage's output stays available: each object keeps an embedding of the whole image
(``full``), of its box (``crop``) and of its masked box on white (``masked``) as the
settings ask, so the ranker (and the measurements) decide what helps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from core.protocols import (
    BackgroundRemover,
    ColorExtractor,
    Detector,
    Embedder,
    GeometricVerifier,
    ImageHasher,
    PairVerifier,
    TextEmbedder,
    TextReader,
)
from core.results import Analysis
from core.types import Box, Mask, ObjectFeatures, OcrText, Tags, check_image

log = logging.getLogger(__name__)

REGIONS = ("full", "crop", "masked", "centre70", "centre50")
"""What can be embedded: the whole photo, the main box, the box with its background whitened, and
the central 70% / 50% of the photo (extra views of a hand-held product: of query photos, and of catalogue
images by default, so that a query's view meets the same view of a shop photo in the catalogue)."""
OCR_THREADS = 4
"""Text reads that may run at once beside the other stages (one per concurrent analysis, up to this)."""
PHOTO_REGIONS = ("full", "centre70", "centre50")
"""Regions of the whole photo, not of one object (left out when every object is searched)."""


@dataclass(frozen=True)
class Stages:
    """The backends of one pipeline; built by :func:`pipeline.build.build_stages`."""

    embedder: Embedder
    colours: ColorExtractor
    detector: Detector | None = None
    remover: BackgroundRemover | None = None
    reader: TextReader | None = None
    hasher: ImageHasher | None = None
    verifier: PairVerifier | None = None
    geometry: GeometricVerifier | None = None  # local features of each object, for the verify signal
    text: TextEmbedder | None = None  # typed words and pictures in one space (the semantic signal)

    def warmup(self) -> None:
        for stage in (self.embedder, self.detector, self.remover, self.reader):
            if stage is not None:
                stage.warmup()


class Analyzer:
    def __init__(self, stages: Stages, ocr_enabled: bool = True, background_enabled: bool = True,
                 parallel_ocr: bool = False, main_object: str = "confidence") -> None:
        """``parallel_ocr``: read an object's text in a thread of its own while it is masked, coloured
        and embedded (the reader and the other stages share no state).  ``main_object``: how the
        main box is chosen (:func:`main_first`)."""
        self.stages = stages
        self.main_object = main_object
        self.ocr_enabled = ocr_enabled
        self.background_enabled = background_enabled
        self.parallel_ocr = parallel_ocr
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def analyse(self, image: np.ndarray, regions: tuple[str, ...], all_objects: bool = False,
                teacher_masks: bool = False) -> Analysis:
        """Features of the main object (or of every detected object with ``all_objects``).

        ``teacher_masks``: mask each box with the background remover even when the detector gave
        a mask of its own (for catalogue images, where time matters less than a sharp outline)."""
        check_image(image)
        unknown = set(regions) - set(REGIONS)
        if unknown or not regions:
            raise ValueError(f"expected regions among {REGIONS}, got {regions}")
        h, w = image.shape[:2]
        timings: dict[str, float] = {}
        boxes: list[Box] = []
        if self.stages.detector is not None:
            with _timed(timings, "detect"):
                boxes = main_first(self.stages.detector.detect(image), w, h, self.main_object)
        targets = boxes if (all_objects and boxes) else boxes[:1] or [Box.full(w, h)]
        if all_objects:
            regions = tuple(r for r in regions if r not in PHOTO_REGIONS) or ("crop",)
        objects = [self._object(image, box, regions, timings, teacher_masks) for box in targets]
        return Analysis(w, h, boxes, objects, timings)

    def detector_masks_differ(self) -> bool:
        """Whether the detector gives masks of its own (a segmentation model), not the remover's."""
        return self.stages.detector is not None and self.stages.detector.own_masks

    def _object(self, image: np.ndarray, box: Box, regions: tuple[str, ...], timings: dict,
                teacher_masks: bool = False) -> ObjectFeatures:
        x1, y1, x2, y2 = box.as_int()
        crop = np.ascontiguousarray(image[y1:y2, x1:x2])
        reading: Future[OcrText] | None = None
        if self.ocr_enabled and self.stages.reader is not None and self.parallel_ocr:
            reading = self._ocr_pool().submit(self._read, crop, timings)
        try:
            mask = None if teacher_masks and self.detector_masks_differ() else box.mask
            if mask is None and self.background_enabled and self.stages.remover is not None:
                with _timed(timings, "background"):
                    mask = self.stages.remover.remove(crop)
            with _timed(timings, "colour"):
                palette = self.stages.colours.extract(crop, mask)
            named = _region_images(image, crop, mask, box, regions)
            with _timed(timings, "embed"):
                vectors, tags = self.stages.embedder.embed(list(named.values()))
        finally:
            if reading is not None:  # never leave a read running behind an error
                ocr = reading.result()
        if reading is None:
            ocr = self._read(crop, timings) if self.ocr_enabled and self.stages.reader is not None else OcrText.empty()
        local = None
        if self.stages.geometry is not None:
            with _timed(timings, "keypoints"):
                local = self.stages.geometry.features(crop)
        by_region, obj_tags = regions_and_tags(list(named), vectors, tags)
        coverage = mask.coverage() if mask is not None else 0.0
        return ObjectFeatures(box, by_region, palette, ocr, obj_tags, coverage, local)

    def _read(self, crop: np.ndarray, timings: dict) -> OcrText:
        assert self.stages.reader is not None
        with _timed(timings, "ocr"):
            return self.stages.reader.read(crop)

    def _ocr_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=OCR_THREADS, thread_name_prefix="skulens-ocr")
            return self._pool


def main_first(boxes: list[Box], width: int, height: int, rule: str) -> list[Box]:
    """``boxes`` with the main object's first (the rest keep their order).  ``confidence``: the
    detector's most confident (its first); ``evidence``: the largest ``score x sqrt(area share)``,
    so a large carton the detector is less sure of beats a confident sliver of shelf (on the grocery
    train photos, no worse than confidence alone; docs/evaluation.md)."""
    if rule == "confidence" or len(boxes) < 2:
        return boxes
    if rule != "evidence":
        raise ValueError(f"expected main_object 'evidence' or 'confidence', got {rule!r}")
    area = float(width * height)
    best = max(range(len(boxes)), key=lambda i: boxes[i].score * math.sqrt(boxes[i].area / area))
    return [boxes[best], *boxes[:best], *boxes[best + 1:]]


def region_images(image: np.ndarray, box: Box, mask: Mask | None, regions: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The images of one object that ``regions`` asks to embed (see :data:`REGIONS`)."""
    x1, y1, x2, y2 = box.as_int()
    return _region_images(image, np.ascontiguousarray(image[y1:y2, x1:x2]), mask, box, regions)


def regions_and_tags(names: list[str], vectors: np.ndarray, tags: list[Tags]) -> tuple[dict[str, np.ndarray], Tags]:
    """One object's vectors by region, and its visual tags (those of the box, else the first region)."""
    tag_region = "crop" if "crop" in names else names[0]
    return dict(zip(names, vectors)), tags[names.index(tag_region)]


def _region_images(image: np.ndarray, crop: np.ndarray, mask: Mask | None, box: Box,
                   regions: tuple[str, ...]) -> dict[str, np.ndarray]:
    h, w = image.shape[:2]
    whole = box.area >= 0.98 * w * h
    out: dict[str, np.ndarray] = {}
    for region in regions:
        if region == "full":
            out["full"] = image
        elif region == "crop" and not (whole and "full" in regions):
            out["crop"] = crop
        elif region == "masked" and mask is not None and mask.shape == crop.shape[:2]:
            alpha = mask.alpha[..., None]
            out["masked"] = (crop * alpha + 255 * (1 - alpha)).astype(np.uint8)
        elif region.startswith("centre"):
            out[region] = centre_crop(image, int(region.removeprefix("centre")) / 100.0)
    return out or {"full": image}


PACKSHOT_RING = 0.04  # the outer 4% of each side
PACKSHOT_TOLERANCE = 24  # grey levels (per channel) from the ring's median colour
PACKSHOT_SHARE = 0.7
"""A packshot's ring is at least this uniform; set on the grocery catalogue pictures (all >= 0.77)
and its `train` photos (all <= 0.67)."""


def is_packshot(image: np.ndarray) -> bool:
    """A product picture on a plain background: at least :data:`PACKSHOT_SHARE` of the pixels in the
    image's outer ring lie within :data:`PACKSHOT_TOLERANCE` of the ring's median colour."""
    from PIL import Image

    small = np.asarray(Image.fromarray(check_image(image)).resize((128, 128), Image.Resampling.BILINEAR), np.int16)
    r = max(1, round(128 * PACKSHOT_RING))
    ring = np.concatenate([small[:r].reshape(-1, 3), small[-r:].reshape(-1, 3),
                           small[r:-r, :r].reshape(-1, 3), small[r:-r, -r:].reshape(-1, 3)])
    near = np.abs(ring - np.median(ring, axis=0)).max(axis=1) < PACKSHOT_TOLERANCE
    return float(near.mean()) >= PACKSHOT_SHARE


def has_centre_views(regions) -> bool:
    """Whether ``regions`` ask for centre views (``centre70``, ``centre50``...)."""
    return any(r.startswith("centre") for r in regions)


def catalogue_regions(image: np.ndarray, regions: tuple[str, ...], packshot_centre_views: bool) -> tuple[str, ...]:
    """The regions a catalogue image is embedded in: ``regions``, less the centre views when it is a
    packshot (their centre cuts into the product; a photo's cuts away the shop around it), unless
    ``packshot_centre_views``."""
    if packshot_centre_views or not has_centre_views(regions) or not is_packshot(image):
        return regions
    return tuple(r for r in regions if not r.startswith("centre"))


def centre_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    """The central ``fraction`` of the image's width and height."""
    h, w = image.shape[:2]
    dh, dw = int(round(h * (1 - fraction) / 2)), int(round(w * (1 - fraction) / 2))
    return np.ascontiguousarray(image[dh:h - dh, dw:w - dw])


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000.0


def fingerprint(*parts: object) -> str:
    """A short stable hash of settings and model names, for feature-cache keys."""
    return hashlib.sha256(json.dumps([str(p) for p in parts], sort_keys=True).encode()).hexdigest()[:16]
