"""The interfaces every backend implements: one working method each, plus what callers may ask of
a stage (its name, whether its boxes carry masks, its embedder's size and runtime...), so no caller
probes a stage with ``getattr``.

Backends live in ``detectors/``, ``features/`` and ``fusion/``; only
:mod:`pipeline.build` picks which one runs.  Constructors take their settings section
and do no heavy work: models load lazily on first use (or in ``warmup()``, which the service calls
at start-up; a stage without a model makes it a no-op).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from core.filters import SearchFilters
from core.naming import TrainedEmbedder
from core.types import Box, LocalFeatures, Mask, OcrText, Palette, Tags, Verification


@runtime_checkable
class Detector(Protocol):
    @property
    def name(self) -> str | None:
        """Which trained weights (feature caches key on it); None for boxes made from another stage."""

    @property
    def own_masks(self) -> bool:
        """Whether its boxes come with masks of its own (a segmentation model)."""

    def warmup(self) -> None: ...

    def detect(self, image: np.ndarray) -> list[Box]:
        """Boxes of the objects in an RGB uint8 image, best first."""


@runtime_checkable
class BackgroundRemover(Protocol):
    def warmup(self) -> None: ...

    def remove(self, image: np.ndarray) -> Mask:
        """Foreground mask of the image, same height and width."""


@runtime_checkable
class ColorExtractor(Protocol):
    def extract(self, image: np.ndarray, mask: Mask | None) -> Palette:
        """Dominant colours of the masked pixels (all pixels when ``mask`` is None)."""


@runtime_checkable
class TextReader(Protocol):
    def warmup(self) -> None: ...

    def read(self, image: np.ndarray) -> OcrText:
        """Words printed in the image."""


class TextEmbedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit vectors; a text without a word gives a zero row."""
        ...


@runtime_checkable
class Embedder(Protocol):
    name: str
    """What the catalogue records beside its vectors (:mod:`core.naming`)."""
    dim: int
    input_size: int
    """The side in pixels images are letterboxed to."""
    runtime: str
    """'torch', 'onnx' or 'onnx-int8'."""
    trained: TrainedEmbedder | None
    """The fine-tuned weights it runs (None: ImageNet's)."""

    def warmup(self) -> None: ...

    def embed(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[Tags]]:
        """L2-normalised float32 ``(N, dim)`` vectors and the visual tags of each image."""


@runtime_checkable
class ImageHasher(Protocol):
    name: str

    def hash(self, image: np.ndarray):
        """Perceptual hashes of the image (``features.perceptual_hash.ImageHashes``)."""


@runtime_checkable
class PairVerifier(Protocol):
    name: str

    def keypoints(self, image: np.ndarray):
        """Local features of the image, for ``verify``."""

    def verify(self, a, b) -> Verification:
        """How well two images' local features agree under one geometric transform."""

    def accepts(self, v: Verification) -> bool:
        """Whether that agreement makes the two images copies."""

    def contradicts(self, v: Verification) -> bool:
        """Whether the two images differ too much to be copies, whatever else matched them."""


class IndexSnapshotLike(Protocol):
    def write(self, path: Path) -> None:
        """The index file and its stamp, each by rename."""


@runtime_checkable
class VectorIndex(Protocol):
    kind: str
    """'flat', 'ivf', 'ivf-sq8', 'ivf-sq4' or 'hnsw' (FAISS), or 'milvus'."""
    filters_inside: bool
    """Whether :meth:`search` applies search filters itself (Milvus: only vectors of products the
    filters accept are searched); otherwise it ignores them and the ranker filters its candidates."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, vectors: np.ndarray, k: int, filters: SearchFilters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Similarities and ids, each ``(len(vectors), k)``; missing hits have id -1."""

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids``, ``(len(ids), dim)``."""

    def save(self, path: Path, generation: int) -> None:
        """Write the index atomically, stamped with the catalogue database's generation."""

    def snapshot(self, generation: int) -> "IndexSnapshotLike":
        """A copy in memory to :meth:`IndexSnapshotLike.write` later, outside the lock that changes the index."""

    def ids(self) -> np.ndarray:
        """Every id it holds, sorted."""

    def __len__(self) -> int: ...

@runtime_checkable
class GeometricVerifier(Protocol):
    """Local features of a product's region, and how many of them a candidate's picture explains
    under one perspective transform (the ``verify`` signal)."""

    name: str

    def features(self, image: np.ndarray) -> LocalFeatures:
        """Keypoints and descriptors of the image."""

    def inliers(self, query: LocalFeatures, candidate: LocalFeatures) -> int:
        """Matches between the two that one transform explains."""

    def score(self, inliers: int) -> float:
        """That count as evidence in [0, 1]."""
