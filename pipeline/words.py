"""Words and pictures in one space: where a product's pictures fall among words, what a typed query
means there, and which words describe a picture.

A picture is placed by the word map ``skulens words train`` learnt from the catalogue's own
pictures and texts (:mod:`features.devise`), kept in the catalogue beside the tuned weights, when
there is one for this embedder; otherwise by ConSE (:mod:`features.conse`: the mix of its ImageNet
classes' names), which needs no training.  A product's vector is the mean of its pictures'.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date

import numpy as np

from core.protocols import TextEmbedder
from core.types import Tags
from features.conse import ConseMapper
from features.devise import Projection, unit_rows
from fusion.text import tokenize
from pipeline.store_base import CatalogStoreBase as CatalogStore

log = logging.getLogger(__name__)

PROJECTION_KEY = "word_map"
"""meta: the word map `skulens words train` learnt, one per image embedder (``word_map@<embedder>``)."""


def projection_key(embedder: str) -> str:
    return f"{PROJECTION_KEY}@{embedder}"


def stored_projection(store: CatalogStore, embedder: str, text_model: str, dim: int) -> Projection | None:
    """The word map learnt for ``embedder``'s vectors, or None (none learnt, or one this embedder and
    text model cannot use: said in the log, with the command that learns a new one)."""
    raw = store.get_meta(projection_key(embedder))
    if not raw:
        return None
    projection = Projection.from_json(raw)
    why = projection.check(embedder, text_model, dim)
    if why:
        log.warning("the catalogue's word map is not used: %s; pictures are placed by ConSE until "
                    "`skulens words train` learns a new one", why)
        return None
    return projection


def save_projection(store: CatalogStore, projection: Projection | None, embedder: str) -> None:
    """Keep ``projection`` (None: forget the map) for ``embedder``; other processes on the catalogue
    reload their view with it when they next follow its writes."""
    store.set_meta_for_all(projection_key(embedder), projection.to_json() if projection is not None else "")


def product_text(title: str, category: str = "", tags: Sequence[str] = (), description: str = "") -> str:
    """What a product's pictures should mean: its title, category and tags, and its description's
    first words (a long description is mostly words every product shares)."""
    words = (description or "").split()
    return ". ".join(p for p in (title, category, ", ".join(tags), " ".join(words[:40])) if p.strip())


def describable(word: str) -> bool:
    """A word worth offering as a description: letters only, three or more."""
    return len(word) >= 3 and word.isalpha()


class WordMapper:
    """Vectors in the text embedder's space for typed words, pictures and products."""

    def __init__(self, text: TextEmbedder, projection: Projection | None = None, mix: float = 0.0,
                 conse_top: int = 5) -> None:
        """``mix``: with a word map, the share of ConSE in a picture's place (0: the map alone)."""
        self.text = text
        self.conse = ConseMapper(text, conse_top)
        self.projection = projection
        self.mix = mix
        self._lock = threading.Lock()
        self._words: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return int(self.text.dim)

    @property
    def source(self) -> str:
        """How pictures are placed: ``word map`` (learnt from this catalogue) or ``ConSE``."""
        return "word map" if self.projection is not None else "ConSE"

    def query(self, text: str | None) -> np.ndarray | None:
        """The typed words' unit vector (None for no words)."""
        if not text or not text.strip():
            return None
        vec = self.text.embed([text])[0]
        return vec if np.any(vec) else None

    def picture(self, tags: Sequence[Tags], vectors: np.ndarray | None) -> np.ndarray | None:
        """Where pictures with these visual tags and image vectors (all of one product, or one
        photo's regions) fall in word space: the word map of their mean vector (mixed with ConSE by
        ``mix``), or the mean of their ConSE vectors.  None when there is nothing to place."""
        pairs = [list(zip(t.labels, t.scores.tolist())) for t in tags]
        row = self.products([pairs], [vectors] if vectors is not None else None)[0]
        return row if np.any(row) else None

    def products(self, tags: Sequence[Sequence[Sequence[tuple[str, float]]]],
                 vectors: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        """:meth:`picture` of many products at once: each product's pictures' ``(label, score)`` tag
        pairs, and (with a word map) its image vectors; ``(products, dim)`` rows, zero where a product
        has nothing to place."""
        n = len(tags)
        flat = [t for product in tags for t in product]
        owner = np.repeat(np.arange(n), [len(product) for product in tags])
        conse = np.zeros((n, self.dim), np.float32)
        if self.projection is None or self.mix > 0:
            np.add.at(conse, owner, self.conse.vectors(flat))
            conse = unit_rows(conse)
        if self.projection is None or vectors is None:
            return conse
        held = [i for i, v in enumerate(vectors) if v is not None and len(v)]
        mapped = np.zeros((n, self.dim), np.float32)
        if held:
            means = np.stack([unit_rows(vectors[i]).mean(axis=0) for i in held])  # type: ignore[arg-type]
            mapped[held] = self.projection.project(means)
        if self.mix <= 0:
            return mapped
        return unit_rows((1 - self.mix) * mapped + self.mix * conse)  # one alone where the other is zero

    def word_vectors(self, words: Sequence[str]) -> np.ndarray:
        """Each word's vector (remembered: a catalogue's vocabulary is asked again and again)."""
        with self._lock:
            new = [w for w in dict.fromkeys(words) if w not in self._words]
        if new:
            made = self.text.embed(new)
            with self._lock:
                self._words.update(zip(new, made))
        with self._lock:
            return np.stack([self._words[w] for w in words]) if words else np.zeros((0, self.dim), np.float32)

    def describe(self, vector: np.ndarray | None, vocabulary: Sequence[str], matrix: np.ndarray, k: int,
                 leave_out: Iterable[str] = (), min_cosine: float = -1.0) -> list[tuple[str, float]]:
        """The ``k`` words of ``vocabulary`` (their vectors the rows of ``matrix``, from
        :meth:`word_vectors`) nearest ``vector``, not those in ``leave_out`` nor under ``min_cosine``,
        with their cosines."""
        if vector is None or k <= 0 or not len(vocabulary):
            return []
        sims = matrix @ vector
        skip = set(leave_out)
        out: list[tuple[str, float]] = []
        for i in np.argsort(-sims, kind="stable"):
            if sims[i] < min_cosine or len(out) == k:
                break
            if vocabulary[i] not in skip:
                out.append((vocabulary[i], round(float(sims[i]), 4)))
        return out


def name_words(title: str, tags: Iterable[str], category: str) -> frozenset[str]:
    """The describing words a product is named with: its title's, tags' and category's."""
    return frozenset(w for text in (title, *tags, category) for w in tokenize(text or "") if describable(w))


def vocabulary(counts: Counter[str], products: int, common: float = 0.5) -> list[str]:
    """The words a catalogue names its products with (``counts``: in how many products' names each
    word is), sorted: what a picture is described with.  A word in more than ``common`` of the
    products' names ("product", "organic") tells none of them apart and is left out (from 4 products on)."""
    limit = common * products if products >= 4 else products
    return sorted(w for w, n in counts.items() if 0 < n <= limit)


def today() -> str:
    return date.today().isoformat()
