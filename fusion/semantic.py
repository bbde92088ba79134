"""Products in word space: one unit vector per SKU (where its pictures fall among words), matched
against the vector of a search's typed words.  The vectors come from :mod:`pipeline.words`; this
module only keeps them and scores them, so a query without a word in common with any title can
still find the products whose pictures mean what it says.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

import numpy as np


def semantic_scores(cosines: np.ndarray, floor: float) -> np.ndarray:
    """Cosines in word space -> scores in [0, 1]: 0 up to ``floor`` (unrelated texts and pictures
    still share some direction), then linear up to 1 at cosine 1."""
    return np.clip((np.asarray(cosines, np.float64) - floor) / max(1.0 - floor, 1e-9), 0.0, 1.0)


class SemanticSpace:
    """SKU -> unit vector (rows of one matrix, reused when a SKU goes); a SKU without words or
    pictures has none and scores 0."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._rows: dict[str, int] = {}
        self._skus: list[str | None] = []
        self._free: list[int] = []
        self._matrix = np.zeros((0, dim), np.float32)
        self._held = np.zeros(0, bool)  # rows in use
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, sku: object) -> bool:
        return sku in self._rows

    def set(self, sku: str, vector: np.ndarray | None) -> None:
        """Place ``sku`` at ``vector`` (None or a zero vector: forget it)."""
        if vector is None or not np.any(vector):
            self.remove(sku)
            return
        vec = np.asarray(vector, np.float32).reshape(-1)
        if vec.shape != (self.dim,):
            raise ValueError(f"expected a {self.dim}-d word vector, got shape {vec.shape}")
        vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        with self._lock:
            row = self._rows.get(sku)
            if row is None:
                row = self._free.pop() if self._free else self._grow()
                self._rows[sku] = row
                self._skus[row] = sku
            self._matrix[row] = vec
            self._held[row] = True

    def _grow(self) -> int:
        row = len(self._skus)
        if row >= len(self._matrix):
            grown = np.zeros((max(64, 2 * len(self._matrix)), self.dim), np.float32)
            grown[: len(self._matrix)] = self._matrix
            held = np.zeros(len(grown), bool)
            held[: len(self._held)] = self._held
            self._matrix, self._held = grown, held
        self._skus.append(None)
        return row

    def remove(self, sku: str) -> None:
        with self._lock:
            row = self._rows.pop(sku, None)
            if row is not None:
                self._matrix[row] = 0.0
                self._held[row] = False
                self._skus[row] = None
                self._free.append(row)

    def vector(self, sku: str) -> np.ndarray | None:
        with self._lock:
            row = self._rows.get(sku)
            return None if row is None else self._matrix[row].copy()

    def cosines(self, query: np.ndarray, skus: Sequence[str]) -> np.ndarray:
        """Cosine of each of ``skus`` with the unit vector ``query`` (0 for a SKU without a vector)."""
        with self._lock:
            rows = [self._rows.get(s, -1) for s in skus]
            out = np.zeros(len(skus), np.float64)
            held = [i for i, r in enumerate(rows) if r >= 0]
            if held:
                out[held] = self._matrix[[rows[i] for i in held]] @ np.asarray(query, np.float32)
        return out

    def nearest(self, query: np.ndarray, n: int, min_cosine: float = -1.0,
                allowed: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """The ``n`` SKUs nearest ``query`` with a cosine above ``min_cosine`` (among ``allowed``, when
        given), best first."""
        if n <= 0 or not np.any(query):
            return []
        with self._lock:
            if allowed is None:
                rows = np.flatnonzero(self._held[: len(self._skus)])
            else:
                rows = np.asarray(sorted(r for sku in allowed if (r := self._rows.get(sku)) is not None), np.int64)
            sims = self._matrix[rows] @ np.asarray(query, np.float32)
            keep = sims > min_cosine
            rows, sims = rows[keep], sims[keep]
            if len(rows) > n:
                best = np.argpartition(-sims, n - 1)[:n]
                rows, sims = rows[best], sims[best]
            order = np.argsort(-sims, kind="stable")
            return [(self._skus[r], float(sims[i])) for i, r in zip(order, rows[order])]  # type: ignore[misc]
