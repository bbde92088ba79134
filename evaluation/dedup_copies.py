"""Transformed copies of real images, for measuring near-duplicate detection.

Each copy applies one kind of change a re-uploaded listing photo goes through (a crop of up
to 20%, a resize, JPEG re-compression at quality 30-90, a small rotation, a brightness and
colour jitter, a text watermark, the background replaced using the mask stage) or a
chain of three of them (``combined``).  Everything is drawn from a seeded generator, so
the same originals always give the same copies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.types import Mask, check_image

KINDS = ("crop", "resize", "jpeg", "rotate", "jitter", "watermark", "background", "combined")
_SIMPLE = KINDS[:-1]
_WATERMARKS = ("SAMPLE", "© myshop", "best price!", "www.example.com", "NEW", "sold by acme")


@dataclass(frozen=True)
class Copy:
    kind: str
    image: np.ndarray
    jpeg_quality: int  # the quality it is saved at (re-compression is part of every upload)


def make_copy(image: np.ndarray, kind: str, rng: np.random.Generator,
              mask_of: Callable[[np.ndarray], Mask] | None = None) -> Copy:
    """One transformed copy of an RGB uint8 image; ``mask_of`` is needed for ``background``."""
    check_image(image)
    if kind not in KINDS:
        raise ValueError(f"expected a copy kind among {KINDS}, got {kind!r}")
    quality = int(rng.integers(85, 96))
    if kind == "combined":
        steps = rng.choice([k for k in _SIMPLE if mask_of is not None or k != "background"], 3, replace=False)
        steps = sorted(steps, key=lambda k: k != "background")  # the mask is the original image's
        out = image
        for step in steps:
            out, quality = _apply(out, str(step), rng, mask_of, quality)
        return Copy(kind, out, quality)
    out, quality = _apply(image, kind, rng, mask_of, quality)
    return Copy(kind, out, quality)


def _apply(image: np.ndarray, kind: str, rng: np.random.Generator, mask_of, quality: int) -> tuple[np.ndarray, int]:
    from PIL import Image, ImageEnhance

    pil = Image.fromarray(image)
    w, h = pil.size
    if kind == "crop":  # keep 80-100% of each side, anywhere in the frame
        cw, ch = round(w * rng.uniform(0.8, 1.0)), round(h * rng.uniform(0.8, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        pil = pil.crop((x, y, x + cw, y + ch))
    elif kind == "resize":
        s = rng.uniform(0.4, 1.6)
        pil = pil.resize((max(16, round(w * s)), max(16, round(h * s))), Image.Resampling.BICUBIC)
    elif kind == "jpeg":
        quality = int(rng.integers(30, 91))
    elif kind == "rotate":
        angle = rng.uniform(3, 10) * rng.choice([-1, 1])
        fill = tuple(int(v) for v in np.median(image.reshape(-1, 3), axis=0))
        pil = pil.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=fill)
    elif kind == "jitter":
        pil = ImageEnhance.Brightness(pil).enhance(rng.uniform(0.7, 1.3))
        pil = ImageEnhance.Contrast(pil).enhance(rng.uniform(0.8, 1.2))
        pil = ImageEnhance.Color(pil).enhance(rng.uniform(0.7, 1.3))
    elif kind == "watermark":
        pil = _watermark(pil, rng)
    elif kind == "background":
        if mask_of is None:
            raise ValueError("a background copy needs the mask stage (mask_of)")
        pil = Image.fromarray(_new_background(np.asarray(pil), mask_of(np.asarray(pil)), rng))
    return np.asarray(pil.convert("RGB")), quality


def _watermark(pil, rng: np.random.Generator):
    from PIL import Image, ImageDraw, ImageFont

    w, h = pil.size
    text = str(rng.choice(_WATERMARKS))
    font = ImageFont.load_default(size=max(10, round(min(w, h) * rng.uniform(0.06, 0.12))))
    layer = Image.new("RGBA", pil.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = int(rng.integers(0, max(1, w - (right - left))))
    y = int(rng.integers(0, max(1, h - (bottom - top))))
    shade = int(rng.choice([0, 255]))
    draw.text((x, y), text, font=font, fill=(shade, shade, shade, int(rng.integers(110, 200))))
    return Image.alpha_composite(pil.convert("RGBA"), layer)


def _new_background(image: np.ndarray, mask: Mask, rng: np.random.Generator) -> np.ndarray:
    """The product (mask) over a plain colour, a two-colour gradient, or smooth noise."""
    h, w = image.shape[:2]
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    style = int(rng.integers(0, 3))
    if style == 0:
        bg = np.broadcast_to(a, (h, w, 3)).astype(np.float32)
    elif style == 1:
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        bg = np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).astype(np.float32)
    else:
        from PIL import Image

        noise = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
        bg = np.asarray(Image.fromarray(noise).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    alpha = mask.alpha[..., None]
    return np.clip(image * alpha + bg * (1 - alpha), 0, 255).astype(np.uint8)
