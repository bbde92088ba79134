"""Frozen data types passed between pipeline stages.

Every stage speaks these types and nothing else: images are RGB ``uint8`` arrays of
shape ``(H, W, 3)``, boxes are ``xyxy`` pixel coordinates, vectors are ``float32``.
Each type validates itself on construction and says what it expected.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

SIGNALS = ("embedding", "colour", "tags", "text", "verify", "semantic")
"""The fusion ranker's signals, in the order of its score matrix's columns.  ``semantic`` (typed words
against the product's pictures in word space) counts only when a search has typed words."""
PHOTO_SIGNALS = SIGNALS[:5]
"""The signals a photo alone gives (what ``skulens tune`` learns weights for)."""


def check_image(image: np.ndarray) -> np.ndarray:
    """Return ``image`` if it is the canonical RGB uint8 HxWx3 form, else raise."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected a non-empty image, got shape {image.shape}")
    return image


@dataclass(frozen=True, eq=False)
class Mask:
    """Foreground probability per pixel, ``float32`` in [0, 1], shape ``(H, W)``."""

    alpha: np.ndarray

    def __post_init__(self) -> None:
        a = self.alpha
        if not isinstance(a, np.ndarray) or a.ndim != 2:
            raise ValueError(f"expected a 2-d alpha array, got {getattr(a, 'shape', type(a))}")
        if a.dtype != np.float32:
            object.__setattr__(self, "alpha", a.astype(np.float32))
        if a.size and (float(np.nanmin(a)) < 0.0 or float(np.nanmax(a)) > 1.0):
            raise ValueError("expected alpha values in [0, 1]")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.alpha.shape[0]), int(self.alpha.shape[1]))

    def binary(self, threshold: float = 0.5) -> np.ndarray:
        return self.alpha >= threshold

    def coverage(self, threshold: float = 0.5) -> float:
        """Fraction of pixels in the foreground."""
        return float(self.binary(threshold).mean()) if self.alpha.size else 0.0

    def crop(self, box: "Box") -> "Mask":
        x1, y1, x2, y2 = box.as_int()
        return Mask(self.alpha[y1:y2, x1:x2])


@dataclass(frozen=True, eq=False)
class Box:
    """An axis-aligned box in pixel coordinates (``x1 < x2``, ``y1 < y2``)."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0
    label: str = "object"
    mask: Mask | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        coords = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(float(c)) for c in coords):
            raise ValueError(f"expected finite box coordinates, got {coords}")
        if not (self.x2 > self.x1 and self.y2 > self.y1):
            raise ValueError(f"expected x1 < x2 and y1 < y2, got {coords}")
        if not 0.0 <= float(self.score) <= 1.0:
            raise ValueError(f"expected a score in [0, 1], got {self.score}")

    @classmethod
    def full(cls, width: int, height: int, label: str = "image") -> "Box":
        return cls(0.0, 0.0, float(width), float(height), 1.0, label)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return self.width * self.height

    def clip(self, width: int, height: int) -> "Box":
        """The part of the box inside a ``width`` x ``height`` image (at least 1 px)."""
        x1 = float(min(max(self.x1, 0.0), width - 1.0))
        y1 = float(min(max(self.y1, 0.0), height - 1.0))
        x2 = float(max(min(self.x2, float(width)), x1 + 1.0))
        y2 = float(max(min(self.y2, float(height)), y1 + 1.0))
        return Box(x1, y1, x2, y2, self.score, self.label, self.mask)

    def expand(self, ratio: float, width: int, height: int) -> "Box":
        """Grow by ``ratio`` of its size on every side, clipped to the image."""
        dx, dy = self.width * ratio, self.height * ratio
        grown = Box(self.x1 - dx, self.y1 - dy, self.x2 + dx, self.y2 + dy, self.score, self.label)
        return grown.clip(width, height)

    def as_int(self) -> tuple[int, int, int, int]:
        """Integer pixel bounds usable for slicing (never empty)."""
        x1, y1 = int(math.floor(self.x1)), int(math.floor(self.y1))
        x2 = max(int(math.ceil(self.x2)), x1 + 1)
        y2 = max(int(math.ceil(self.y2)), y1 + 1)
        return x1, y1, x2, y2

    def iou(self, other: "Box") -> float:
        ix = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def to_list(self) -> list[float]:
        return [round(float(v), 1) for v in (self.x1, self.y1, self.x2, self.y2)]


@dataclass(frozen=True, eq=False)
class Palette:
    """Dominant colours in CIELAB (``(K, 3)`` float32) with weights summing to 1."""

    colors: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        c = np.asarray(self.colors, dtype=np.float32).reshape(-1, 3)
        w = np.asarray(self.weights, dtype=np.float32).reshape(-1)
        if len(c) != len(w):
            raise ValueError(f"expected one weight per colour, got {len(c)} colours, {len(w)} weights")
        if len(w) and (np.any(w < 0) or abs(float(w.sum()) - 1.0) > 1e-3):
            raise ValueError(f"expected non-negative weights summing to 1, got sum {float(w.sum())}")
        object.__setattr__(self, "colors", c)
        object.__setattr__(self, "weights", w)

    @classmethod
    def empty(cls) -> "Palette":
        return cls(np.zeros((0, 3), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.weights)

    def to_json(self) -> dict:
        return {"lab": np.round(self.colors, 2).tolist(), "weights": np.round(self.weights, 4).tolist()}

    @classmethod
    def from_json(cls, data: dict) -> "Palette":
        if not data or not data.get("weights"):
            return cls.empty()
        w = np.asarray(data["weights"], np.float32)
        return cls(np.asarray(data["lab"], np.float32), w / w.sum())


@dataclass(frozen=True, eq=False)
class OcrText:
    """Words read from an image with their confidences in [0, 1]."""

    tokens: tuple[str, ...]
    confidences: np.ndarray

    def __post_init__(self) -> None:
        conf = np.asarray(self.confidences, dtype=np.float32).reshape(-1)
        if len(conf) != len(self.tokens):
            raise ValueError(f"expected one confidence per token, got {len(self.tokens)} and {len(conf)}")
        if len(conf) and (np.any(conf < 0) or np.any(conf > 1)):
            raise ValueError("expected confidences in [0, 1]")
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "confidences", conf)

    @classmethod
    def empty(cls) -> "OcrText":
        return cls((), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.tokens)

    def to_json(self) -> list[dict]:
        return [{"word": t, "confidence": round(float(c), 3)} for t, c in zip(self.tokens, self.confidences)]

    @classmethod
    def from_json(cls, data: list[dict]) -> "OcrText":
        if not data:
            return cls.empty()
        return cls(tuple(d["word"] for d in data), np.asarray([d["confidence"] for d in data], np.float32))


@dataclass(frozen=True, eq=False)
class Tags:
    """Visual labels with scores in [0, 1], best first."""

    labels: tuple[str, ...]
    scores: np.ndarray

    def __post_init__(self) -> None:
        s = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(s) != len(self.labels):
            raise ValueError(f"expected one score per label, got {len(self.labels)} and {len(s)}")
        if len(s) and (np.any(s < 0) or np.any(s > 1 + 1e-6)):
            raise ValueError("expected tag scores in [0, 1]")
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "scores", np.clip(s, 0.0, 1.0))

    @classmethod
    def empty(cls) -> "Tags":
        return cls((), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.labels)

    def as_dict(self) -> dict[str, float]:
        return {label: float(score) for label, score in zip(self.labels, self.scores)}

    def to_json(self) -> list[dict]:
        return [{"label": lb, "score": round(float(s), 4)} for lb, s in zip(self.labels, self.scores)]

    @classmethod
    def from_json(cls, data: list[dict]) -> "Tags":
        if not data:
            return cls.empty()
        return cls(tuple(d["label"] for d in data), np.asarray([d["score"] for d in data], np.float32))


_SIFT_MAGIC = b"SIFT1"
_SIFT_HEADER = struct.Struct("<5sI")


@dataclass(frozen=True, eq=False)
class LocalFeatures:
    """Keypoints of one image region for geometric verification: positions (pixels of the region
    scaled to the verifier's side) and SIFT descriptors (128 bytes each: SIFT values fit in uint8)."""

    points: np.ndarray  # (N, 2) float32
    descriptors: np.ndarray  # (N, 128) uint8

    def __post_init__(self) -> None:
        if self.points.shape != (len(self.descriptors), 2) or self.descriptors.shape[1:] != (128,):
            raise ValueError(f"expected (N, 2) points and (N, 128) descriptors, got {self.points.shape} "
                             f"and {self.descriptors.shape}")

    def __len__(self) -> int:
        return len(self.descriptors)

    @classmethod
    def empty(cls) -> "LocalFeatures":
        return cls(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8))

    def to_bytes(self) -> bytes:
        pts = np.ascontiguousarray(self.points, np.float16)  # sub-pixel precision is not needed
        return _SIFT_HEADER.pack(_SIFT_MAGIC, len(self)) + pts.tobytes() + np.ascontiguousarray(self.descriptors).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LocalFeatures":
        magic, n = _SIFT_HEADER.unpack_from(data)
        if magic != _SIFT_MAGIC or len(data) != _SIFT_HEADER.size + n * (4 + 128):
            raise ValueError(f"not a SIFT feature record ({len(data)} bytes)")
        start = _SIFT_HEADER.size
        points = np.frombuffer(data, np.float16, 2 * n, start).astype(np.float32).reshape(n, 2)
        descriptors = np.frombuffer(data, np.uint8, 128 * n, start + 4 * n).reshape(n, 128)
        return cls(points, descriptors)


@dataclass(frozen=True, eq=False)
class ObjectFeatures:
    """Everything the pipeline extracted for one object (or one whole image).

    ``vectors`` maps a region name (``"full"``: the whole image, ``"crop"``: the object's
    box) to its L2-normalised embedding; the ranker decides how to use each.
    """

    box: Box
    vectors: dict[str, np.ndarray]
    palette: Palette
    ocr: OcrText
    tags: Tags
    mask_coverage: float = 0.0
    local: LocalFeatures | None = None  # keypoints of the box, for geometric verification

    def __post_init__(self) -> None:
        if not self.vectors:
            raise ValueError("expected at least one region vector")
        dims = {v.shape for v in self.vectors.values()}
        if len(dims) != 1 or len(next(iter(dims))) != 1:
            raise ValueError(f"expected 1-d vectors of one size, got {sorted(dims)}")


@dataclass(frozen=True, eq=False)
class Match:
    """One ranked SKU with its fused score and the score of every signal."""

    sku: str
    score: float
    signals: dict[str, float]
    image_id: int | None = None
    title: str = ""

    def __post_init__(self) -> None:
        missing = set(SIGNALS) - set(self.signals)
        if missing:
            raise ValueError(f"expected a score for every signal, missing {sorted(missing)}")
        for name, value in self.signals.items():
            if not 0.0 <= value <= 1.0 + 1e-6:
                raise ValueError(f"expected signal {name} in [0, 1], got {value}")


@dataclass(frozen=True)
class ImageHashes:
    """64-bit hashes as Python ints; ``phash_variants`` are (mirror, 90, 180, 270 degrees);
    ``hues`` a hue histogram of the coloured pixels, ``chroma`` the share of coloured pixels."""

    phash: int
    dhash: int
    phash_variants: tuple[int, ...] = ()
    hues: tuple[float, ...] = ()
    chroma: float = 0.0

    def __post_init__(self) -> None:
        for h in (self.phash, self.dhash, *self.phash_variants):
            if not (isinstance(h, int) and 0 <= h < 1 << 64):
                raise ValueError(f"expected 64-bit unsigned hashes, got {h!r}")
        if any(v < 0 for v in self.hues) or not 0 <= self.chroma <= 1:
            raise ValueError(f"expected a non-negative hue histogram and chroma in [0, 1], got {self.chroma}")

    def to_json(self) -> list:
        return [f"{self.phash:016x}", f"{self.dhash:016x}", [f"{v:016x}" for v in self.phash_variants],
                list(self.hues), self.chroma]

    @classmethod
    def from_json(cls, data: list) -> "ImageHashes":
        return cls(int(data[0], 16), int(data[1], 16), tuple(int(v, 16) for v in data[2]), tuple(data[3]),
                   float(data[4]))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@dataclass(frozen=True)
class Verification:
    inliers: int
    ratio: float  # inliers / keypoints of the image with fewer
    hue_shift: float = 0.0  # median hue difference at the matched points, in turns (0 to 0.5)
    differing: float | None = None  # share of the matched region whose pixels differ once aligned; None: unknown
