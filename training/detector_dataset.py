"""Writes a YOLO data set (ultralytics layout) from photo folders, with the teacher's help.

``build_dataset`` reads every image of each source folder, asks the background-removal stage (the
teacher) for its mask, judges the mask (:func:`training.detector_data.judge_mask`) and trusts a
source only when enough of its masks are credible.  From trusted sources it keeps the credible
photos as pseudo-labelled images and their products as cut-outs; from every source it takes
backgrounds (products painted out where the mask is credible, shuffled blurred tiles otherwise).
It then pastes cut-outs onto backgrounds to make composites with exact boxes.

Photos are split into train and val by a hash of their path, before anything is made from them,
so no cut-out or background of a val photo is ever seen in training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.errors import InvalidImageError, InvalidInputError
from core.settings import ImageLimits
from core.types import Box
from pipeline.images import IMAGE_SUFFIXES, decode_image, read_image_bytes
from training.detector_data import (
    Cutout,
    compose,
    cut_out,
    judge_mask,
    painted_out,
    shuffled_tiles,
    synthetic_background,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
CUTOUT_SIDE = 320  # cut-outs are kept at most this large, backgrounds twice that (memory)
MAX_CUTOUTS, MAX_BACKGROUNDS = 4000, 600  # per folder and split, of each kind


@dataclass
class SourceReport:
    folder: str
    images: int = 0
    credible: int = 0
    trusted: bool = False
    unreadable: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # Judgement.code -> masks turned down for it

    @property
    def credible_share(self) -> float:
        return self.credible / self.images if self.images else 0.0


@dataclass
class DatasetSummary:
    root: str
    seed: int
    image_size: int
    sources: list[SourceReport]
    images: dict[str, dict[str, int]]  # split -> {"pseudo": n, "composite": n}
    boxes: dict[str, int]  # split -> boxes

    def to_json(self) -> dict:
        out = asdict(self)
        for src, rep in zip(out["sources"], self.sources):
            src["credible_share"] = round(rep.credible_share, 4)
        return out


@dataclass
class _Pool:
    cutouts: list[Cutout] = field(default_factory=list)
    backgrounds: list[np.ndarray] = field(default_factory=list)


def split_of(path: str, val_share: float) -> str:
    """train or val, stable for a path (a hash, not the order of files)."""
    h = int(hashlib.blake2b(path.encode(), digest_size=8).hexdigest(), 16)
    return "val" if (h % 10_000) / 10_000 < val_share else "train"


def list_images(folder: Path, per_source: int | None = None) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if per_source and len(files) > per_source:
        files = files[::-(-len(files) // per_source)]
    return files


def build_dataset(sources: list[Path], remover, limits: ImageLimits, out: Path, composites: int = 1000,
                  image_size: int = 640, seed: int = 0, val_share: float = 0.15, min_trust: float = 0.5,
                  per_source: int | None = None,
                  progress: Callable[[str, int, int], None] | None = None) -> DatasetSummary:
    """Write ``out/images/{train,val}``, ``out/labels/{train,val}``, ``out/data.yaml`` and
    ``out/summary.json``; ``composites`` is the total over both splits (val gets ``val_share``)."""
    if not sources:
        raise InvalidInputError("expected at least one photo folder")
    for s in sources:
        if not Path(s).is_dir():
            raise InvalidInputError(f"not a folder: {s}")
    out = Path(out)
    for sub in ("images", "labels"):  # what this function wrote before: a new run replaces it whole
        shutil.rmtree(out / sub, ignore_errors=True)
        for split in SPLITS:
            (out / sub / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pools = {s: _Pool() for s in SPLITS}
    counts = {s: Counter() for s in SPLITS}
    reports = []
    for source in sources:
        reports.append(_read_source(Path(source), remover, limits, out, pools, counts, val_share, min_trust,
                                    per_source, rng, image_size, progress))
    if not pools["train"].cutouts:
        said = "; ".join(f"{r.folder}: {r.credible} of {r.images} masks credible" for r in reports)
        raise InvalidInputError("no folder gave products the teacher can be trusted with "
                                f"(a folder needs {min_trust:.0%} credible masks): {said}")
    for split in SPLITS:
        n = round(composites * (val_share if split == "val" else 1 - val_share))
        _write_composites(pools[split], split, n, out, image_size, rng, counts[split], progress)
    (out / "data.yaml").write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: product\n")
    summary = DatasetSummary(str(out), seed, image_size, reports,
                             {s: {"pseudo": counts[s]["pseudo"], "composite": counts[s]["composite"]} for s in SPLITS},
                             {s: counts[s]["boxes"] for s in SPLITS})
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2))
    return summary


def _read_source(folder: Path, remover, limits: ImageLimits, out: Path, pools: dict[str, _Pool],
                 counts: dict[str, Counter], val_share: float, min_trust: float, per_source: int | None,
                 rng: np.random.Generator, image_size: int, progress) -> SourceReport:
    """Judge the teacher on one folder, one photo at a time; keep what it can be trusted with.

    Pseudo-labelled photos are written as they come and removed again if the folder turns out
    untrusted; cut-outs and backgrounds are kept in bounded samples (reservoirs), so memory does
    not grow with the folder."""
    report = SourceReport(str(folder))
    files = list_images(folder, per_source)
    cuts = {s: _Reservoir(MAX_CUTOUTS, rng) for s in SPLITS}
    painted = {s: _Reservoir(MAX_BACKGROUNDS, rng) for s in SPLITS}  # products painted out (credible masks)
    tiles = {s: _Reservoir(MAX_BACKGROUNDS, rng) for s in SPLITS}  # shuffled tiles (every photo)
    written: list[tuple[str, str]] = []
    for n, path in enumerate(files, 1):
        try:
            image = decode_image(read_image_bytes(path, limits), limits, path.name)
        except InvalidImageError as exc:
            log.warning("skipping %s: %s", path, exc)
            report.unreadable += 1
            continue
        report.images += 1
        mask = remover.remove(image)
        verdict = judge_mask(mask)
        split = split_of(str(path.resolve()), val_share)
        tiles[split].add(_small(shuffled_tiles(image, rng)))
        if verdict.credible:
            report.credible += 1
            name = _stem(folder, path)
            _write_pseudo(image, mask, verdict.box, out, split, name, image_size)
            written.append((split, name))
            cuts[split].add(_small_cutout(cut_out(image, mask, verdict.box, str(path))))
            painted[split].add(_small(painted_out(image, mask)))
        else:
            report.reasons[verdict.code] = report.reasons.get(verdict.code, 0) + 1
        if progress:
            progress(f"teacher on {folder.name}", n, len(files))
    report.trusted = report.credible_share >= min_trust
    log.info("%s: %d of %d masks credible (%.0f%%): %s", folder, report.credible, report.images,
             100 * report.credible_share, "trusted" if report.trusted else "not trusted")
    if not report.trusted:  # even its tidy-looking masks are suspect: no labels, no cut-outs
        for split, name in written:
            (out / "images" / split / f"{name}.jpg").unlink(missing_ok=True)
            (out / "labels" / split / f"{name}.txt").unlink(missing_ok=True)
        for split in SPLITS:
            pools[split].backgrounds.extend(tiles[split].items)
        return report
    if not cuts["val"].items and len(cuts["train"].items) >= 2:
        cuts["val"].items.append(cuts["train"].items.pop())  # a small folder still gets a product to validate on
    for split in SPLITS:
        pools[split].cutouts.extend(cuts[split].items)
        pools[split].backgrounds.extend(painted[split].items + tiles[split].items)
        made = sum(1 for s, _ in written if s == split)
        counts[split]["pseudo"] += made
        counts[split]["boxes"] += made
    return report


class _Reservoir:
    """A uniform sample of at most ``cap`` of the items added (Algorithm R)."""

    def __init__(self, cap: int, rng: np.random.Generator) -> None:
        self.cap, self.rng, self.seen = cap, rng, 0
        self.items: list = []

    def add(self, item) -> None:
        self.seen += 1
        if len(self.items) < self.cap:
            self.items.append(item)
        elif (j := int(self.rng.integers(self.seen))) < self.cap:
            self.items[j] = item


def _write_composites(pool: _Pool, split: str, n: int, out: Path, size: int, rng: np.random.Generator,
                      counts: Counter, progress) -> None:
    if not pool.cutouts:
        log.warning("no credible products for %s composites", split)
        return
    for i in range(n):
        if pool.backgrounds and rng.random() < 0.75:
            background = pool.backgrounds[int(rng.integers(len(pool.backgrounds)))]
        else:
            background = synthetic_background(size, rng)
        picks = [pool.cutouts[int(j)] for j in rng.integers(len(pool.cutouts), size=int(rng.integers(1, 7)))]
        comp = compose(background, picks, size, rng)
        _write(comp.image, comp.boxes, comp.masks, out, split, f"composite-{i:06d}")
        counts["composite"] += 1
        counts["boxes"] += len(comp.boxes)
        if progress and (i % 50 == 0 or i == n - 1):
            progress(f"composites ({split})", i + 1, n)


def _write_pseudo(image: np.ndarray, mask, box: Box, out: Path, split: str, name: str, size: int) -> None:
    import cv2
    from scipy import ndimage

    labels, _count = ndimage.label(mask.alpha >= 0.5)
    x1, y1, x2, y2 = box.as_int()
    main = np.bincount(labels[y1:y2, x1:x2].ravel())[1:].argmax() + 1  # the piece the judge boxed
    piece = (labels == main).astype(np.float32)
    scale = min(1.0, size / max(image.shape[:2]))
    if scale < 1:
        dims = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, dims, interpolation=cv2.INTER_AREA)
        piece = cv2.resize(piece, dims, interpolation=cv2.INTER_LINEAR)
        box = Box(box.x1 * scale, box.y1 * scale, box.x2 * scale, box.y2 * scale, box.score, box.label)
    _write(image, (box,), (piece,), out, split, name)


def _write(image: np.ndarray, boxes, masks, out: Path, split: str, name: str) -> None:
    """The image and its label file: one line per product, its outline as a polygon (YOLO
    segmentation format, which detection training reads as the polygon's box) or, when the mask
    gives no outline, its box."""
    from PIL import Image

    h, w = image.shape[:2]
    Image.fromarray(image).save(out / "images" / split / f"{name}.jpg", "JPEG", quality=92)
    lines = []
    for b, m in zip(boxes, masks):
        poly = outline(m) if m is not None else None
        if poly is not None:
            lines.append("0 " + " ".join(f"{x / w:.5f} {y / h:.5f}" for x, y in poly))
        else:
            lines.append(f"0 {(b.x1 + b.x2) / 2 / w:.6f} {(b.y1 + b.y2) / 2 / h:.6f} {(b.x2 - b.x1) / w:.6f} "
                         f"{(b.y2 - b.y1) / h:.6f}")
    (out / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def outline(alpha: np.ndarray, threshold: float = 0.5) -> np.ndarray | None:
    """The largest outer contour of ``alpha >= threshold``, simplified to within 0.3% of the image's
    diagonal: (N, 2) pixel points, N >= 3, or None."""
    import cv2

    binary = (alpha >= threshold).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    biggest = max(contours, key=cv2.contourArea)
    eps = 0.003 * float(np.hypot(*alpha.shape))
    poly = cv2.approxPolyDP(biggest, eps, True).reshape(-1, 2).astype(np.float64)
    if len(poly) < 3:
        return None
    poly[:, 0] = np.clip(poly[:, 0] + 0.5, 0, alpha.shape[1])  # pixel centres to edges, roughly
    poly[:, 1] = np.clip(poly[:, 1] + 0.5, 0, alpha.shape[0])
    return poly


def _stem(folder: Path, path: Path) -> str:
    rel = path.relative_to(folder).with_suffix("")
    return (folder.name + "-" + "-".join(rel.parts)).replace(" ", "_")


def _small(image: np.ndarray) -> np.ndarray:
    import cv2

    scale = CUTOUT_SIDE * 2 / max(image.shape[:2])
    if scale >= 1:
        return image
    return cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def _small_cutout(cut: Cutout) -> Cutout:
    import cv2

    scale = CUTOUT_SIDE / max(cut.rgb.shape[:2])
    if scale >= 1:
        return cut
    size = (max(1, round(cut.rgb.shape[1] * scale)), max(1, round(cut.rgb.shape[0] * scale)))
    return Cutout(cv2.resize(cut.rgb, size, interpolation=cv2.INTER_AREA),
                  cv2.resize(cut.alpha, size, interpolation=cv2.INTER_LINEAR), cut.source)

