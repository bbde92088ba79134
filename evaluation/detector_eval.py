"""Measuring a product detector on the held-out part of a data set from ``skulens detector train``.

- **Box quality on held-out composites**: average precision and recall at IoU 0.5 (one class),
  over every ``composite-*`` image of the data set's val split, whose boxes are exact.
- **Agreement with the teacher** on held-out real photos of the sources the teacher was trusted on
  (the val split's pseudo-labelled photos): IoU of the detector's best box with the teacher's box.
- **Speed**: milliseconds per photo for detection alone (masks included), after a warm-up, on the
  val split's real photos.

The split was made by a hash of each photo's path before training, so none of these images (nor
any product or background cut from them) was seen in training.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.types import Box

Progress = Callable[[str, int, int], None]


def read_labels(label_file: Path, width: int, height: int) -> list[Box]:
    """YOLO label lines as pixel boxes: ``class xc yc w h`` or a polygon ``class x1 y1 x2 y2 ...``
    (normalised), whose box is the polygon's extent."""
    boxes = []
    if not label_file.is_file():
        return boxes
    for line in label_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5:
            xc, yc, w, h = (float(v) for v in parts[1:])
            boxes.append(Box((xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width,
                             (yc + h / 2) * height, 1.0, "product"))
        elif len(parts) >= 7 and len(parts) % 2 == 1:
            pts = np.asarray([float(v) for v in parts[1:]]).reshape(-1, 2)
            boxes.append(Box(pts[:, 0].min() * width, pts[:, 1].min() * height, pts[:, 0].max() * width,
                             pts[:, 1].max() * height, 1.0, "product"))
    return boxes


def read_polygon_mask(label_file: Path, width: int, height: int) -> np.ndarray | None:
    """The first label's outline, filled, as a boolean image (None for a box label or no label)."""
    from PIL import Image, ImageDraw

    if not label_file.is_file():
        return None
    for line in label_file.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 7 and len(parts) % 2 == 1:
            pts = np.asarray([float(v) for v in parts[1:]]).reshape(-1, 2) * (width, height)
            canvas = Image.new("L", (width, height), 0)
            ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts], fill=1)
            return np.asarray(canvas, bool)
        return None
    return None


def box_mask_iou(box: Box, truth: np.ndarray, threshold: float = 0.5) -> float | None:
    """IoU of a box's own mask, placed in the photo, with a boolean ground-truth mask (None: no mask)."""
    if box.mask is None:
        return None
    pred = np.zeros_like(truth)
    x1, y1, x2, y2 = box.as_int()
    part = box.mask.binary(threshold)
    pred[y1:y1 + part.shape[0], x1:x1 + part.shape[1]] = part[: max(0, y2 - y1), : max(0, x2 - x1)]
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 0.0


def average_precision(found: list[tuple[float, bool]], positives: int) -> float:
    """Area under the (all-point interpolated) precision-recall curve of scored detections, each
    marked true or false positive, against ``positives`` ground-truth boxes."""
    if positives == 0:
        return 0.0
    found = sorted(found, key=lambda t: -t[0])
    tp = np.cumsum([1.0 if ok else 0.0 for _, ok in found])
    fp = np.cumsum([0.0 if ok else 1.0 for _, ok in found])
    recall = np.concatenate([[0.0], tp / positives, [1.0]]) if found else np.array([0.0, 1.0])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-9), [0.0]]) if found else np.array([1.0, 0.0])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def match(pred: list[Box], truth: list[Box], threshold: float = 0.5) -> list[tuple[float, bool]]:
    """Greedy matching by score: each predicted box is a true positive when it overlaps a still
    unmatched ground-truth box at IoU >= threshold."""
    taken = [False] * len(truth)
    out = []
    for p in sorted(pred, key=lambda b: -b.score):
        best, best_iou = -1, threshold
        for j, t in enumerate(truth):
            if not taken[j] and (iou := p.iou(t)) >= best_iou:
                best, best_iou = j, iou
        if best >= 0:
            taken[best] = True
        out.append((p.score, best >= 0))
    return out


def _images(root: Path, composites: bool) -> list[Path]:
    files = sorted((Path(root) / "images" / "val").glob("*.jpg"))
    return [f for f in files if f.name.startswith("composite-") == composites]


def composite_scores(detect: Callable[[np.ndarray], list[Box]], root: Path, limit: int | None = None,
                     progress: Progress | None = None) -> dict:
    """AP@0.5 and recall@0.5 over the val composites (``detect`` should keep low-confidence boxes)."""
    from PIL import Image

    files = _images(root, composites=True)[:limit]
    found: list[tuple[float, bool]] = []
    positives = hits = 0
    for n, f in enumerate(files, 1):
        image = np.asarray(Image.open(f).convert("RGB"))
        truth = read_labels(root / "labels" / "val" / f"{f.stem}.txt", image.shape[1], image.shape[0])
        matched = match(detect(image), truth)
        found.extend(matched)
        positives += len(truth)
        hits += sum(ok for _, ok in matched)
        if progress:
            progress("composites", n, len(files))
    return {"images": len(files), "boxes": positives, "ap50": round(average_precision(found, positives), 4),
            "recall50": round(hits / positives, 4) if positives else None}


def teacher_agreement(detect: Callable[[np.ndarray], list[Box]], root: Path, limit: int | None = None,
                      progress: Progress | None = None) -> dict:
    """IoU of the detector's best box with the teacher's box on the val split's real photos, and
    for a detector that gives masks, IoU of that box's mask with the teacher's outline."""
    from PIL import Image

    files = _images(root, composites=False)[:limit]
    ious, mask_ious, missed_outlines = [], [], 0
    for n, f in enumerate(files, 1):
        image = np.asarray(Image.open(f).convert("RGB"))
        h, w = image.shape[:2]
        label = root / "labels" / "val" / f"{f.stem}.txt"
        truth = read_labels(label, w, h)
        boxes = detect(image)
        if truth:
            best = max(boxes, key=lambda b: b.score) if boxes else None
            ious.append(best.iou(truth[0]) if best else 0.0)
            outline = read_polygon_mask(label, w, h)
            if outline is not None and best is not None and best.mask is not None:
                mask_ious.append(box_mask_iou(best, outline))
            elif outline is not None and best is None:
                missed_outlines += 1
        if progress:
            progress("teacher agreement", n, len(files))
    arr = np.asarray(ious)
    out = {"photos": len(ious), "mean_iou": round(float(arr.mean()), 4) if len(arr) else None,
           "iou_at_least_0.5": round(float((arr >= 0.5).mean()), 4) if len(arr) else None,
           "no_box": round(float((arr == 0).mean()), 4) if len(arr) else None}
    if mask_ious:  # a detector with masks: a photo it found nothing in scores 0
        out["mean_mask_iou"] = round(float(np.mean(mask_ious + [0.0] * missed_outlines)), 4)
    return out


def detection_speed(detect: Callable[[np.ndarray], list[Box]], images: list[np.ndarray], warmup: int = 3) -> dict:
    for im in images[:warmup]:
        detect(im)
    times = []
    for im in images:
        t0 = time.perf_counter()
        detect(im)
        times.append((time.perf_counter() - t0) * 1000)
    return {"photos": len(times), "p50_ms": round(float(np.percentile(times, 50)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1)}


def detector_markdown(res: dict) -> str:
    c, t, s = res["composites"], res["teacher"], res["speed"]
    card = res.get("card", {})
    lines = [f"Weights `{res['weights']}` ({card.get('settings', {}).get('model', '?')}, trained at "
             f"{card.get('settings', {}).get('image_size', '?')} px for {card.get('metrics_on_val', card.get('metrics_on_val_composites', {})).get('epochs', '?')} "
             f"epochs in {card.get('seconds', '?')} s on {card.get('machine', '?')}); input size {res['image_size']} px. "
             "Held-out images: the data set's val split (photos split by a hash of their path before training).", "",
             "| measure | value |", "|---|---|",
             f"| composites: AP@0.5 ({c['images']} images, {c['boxes']} boxes) | {c['ap50']} |",
             f"| composites: recall@0.5 | {c['recall50']} |",
             f"| real photos, trusted sources: mean IoU of the best box with the teacher's ({t['photos']} photos) | {t['mean_iou']} |",
             f"| real photos: IoU >= 0.5 | {t['iou_at_least_0.5']} |",
             f"| real photos: no box at all | {t['no_box']} |",
             *([f"| real photos: mean IoU of that box's mask with the teacher's outline | {t['mean_mask_iou']} |"]
               if t.get("mean_mask_iou") is not None else []),
             f"| detection time per photo, CPU, p50 / p95 ({s['photos']} photos) | {s['p50_ms']} / {s['p95_ms']} ms |"]
    return "\n".join(lines)
