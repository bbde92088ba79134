"""Real embeddings for the vector-index benchmark (``skulens bench --vector-data``), instead of
isotropic random vectors, which say nothing about how an approximate index fares on product photos.

- **Real vectors.** Product photos embedded whole by the catalogue's embedder: every image under
  the folders given (the shared data sets) and Fashion-MNIST's 70,000 product photos (Debian's
  ``dataset-fashion-mnist``, MIT licence; 28x28 grey, given to the embedder as RGB).  Embeddings are
  cached by the image's content hash in ``<data>/eval/vectors.sqlite3``, so a second run (or a run
  cut short) embeds only what is new.
- **Queries** are real photos kept out of the database: ``--vector-queries`` (e.g. the grocery val
  photos) and Fashion-MNIST's test images.
- **Growing past the real vectors.** A size above the real count is filled by interpolating between
  real neighbours: a new vector is ``normalise((1 - t) x_i + t x_j)`` for a random real ``x_i``, one of
  its 10 nearest real neighbours ``x_j`` and ``t`` uniform in [0.1, 0.5].  New points lie between
  real neighbours, inside the clusters the real photos form (a product's views, a class), so the
  neighbourhood structure an index has to find is the real one, only denser.  It is not new
  information: a million grown vectors are as hard as the real ones get when the catalogue is dense.
  A size at or below the real count is a random subset of the real vectors.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

from core.protocols import Embedder
from pipeline.database import FeatureCache

log = logging.getLogger(__name__)

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
NEIGHBOURS = 10
BATCH = 32

Loader = Callable[[], np.ndarray]


def folder_images(folders: Sequence[Path], exclude: Sequence[Path] = ()) -> list[tuple[str, Loader]]:
    """(content key, loader) of every image under ``folders``, minus those under ``exclude``."""
    skip = [Path(e).resolve() for e in exclude]
    out: list[tuple[str, Loader]] = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES or any(path.resolve().is_relative_to(s) for s in skip):
                continue
            out.append((hashlib.sha256(path.read_bytes()).hexdigest(),
                        lambda p=path: np.asarray(Image.open(p).convert("RGB"))))
    return out


def fashion_mnist(split: str, root: Path = FASHION_MNIST) -> list[tuple[str, Loader]]:
    """Fashion-MNIST's ``train`` (60,000) or ``t10k`` (10,000) images as (content key, loader)."""
    path = root / f"{split}-images-idx3-ubyte.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not there: install Debian's dataset-fashion-mnist (`make system`)")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    pixels = np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)
    return [(hashlib.sha256(img.tobytes()).hexdigest(), lambda img=img: np.repeat(img[:, :, None], 3, axis=2))
            for img in pixels]


def embed_cached(items: Sequence[tuple[str, Loader]], embedder: Embedder, cache: FeatureCache,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The whole-image embeddings of ``items`` in their order, from the cache or embedded now (an
    image that cannot be read is left out, with a warning)."""
    prefix = f"bench-vector:{embedder.name}:{embedder.dim}:"
    out = np.zeros((len(items), embedder.dim), np.float32)
    todo: list[int] = []
    for i, (key, _) in enumerate(items):
        hit = cache.cached_features(prefix + key)
        if hit is None:
            todo.append(i)
        else:
            out[i] = np.frombuffer(hit, np.float32)
    done, unreadable = len(items) - len(todo), []
    for start in range(0, len(todo), BATCH):
        batch, images = [], []
        for i in todo[start:start + BATCH]:
            try:
                images.append(items[i][1]())
                batch.append(i)
            except (OSError, ValueError) as exc:  # a corrupt file among the data set's images
                log.warning("skipping an image that cannot be read (%s)", exc)
                unreadable.append(i)
        vecs, _ = embedder.embed(images) if images else (np.zeros((0, embedder.dim), np.float32), [])
        for i, vec in zip(batch, vecs):
            out[i] = vec
            cache.cache_features(prefix + items[i][0], np.ascontiguousarray(vec, np.float32).tobytes())
        done += len(todo[start:start + BATCH])
        if progress:
            progress(done, len(items))
    log.info("%d real vectors: %d from the cache, %d embedded now, %d unreadable", len(items),
             len(items) - len(todo), len(todo) - len(unreadable), len(unreadable))
    return np.delete(out, unreadable, axis=0) if unreadable else out


BLOCK = 50_000


class Grown:
    """``n`` unit vectors grown from ``real`` (see the module docstring), made block by block on
    demand, so a catalogue of millions of vectors never needs them all in memory at once.  Block
    ``b`` depends only on ``seed`` and ``b``: the same vector comes back for the same index."""

    def __init__(self, real: np.ndarray, n: int, seed: int = 0) -> None:
        self.real = np.ascontiguousarray(real, np.float32)
        self.n, self.seed = n, seed
        self._cached: tuple[int, np.ndarray] | None = None
        self._near: np.ndarray | None = None
        if n > len(self.real):
            knn = faiss.IndexFlatIP(self.real.shape[1])
            knn.add(self.real)
            self._near = knn.search(self.real, NEIGHBOURS + 1)[1]  # the first is the vector itself

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != i // BLOCK:
            self._cached = (i // BLOCK, self.block(i // BLOCK))
        return self._cached[1][i % BLOCK]

    def block(self, b: int) -> np.ndarray:
        """Rows ``b * BLOCK`` up to ``(b + 1) * BLOCK`` (fewer at the end)."""
        start, stop = b * BLOCK, min(self.n, (b + 1) * BLOCK)
        if self._near is None:  # a random subset of the real vectors
            pick = np.sort(np.random.default_rng(self.seed).choice(len(self.real), self.n, replace=False))
            return self.real[pick[start:stop]]
        out = np.empty((max(0, stop - start), self.real.shape[1]), np.float32)
        real_rows = max(0, min(stop, len(self.real)) - start)
        out[:real_rows] = self.real[start:start + real_rows]
        size = len(out) - real_rows
        if size:
            rng = np.random.default_rng([self.seed, b])
            i = rng.integers(0, len(self.real), size)
            j = self._near[i, rng.integers(1, NEIGHBOURS + 1, size)]
            t = rng.uniform(0.1, 0.5, size).astype(np.float32)[:, None]
            grown = (1 - t) * self.real[i] + t * self.real[j]
            out[real_rows:] = grown / np.linalg.norm(grown, axis=1, keepdims=True)
        return out


def grow(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors in one array: a random subset of ``real``, or all of it and interpolations
    between real neighbours (see the module docstring and :class:`Grown`)."""
    grown = Grown(real, n, seed)
    out = np.empty((n, grown.real.shape[1]), np.float32)
    for b in range(0, (n + BLOCK - 1) // BLOCK):
        out[b * BLOCK:(b + 1) * BLOCK] = grown.block(b)
    return out


def real_sets(folders: Sequence[Path], queries: Sequence[Path], embedder: Embedder, cache: FeatureCache,
              with_fashion_mnist: bool = True,
              progress: Callable[[str, int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(database vectors, query vectors), both real: see the module docstring."""
    base = folder_images(folders, exclude=queries)
    asked = folder_images(queries)
    if with_fashion_mnist:
        base += fashion_mnist("train")
        asked += fashion_mnist("t10k")[:: 100]  # 100 of the test images
    asked = list(_unique(asked))
    held_out = {key for key, _ in asked}
    base = [item for item in _unique(base) if item[0] not in held_out]  # no query's copy in the database
    say = progress or (lambda stage, done, total: None)
    vectors = embed_cached(base, embedder, cache, lambda d, t: say("real vectors", d, t))
    query_vectors = embed_cached(asked, embedder, cache, lambda d, t: say("query vectors", d, t))
    return vectors, query_vectors


def _unique(items: Sequence[tuple[str, Loader]]) -> Iterator[tuple[str, Loader]]:
    """The items with a content key not seen before (burst photos and copies count once)."""
    seen: set[str] = set()
    for key, load in items:
        if key not in seen:
            seen.add(key)
            yield key, load
