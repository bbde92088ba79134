"""Text similarity between words read from a photo (or typed) and a catalogue entry.

Words are folded to ``[a-z0-9]`` (accents stripped), weighted by inverse document
frequency over the catalogue, and matched leniently enough to survive OCR noise, each
match counting by how alike the two words are:

- a misread word: edit similarity (rapidfuzz's normalised Indel ratio) of at least
  :data:`FUZZY_MIN_SIMILARITY` (``mijolk`` ~ ``mjolk``, ``naturel`` ~ ``naturell``);
- a word cut short at the edge of a crop, or run on: one word begins the other
  (``tropican`` ~ ``tropicana``);
- a compound word holding a catalogue word (``lattyoghurt`` holds ``yoghurt``).
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from core.words import normalise

log = logging.getLogger(__name__)

STOP_WORDS = frozenset(
    "a an and are as at be by for from has in is it its of on or that the this to was with".split()
)
FUZZY_MIN_LENGTH = 5
"""Words at least this long on both sides match when they are alike (:data:`FUZZY_MIN_SIMILARITY`)."""
FUZZY_MIN_SIMILARITY = 0.8
"""Least normalised Indel similarity (``1 - edits / (len(a) + len(b))``) of a misread word's match:
one wrong letter in a five-letter word, two in a ten-letter one."""
PREFIX_MIN_LENGTH = 4
"""A word this long or longer matches the words it begins (and FTS queries get a ``*``)."""
PART_MIN_LENGTH = 5
"""A catalogue word this long or longer matches the longer words that hold it (compounds)."""

_WORD = re.compile(r"[^\W_]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_CACHE_LIMIT = 8192

_Prepared = tuple[frozenset[str], dict[str, list[tuple[int, float]]]]


def tokenize(text: str, min_length: int = 2) -> list[str]:
    """Normalised words of ``text`` in order, without stop words and short words."""
    out = []
    for raw in _WORD.findall(unicodedata.normalize("NFC", text)):
        token = normalise(raw)
        if len(token) >= min_length and token not in STOP_WORDS:
            out.append(token)
    return out


class TextScorer:
    """IDF-weighted word overlap between a query and one catalogue entry, in [0, 1].

    ``doc_freq`` maps each normalised catalogue word to the number of entries holding it
    (out of ``n_docs``); words it does not know weigh nothing.  ``scale`` is the summed
    IDF of matched words, in units of the IDF of a word held by one entry only, at which
    similarity reaches ``1 - 1/e``.
    """

    def __init__(self, doc_freq: Mapping[str, int], n_docs: int, scale: float) -> None:
        if n_docs < 0:
            raise ValueError(f"expected n_docs >= 0, got {n_docs}")
        if not scale > 0:
            raise ValueError(f"expected a positive scale, got {scale}")
        self.n_docs = int(n_docs)
        self.scale = float(scale)
        self._df = {t: int(df) for t, df in doc_freq.items() if df > 0}
        self._sorted = sorted(self._df)
        # IDF of a word only one entry holds: one such match is one unit of evidence,
        # so ``scale`` means the same for a catalogue of 10 entries or of 100,000.
        self._unit = max(math.log((self.n_docs + 1) / 1.5), 1e-6)
        log.debug("text scorer over %d words in %d entries", len(self._df), self.n_docs)
        self._matches: dict[str, tuple[float, dict[str, float]]] = {}
        self._by_length: dict[int, list[str]] | None = None
        self._last: tuple[tuple[tuple[str, float], ...], _Prepared] | None = None

    def idf(self, token: str) -> float:
        """Smoothed inverse document frequency, 0 for words outside the catalogue."""
        df = self._df.get(token, 0)
        if df <= 0:
            return 0.0
        return max(0.0, math.log((self.n_docs + 1) / (df + 0.5)))

    def score(self, query: Sequence[tuple[str, float]], doc_tokens: frozenset[str] | set[str]) -> float:
        """Similarity of ``(normalised token, weight)`` pairs to one entry's tokens."""
        return self._similarity(self._prepare(query), doc_tokens)

    def score_many(
        self, query: Sequence[tuple[str, float]], docs: Iterable[frozenset[str] | set[str]]
    ) -> np.ndarray:
        """:meth:`score` for many entries at once, as ``float32``."""
        prepared = self._prepare(query)
        return np.asarray([self._similarity(prepared, doc) for doc in docs], np.float32)

    def matches(self, token: str) -> dict[str, float]:
        """Catalogue words ``token`` matches fuzzily (not itself), each with its IDF times the
        words' similarity (rapidfuzz's ratio, or :func:`part_similarity` for prefixes and compounds)."""
        return dict(self._lookup(token)[1])

    # -- internals ---------------------------------------------------------------

    def _prepare(self, query: Sequence[tuple[str, float]]) -> _Prepared:
        """Catalogue word -> [(query token index, weight * idf)], memoised for the last query."""
        key = tuple(query)
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        weights: dict[str, float] = {}
        for token, weight in key:
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"expected query weights in [0, 1], got {weight} for {token!r}")
            weights[token] = max(weight, weights.get(token, 0.0))
        hits: dict[str, list[tuple[int, float]]] = {}
        for i, (token, weight) in enumerate(weights.items()):
            if weight <= 0:
                continue
            exact_idf, fuzzy = self._lookup(token)
            if exact_idf > 0:
                hits.setdefault(token, []).append((i, weight * exact_idf))
            for word, idf in fuzzy.items():
                hits.setdefault(word, []).append((i, weight * idf))
        prepared = (frozenset(hits), hits)
        self._last = (key, prepared)
        return prepared

    def _similarity(self, prepared: _Prepared, doc: frozenset[str] | set[str]) -> float:
        """Each query token adds its best-weighted match among the entry's words."""
        words, hits = prepared
        matched = words & doc if len(words) > len(doc) else doc & words
        if not matched:
            return 0.0
        best: dict[int, float] = {}
        for word in matched:
            for i, value in hits[word]:
                if value > best.get(i, 0.0):
                    best[i] = value
        return 1.0 - math.exp(-sum(best.values()) / (self.scale * self._unit))

    def _lookup(self, token: str) -> tuple[float, dict[str, float]]:
        """Cached (idf of the exact word, {fuzzy match: idf x similarity}) for one query token."""
        hit = self._matches.get(token)
        if hit is None:
            fuzzy = {t: self.idf(t) * sim for t, sim in self._fuzzy_candidates(token).items() if t != token}
            hit = (self.idf(token), {t: v for t, v in fuzzy.items() if v > 0})
            if len(self._matches) >= _CACHE_LIMIT:
                self._matches.clear()
            self._matches[token] = hit
        return hit

    def _fuzzy_candidates(self, token: str) -> dict[str, float]:
        """Catalogue words alike ``token``, each with its similarity in (0, 1]."""
        found: dict[str, float] = {}

        def add(word: str, sim: float) -> None:
            if sim > found.get(word, 0.0):
                found[word] = sim

        if len(token) >= PREFIX_MIN_LENGTH:
            # catalogue words that begin with the token (it was cut short)
            i = bisect.bisect_left(self._sorted, token)
            while i < len(self._sorted) and self._sorted[i].startswith(token):
                add(self._sorted[i], part_similarity(token, self._sorted[i]))
                i += 1
            # catalogue words the token begins with (it ran on)
            for n in range(PREFIX_MIN_LENGTH, len(token)):
                if token[:n] in self._df:
                    add(token[:n], part_similarity(token[:n], token))
        if len(token) > PART_MIN_LENGTH:
            # catalogue words inside a compound
            for n in range(PART_MIN_LENGTH, len(token)):
                for start in range(1, len(token) - n + 1):
                    part = token[start:start + n]
                    if part in self._df:
                        add(part, part_similarity(part, token))
        if len(token) >= FUZZY_MIN_LENGTH:
            for word, sim in self._alike(token):
                add(word, sim)
        return found

    def _alike(self, token: str) -> list[tuple[str, float]]:
        """Catalogue words of :data:`FUZZY_MIN_LENGTH` or more within :data:`FUZZY_MIN_SIMILARITY`."""
        from rapidfuzz import fuzz, process

        if self._by_length is None:
            self._by_length = {}
            for word in self._sorted:
                if len(word) >= FUZZY_MIN_LENGTH:
                    self._by_length.setdefault(len(word), []).append(word)
        # an Indel similarity of at least s needs lengths within 2 (1 - s) / s x len(token) of each other
        spread = max(1, math.floor(len(token) * 2 * (1 - FUZZY_MIN_SIMILARITY) / FUZZY_MIN_SIMILARITY + 1e-9))
        pool = [w for n in range(len(token) - spread, len(token) + spread + 1) for w in self._by_length.get(n, ())]
        hits = process.extract(token, pool, scorer=fuzz.ratio, score_cutoff=100 * FUZZY_MIN_SIMILARITY, limit=None)
        return [(word, score / 100.0) for word, score, _ in hits]


def part_similarity(part: str, whole: str) -> float:
    """How much a word that is part of another (its beginning, or inside a compound) counts: from
    one half (a short part of a long word) up to one (all of it)."""
    return 0.5 + 0.5 * len(part) / max(len(whole), 1)


def fts_match_expression(tokens: Sequence[str]) -> str | None:
    """A safe SQLite FTS5 ``MATCH`` expression OR-ing the tokens, e.g. ``"arla"* OR "ko"``.

    Every token is a quoted string (quotes doubled, control characters such as NUL,
    which would end the string early, dropped), so no token can inject FTS5 syntax;
    tokens of :data:`PREFIX_MIN_LENGTH` or more also match as prefixes.
    """
    terms = []
    for token in dict.fromkeys(_CONTROL.sub("", t) for t in tokens):
        if not token:
            continue
        quoted = '"' + token.replace('"', '""') + '"'
        terms.append(quoted + "*" if len(token) >= PREFIX_MIN_LENGTH else quoted)
    return " OR ".join(terms) if terms else None
