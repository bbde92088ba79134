"""An image's place in word space without training (ConSE, Norouzi et al., ICLR 2014): the mix of
its most likely ImageNet classes' label vectors, each weighted by the class's probability. It works
on a fresh catalogue (the embedder already gives the classes, the "tags"); a catalogue's own
image/text pairs can later learn a better map (DeViSE)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from core.protocols import TextEmbedder
from core.types import Tags


class ConseMapper:
    """``vector(tags)``: a unit vector in the text embedder's space (zero for no tags)."""

    def __init__(self, text: TextEmbedder, top: int = 5) -> None:
        self.text = text
        self.top = top
        self._lock = threading.Lock()
        self._labels: dict[str, np.ndarray] = {}

    def label_vectors(self, labels: Sequence[str]) -> np.ndarray:
        """The labels' text vectors (remembered: a catalogue repeats its classes)."""
        with self._lock:
            new = [label for label in dict.fromkeys(labels) if label not in self._labels]
            if new:
                self._labels.update(zip(new, self.text.embed(new)))
            return np.stack([self._labels[label] for label in labels]) if labels else np.zeros((0, self.text.dim),
                                                                                                np.float32)

    def vector(self, tags: Tags) -> np.ndarray:
        return self.vectors([list(zip(tags.labels, tags.scores.tolist()))])[0]

    def vectors(self, tags: Sequence[Sequence[tuple[str, float]]]) -> np.ndarray:
        """``vector`` of many pictures at once, each given as its ``(label, score)`` pairs, best first:
        ``(len(tags), dim)`` unit rows (zero where a picture has no tags)."""
        rows = [list(t[: self.top]) for t in tags]
        labels = list(dict.fromkeys(label for row in rows for label, _ in row))
        out = np.zeros((len(rows), self.text.dim), np.float32)
        if not labels:
            return out
        table = self.label_vectors(labels)
        column = {label: i for i, label in enumerate(labels)}
        index = np.full((len(rows), self.top), -1, np.int64)
        weight = np.zeros((len(rows), self.top), np.float32)
        for i, row in enumerate(rows):
            for j, (label, score) in enumerate(row):
                index[i, j], weight[i, j] = column[label], score
        for j in range(self.top):
            held = index[:, j] >= 0
            out[held] += weight[held, j, None] * table[index[held, j]]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.where(norms > 0, out / np.maximum(norms, 1e-12), 0.0).astype(np.float32)

    def nearest(self, vector: np.ndarray, words: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` of ``words`` nearest ``vector``, with their cosine."""
        if not words or not np.any(vector):
            return []
        sims = self.label_vectors(list(words)) @ vector
        order = np.argsort(-sims, kind="stable")[:k]
        return [(words[i], float(sims[i])) for i in order]
