"""Training data for our product detector, made from real photos by the project itself.

Two kinds of labelled images, both from the background-removal stage acting as the teacher:

- **pseudo-labels**: a real photo whose teacher mask passes :func:`judge_mask` gets the box of its
  main foreground component.  The teacher is trusted per source: a folder where too few masks pass
  (hand-held shelf photos, where IS-Net keeps a thumb, a cap or fragments) gives no pseudo-labels
  at all, because even its tidy-looking masks are suspect there.
- **composites**: products cut out with credible masks are pasted, several per image, at varied
  scale and place, onto backgrounds that hold no product (the cut-out photo with its product
  painted out, its tiles shuffled and blurred, or a synthetic plain, gradient or noise field).
  Their boxes are exact: the visible part of each pasted alpha.

Everything is drawn from a seeded generator, so a run is reproducible from its inputs and seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from core.types import Box, Mask, check_image

MIN_COVER, MAX_COVER = 0.03, 0.9  # the foreground share of a credible mask
MIN_MAIN_SHARE = 0.85  # the main component holds at least this share of the foreground
MAX_UNSURE = 0.25  # pixels with alpha in (0.2, 0.8), as a share of the foreground
MAX_BORDERS = 2  # a product cut by three or four image edges is a close-up or a wall of products
MIN_VISIBLE = 0.4  # a pasted product more hidden than this by later ones loses its box


@dataclass(frozen=True)
class Judgement:
    credible: bool
    reason: str  # "ok" or why not, in words
    code: str = "ok"  # "ok", "cover", "pieces", "unsure" or "edges"
    box: Box | None = None  # the main component's box when credible


def judge_mask(mask: Mask, threshold: float = 0.5) -> Judgement:
    """Whether a teacher mask is a believable single product: a sensible share of the image,
    one main connected piece, confident edges, not cut by three or more image edges."""
    alpha = mask.alpha
    fg = alpha >= threshold
    cover = float(fg.mean()) if fg.size else 0.0
    if not MIN_COVER <= cover <= MAX_COVER:
        return Judgement(False, f"foreground covers {cover:.0%} of the image", "cover")
    labels, count = ndimage.label(fg)
    sizes = np.bincount(labels.ravel())[1:]
    main = int(np.argmax(sizes)) + 1
    share = float(sizes[main - 1] / fg.sum())
    if share < MIN_MAIN_SHARE:
        return Judgement(False, f"main piece holds {share:.0%} of the foreground ({count} pieces)", "pieces")
    unsure = float(((alpha > 0.2) & (alpha < 0.8)).sum() / fg.sum())
    if unsure > MAX_UNSURE:
        return Judgement(False, f"{unsure:.0%} of the foreground is unsure", "unsure")
    ys, xs = np.nonzero(labels == main)
    h, w = fg.shape
    borders = int(ys.min() == 0) + int(xs.min() == 0) + int(ys.max() == h - 1) + int(xs.max() == w - 1)
    if borders > MAX_BORDERS:
        return Judgement(False, f"cut by {borders} image edges", "edges")
    box = Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1), 1.0, "product")
    return Judgement(True, "ok", "ok", box)


@dataclass(frozen=True)
class Cutout:
    """A product cut out of a photo: RGB pixels and their alpha, cropped to the product's box."""

    rgb: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32 in [0, 1]
    source: str

    def __post_init__(self) -> None:
        check_image(self.rgb)
        if self.alpha.shape != self.rgb.shape[:2]:
            raise ValueError(f"expected alpha of shape {self.rgb.shape[:2]}, got {self.alpha.shape}")


def cut_out(image: np.ndarray, mask: Mask, box: Box, source: str) -> Cutout:
    x1, y1, x2, y2 = box.as_int()
    alpha = np.where(mask.alpha[y1:y2, x1:x2] >= 0.05, mask.alpha[y1:y2, x1:x2], 0.0).astype(np.float32)
    return Cutout(np.ascontiguousarray(image[y1:y2, x1:x2]), alpha, source)


def painted_out(image: np.ndarray, mask: Mask) -> np.ndarray:
    """The photo with its product painted out (OpenCV inpainting over the dilated mask): a real
    background that holds no product."""
    import cv2

    hole = (mask.alpha >= 0.1).astype(np.uint8) * 255
    hole = cv2.dilate(hole, np.ones((15, 15), np.uint8))
    scale = 256 / max(image.shape[:2])  # inpaint small (it is slow), then blow up: a soft fill is enough
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    small_hole = cv2.resize(hole, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
    filled = cv2.inpaint(small, small_hole, 5, cv2.INPAINT_TELEA)
    filled = cv2.resize(filled, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    keep = (hole == 0)[..., None]
    return np.where(keep, image, filled).astype(np.uint8)


def shuffled_tiles(image: np.ndarray, rng: np.random.Generator, tiles: int = 4) -> np.ndarray:
    """The photo cut into tiles x tiles, shuffled and blurred: its colours without its objects."""
    import cv2

    h, w = image.shape[:2]
    th, tw = max(1, h // tiles), max(1, w // tiles)
    cells = [image[r * th:(r + 1) * th, c * tw:(c + 1) * tw] for r in range(tiles) for c in range(tiles)]
    order = rng.permutation(len(cells))
    rows = [np.concatenate([cells[order[r * tiles + c]] for c in range(tiles)], axis=1) for r in range(tiles)]
    out = np.concatenate(rows, axis=0)
    return cv2.GaussianBlur(out, (0, 0), max(2.0, min(h, w) / 60))


def synthetic_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A plain colour, a two-colour gradient, or smooth noise."""
    from PIL import Image

    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    style = int(rng.integers(0, 3))
    if style == 0:
        return np.broadcast_to(a.astype(np.uint8), (size, size, 3)).copy()
    if style == 1:
        t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        return np.broadcast_to(a * (1 - t) + b * t, (size, size, 3)).astype(np.uint8)
    noise = rng.integers(0, 256, (max(2, size // 48), max(2, size // 48), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(noise).resize((size, size), Image.Resampling.BICUBIC))


@dataclass(frozen=True)
class Composite:
    image: np.ndarray  # (size, size, 3) uint8
    boxes: tuple[Box, ...]
    masks: tuple[np.ndarray, ...]  # visible alpha of each box's product, full image size


def compose(background: np.ndarray, cutouts: list[Cutout], size: int, rng: np.random.Generator) -> Composite:
    """Paste ``cutouts`` (in order) onto ``background`` resized to size x size; each gets a side of
    15-60% of the canvas, a random place (up to a sixth outside the frame), a mirror half the time
    and a light change; later pastes hide earlier ones, whose boxes then shrink to what shows."""
    import cv2

    canvas = cv2.resize(background, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    layers: list[np.ndarray] = []  # the visible alpha of each paste
    pasted: list[float] = []  # its whole area when pasted
    for cut in cutouts:
        side = rng.uniform(0.15, 0.6) * size
        scale = side / max(cut.rgb.shape[:2])
        w, h = max(2, round(cut.rgb.shape[1] * scale)), max(2, round(cut.rgb.shape[0] * scale))
        rgb = cv2.resize(cut.rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = cv2.resize(cut.alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        rgb = np.clip(rgb * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20), 0, 255)
        x0 = int(rng.integers(-w // 6, size - w + w // 6 + 1))
        y0 = int(rng.integers(-h // 6, size - h + h // 6 + 1))
        full = np.zeros((size, size), np.float32)
        sx, sy = max(0, -x0), max(0, -y0)
        ex, ey = min(w, size - x0), min(h, size - y0)
        if ex <= sx or ey <= sy:
            continue
        full[y0 + sy:y0 + ey, x0 + sx:x0 + ex] = alpha[sy:ey, sx:ex]
        region = canvas[y0 + sy:y0 + ey, x0 + sx:x0 + ex]
        a = alpha[sy:ey, sx:ex, None]
        canvas[y0 + sy:y0 + ey, x0 + sx:x0 + ex] = region * (1 - a) + rgb[sy:ey, sx:ex] * a
        layers = [lay * (1 - full) for lay in layers]  # what later pastes hide
        layers.append(full)
        pasted.append(float((full >= 0.5).sum()))
    boxes, masks = [], []
    for lay, whole in zip(layers, pasted):
        visible = lay >= 0.5
        if not visible.any() or visible.sum() < MIN_VISIBLE * whole:
            continue
        ys, xs = np.nonzero(visible)
        boxes.append(Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1), 1.0, "product"))
        masks.append(lay)
    return Composite(canvas.astype(np.uint8), tuple(boxes), tuple(masks))


Progress = Callable[[str, int, int], None]
