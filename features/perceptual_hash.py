"""Perceptual hashes (pHash and dHash, 64 bits each) with the ``imagehash`` package (BSD-2-Clause).

A hash changes little under resizing, re-compression, light changes and small watermarks,
so a small Hamming distance between two hashes marks a re-uploaded copy.  Besides the
image as it is, the pHash of its mirror image and its three right-angle rotations is
kept, so a flipped or turned copy matches too.  The hashes come from one 32 x 32 grey
thumbnail, which costs less than decoding the image.

The hashes are blind to colour, so a hue histogram of the central part of the image rides
along: the same template in red and in green (two variants of one product) is not a copy.
"""

from __future__ import annotations

import numpy as np

from core.types import ImageHashes, check_image

THUMB = 32
HUE_BINS = 12
COLOUR_THUMB = 64
CENTRE = 0.8  # the hue histogram looks at the central 80% of each side (backgrounds get replaced)
MIN_SATURATION, MIN_VALUE = 0.25, 0.2  # a pixel below either has no reliable hue


class PerceptualHasher:
    """``hash(image) -> ImageHashes``; no model, nothing to load."""

    name = "phash-dhash-64-hue12"

    def hash(self, image: np.ndarray) -> ImageHashes:
        import imagehash
        from PIL import Image

        check_image(image)
        thumb = Image.fromarray(image).convert("L").resize((THUMB, THUMB), Image.Resampling.LANCZOS)
        variants = (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                    Image.Transpose.ROTATE_270)
        return ImageHashes(
            phash=_as_int(imagehash.phash(thumb)),
            dhash=_as_int(imagehash.dhash(thumb)),
            phash_variants=tuple(_as_int(imagehash.phash(thumb.transpose(t))) for t in variants),
            **hue_histogram(image),
        )


def hue_histogram(image: np.ndarray) -> dict:
    """``hues``: the share of each of 12 hue bins among coloured central pixels; ``chroma``: the
    share of central pixels that are coloured at all."""
    from PIL import Image

    h, w = image.shape[:2]
    mh, mw = round(h * (1 - CENTRE) / 2), round(w * (1 - CENTRE) / 2)
    centre = Image.fromarray(np.ascontiguousarray(image[mh:h - mh or h, mw:w - mw or w]))
    hsv = np.asarray(centre.resize((COLOUR_THUMB, COLOUR_THUMB), Image.Resampling.BILINEAR).convert("HSV"))
    hsv = hsv.reshape(-1, 3).astype(np.float32) / 255.0
    coloured = (hsv[:, 1] >= MIN_SATURATION) & (hsv[:, 2] >= MIN_VALUE)
    chroma = float(coloured.mean())
    if not coloured.any():
        return {"hues": (0.0,) * HUE_BINS, "chroma": 0.0}
    bins = np.minimum((hsv[coloured, 0] * HUE_BINS).astype(int), HUE_BINS - 1)
    hist = np.bincount(bins, minlength=HUE_BINS) / coloured.sum()
    return {"hues": tuple(round(float(v), 4) for v in hist), "chroma": round(chroma, 4)}


def _as_int(h) -> int:
    bits = np.asarray(h.hash, bool).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)
