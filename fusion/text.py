"""Text similarity between words read from a photo (or typed) and a catalogue entry.

Words are folded to ``[a-z0-9]`` (accents stripped), weighted by inverse document
frequency over the catalogue, and matched leniently enough to survive OCR noise: one
wrong letter in a long word, or a word cut short at the edge of a crop.
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
"""Words at least this long on both sides match at edit distance 1."""
PREFIX_MIN_LENGTH = 4
"""A word this long or longer matches the words it begins (and FTS queries get a ``*``)."""

_WORD = re.compile(r"[^\W_]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_CACHE_LIMIT = 8192
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

_Prepared = tuple[frozenset[str], dict[str, list[tuple[int, float]]]]


def tokenize(text: str, min_length: int = 2) -> list[str]:
    """Normalised words of ``text`` in order, without stop words and short words."""
    out = []
    for raw in _WORD.findall(unicodedata.normalize("NFC", text)):
        token = normalise(raw)
        if len(token) >= min_length and token not in STOP_WORDS:
            out.append(token)
    return out


def within_one_edit(a: str, b: str) -> bool:
    """True when ``a`` becomes ``b`` by at most one insertion, deletion or substitution."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la > lb:
        a, b, la, lb = b, a, lb, la
    i = 0
    while i < la and a[i] == b[i]:
        i += 1
    if la == lb:
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]


def _one_edit_variants(token: str) -> set[str]:
    """Every ``[a-z0-9]`` string one insertion, deletion or substitution away from ``token``."""
    splits = [(token[:i], token[i:]) for i in range(len(token) + 1)]
    variants = {a + b[1:] for a, b in splits if b}
    variants.update(a + c + b[1:] for a, b in splits if b for c in _ALPHABET)
    variants.update(a + c + b for a, b in splits for c in _ALPHABET)
    variants.discard(token)
    return variants


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
        """Catalogue words ``token`` matches fuzzily (not itself) with their IDF."""
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
        """Cached (idf of the exact word, {fuzzy match: idf}) for one query token."""
        hit = self._matches.get(token)
        if hit is None:
            fuzzy = {t: self.idf(t) for t in self._fuzzy_candidates(token) if t != token}
            hit = (self.idf(token), {t: v for t, v in fuzzy.items() if v > 0})
            if len(self._matches) >= _CACHE_LIMIT:
                self._matches.clear()
            self._matches[token] = hit
        return hit

    def _fuzzy_candidates(self, token: str) -> set[str]:
        found: set[str] = set()
        if len(token) >= PREFIX_MIN_LENGTH:
            # catalogue words that begin with the token
            i = bisect.bisect_left(self._sorted, token)
            while i < len(self._sorted) and self._sorted[i].startswith(token):
                found.add(self._sorted[i])
                i += 1
            # catalogue words the token begins with
            found.update(token[:n] for n in range(PREFIX_MIN_LENGTH, len(token)) if token[:n] in self._df)
        if len(token) >= FUZZY_MIN_LENGTH:
            found.update(w for w in _one_edit_variants(token) if w in self._df and len(w) >= FUZZY_MIN_LENGTH)
        return found


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
