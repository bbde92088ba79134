"""Near-duplicate pairs and groups, cheapest evidence first, never an N x N matrix.

Layers, each through an index so the work grows with the number of neighbours:

1. ``exact``: the same bytes (a dictionary of SHA-256 digests).
2. ``phash``: perceptual hashes within a Hamming radius, found by multi-index hashing
   (FAISS ``IndexBinaryMultiHash``: 4 tables of 16 bits, flipping up to 2 bits, which finds
   every pair within distance 11).  The mirror image and right-angle turns are looked up too.
3. ``visual``: the embedding of the whole image, its k nearest neighbours from FAISS (exact
   search for small sets, IVF for large ones), kept at cosine >= ``visual_min_cosine``.
4. ``keypoints``: the other neighbours from ``candidate_min_cosine`` up (by the whole image, or by
   its centre view, which survives a new background), kept when their local
   features match under one geometric transform (:mod:`features.keypoints_orb`): a crop, a
   turn or a new background moves the embedding, but not the matching keypoints.

Colour: pHash, dHash and the embedding barely see it, so a phash or visual match must also agree
on the hue histogram (:func:`colour_agrees`); a keypoints match compares the hues at the matched
points instead (a new background changes the histogram, not the product).

Look-alikes: two cartons of one brand in other flavours can be close in every signature above.
With a verifier, every phash and visual match is also laid over its partner by the keypoint
transform, and dropped when the pixels differ in too many places (:class:`PairChecks`); the
keypoints layer applies the same test as part of ``accepts``.

Two images are near-duplicates when a layer matches; groups are the connected components of
those pairs (union-find).  Every pair says which layer matched it and how strongly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.settings import DedupSettings
from core.types import ImageHashes, Verification, hamming

log = logging.getLogger(__name__)

LAYERS = ("exact", "phash", "visual", "keypoints")
_HASH_TABLES, _HASH_BITS, _HASH_FLIPS = 4, 16, 2
_MAX_HASH_RADIUS = _HASH_TABLES * (_HASH_FLIPS + 1) - 1  # pigeonhole: every pair within this is found
_IVF_FROM = 20_000  # exact neighbour search below this many images


@dataclass(frozen=True)
class DedupItem:
    """One image: its content digest, perceptual hashes and whole-image embedding (or None)."""

    sha256: str
    hashes: ImageHashes
    vector: np.ndarray | None = None
    centre: np.ndarray | None = None  # embedding of the central part: a second source of candidates


@dataclass(frozen=True)
class Pair:
    a: int  # positions in the item list, a < b
    b: int
    layer: str
    score: float  # exact 1.0; phash 1 - distance/64; visual the cosine; keypoints the inlier ratio

    def __post_init__(self) -> None:
        if not 0 <= self.a < self.b:
            raise ValueError(f"expected 0 <= a < b, got {self.a}, {self.b}")
        if self.layer not in LAYERS:
            raise ValueError(f"expected a layer among {LAYERS}, got {self.layer!r}")


def check_settings(settings: DedupSettings) -> None:
    if settings.phash_max_distance > _MAX_HASH_RADIUS:
        raise ValueError(f"phash_max_distance above {_MAX_HASH_RADIUS} is not searched exhaustively")


Verify = Callable[[int, int], Verification]


def _never(_v: Verification) -> bool:
    return False


@dataclass(frozen=True)
class PairChecks:
    """How a pair of items is looked at beyond its signatures.

    ``verify(a, b)`` compares two items' local features; ``accepts`` says whether that makes them
    copies on its own (the keypoints layer); ``contradicts`` whether it rules out a pair another
    layer found (the pixels differ once aligned); ``frames_differ(a, b)`` compares the two whole
    pictures as they are, for an upright phash match the keypoints could not place."""

    verify: Verify
    accepts: Callable[[Verification], bool]
    contradicts: Callable[[Verification], bool] = _never
    frames_differ: Callable[[int, int], bool] | None = None


def find_pairs(items: Sequence[DedupItem], settings: DedupSettings, checks: PairChecks | None = None,
               progress: Callable[[str, int, int], None] | None = None,
               fresh: Sequence[int] | None = None) -> list[Pair]:
    """All near-duplicate pairs among ``items``, each with its cheapest matching layer.

    Without ``checks`` only the exact, phash and visual layers run, unverified.  ``fresh``: only
    pairs with at least one of these positions are looked for (the others were decided before):
    exact and phash pairs are the same as a whole run's; the embedding candidates are each fresh
    image's neighbours among all and each image's neighbours among the fresh ones, a superset of a
    whole run's."""
    check_settings(settings)
    new = None if fresh is None else np.zeros(len(items), bool)
    if new is not None:
        new[np.asarray(fresh, np.int64)] = True
    best: dict[tuple[int, int], Pair] = {}
    for pair in _exact_pairs(items):
        if new is None or new[pair.a] or new[pair.b]:
            best.setdefault((pair.a, pair.b), pair)
    looked_at = set(best)
    hashed = [(p, up) for p, up in _hash_pairs(items, settings, new) if (p.a, p.b) not in looked_at]
    looked_at.update((p.a, p.b) for p, _up in hashed)
    for pair in _confirmed(hashed, checks, progress):
        best.setdefault((pair.a, pair.b), pair)
    log.info("dedup: %d pairs from the exact and phash layers", len(best))
    for pair in _visual_pairs(items, settings, checks, looked_at, progress, new):
        best.setdefault((pair.a, pair.b), pair)
    log.info("dedup: %d pairs with the visual and keypoints layers", len(best))
    return sorted(best.values(), key=lambda p: (p.a, p.b))


def _confirmed(pairs: list[tuple[Pair, bool]], checks: PairChecks | None,
               progress: Callable[[str, int, int], None] | None) -> list[Pair]:
    """The phash pairs (with whether each matched upright) the checks do not contradict (all of
    them without checks)."""
    if checks is None:
        return [p for p, _up in pairs]
    kept = []
    for n, (p, upright) in enumerate(pairs, 1):
        v = checks.verify(p.a, p.b)
        unplaced = v.differing is None and upright and checks.frames_differ is not None
        if not checks.contradicts(v) and not (unplaced and checks.frames_differ is not None
                                              and checks.frames_differ(p.a, p.b)):
            kept.append(p)
        if progress and (n % 256 == 0 or n == len(pairs)):
            progress("pixel checks (phash)", n, len(pairs))
    return kept


def _exact_pairs(items: Sequence[DedupItem]) -> list[Pair]:
    first: dict[str, int] = {}
    pairs = []
    for i, item in enumerate(items):
        j = first.setdefault(item.sha256, i)
        if j != i:
            pairs.append(Pair(j, i, "exact", 1.0))
    return pairs


def hash_codes(values: Sequence[int]) -> np.ndarray:
    """64-bit hashes as the (N, 8) uint8 codes FAISS binary indexes take."""
    return np.asarray(values, dtype=np.uint64).reshape(-1, 1).view(np.uint8).reshape(-1, 8)


def hash_index(items: Sequence[DedupItem]):
    import faiss

    index = faiss.IndexBinaryMultiHash(64, _HASH_TABLES, _HASH_BITS)
    index.nflip = _HASH_FLIPS
    if items:
        index.add(hash_codes([it.hashes.phash for it in items]))
    return index


def hash_neighbours(index, hashes: ImageHashes, settings: DedupSettings) -> dict[int, int]:
    """Indexed position -> smallest pHash distance to ``hashes`` (or its mirror/turns) within the radius,
    the dHash agreeing too for the upright match."""
    queries = [hashes.phash, *hashes.phash_variants]
    lims, dist, ids = index.range_search(hash_codes(queries), settings.phash_max_distance + 1)
    found: dict[int, int] = {}
    for q in range(len(queries)):
        for d, j in zip(dist[lims[q]:lims[q + 1]].tolist(), ids[lims[q]:lims[q + 1]].tolist()):
            found[j] = min(found.get(j, 64), int(d))
    return found


def _hash_pairs(items: Sequence[DedupItem], settings: DedupSettings,
                new: np.ndarray | None = None) -> list[tuple[Pair, bool]]:
    """phash pairs, each with whether it matched upright (not as a mirror image or a turn); with
    ``new``, those with a new member (each looked up from it)."""
    index = hash_index(items)
    pairs: dict[tuple[int, int], tuple[Pair, bool]] = {}
    for i, item in enumerate(items):
        if new is not None and not new[i]:
            continue
        for j, d in hash_neighbours(index, item.hashes, settings).items():
            if j == i or (new is None and j < i) or (new is not None and new[j] and j < i):
                continue  # each pair once: from its first member, or from its only new one
            a, b = min(i, j), max(i, j)
            if hash_match(items[a].hashes, items[b].hashes, d, settings):
                pairs[a, b] = (Pair(a, b, "phash", 1.0 - d / 64), is_upright(items[a].hashes, items[b].hashes, d))
    return list(pairs.values())


def is_upright(a: ImageHashes, b: ImageHashes, phash_distance: int) -> bool:
    """The match at ``phash_distance`` is of the two pictures as they stand."""
    return hamming(a.phash, b.phash) == phash_distance


def hash_match(a: ImageHashes, b: ImageHashes, phash_distance: int, settings: DedupSettings) -> bool:
    """A pHash match within the radius; an upright one must also agree on the dHash; colours agree."""
    if phash_distance > settings.phash_max_distance:
        return False
    upright = is_upright(a, b, phash_distance)
    return (not upright or hamming(a.dhash, b.dhash) <= settings.dhash_max_distance) and colour_agrees(a, b, settings)


def colour_agrees(a: ImageHashes, b: ImageHashes, settings: DedupSettings) -> bool:
    """False for the same picture in other colours (a red and a green variant): the hue histograms
    of two coloured images overlap too little, or one is coloured and the other grey."""
    if abs(a.chroma - b.chroma) > settings.max_chroma_difference:
        return False
    if min(a.chroma, b.chroma) < settings.min_chroma or not (a.hues and b.hues):
        return True  # (nearly) grey: hue says nothing
    overlap = sum(min(x, y) for x, y in zip(a.hues, b.hues))
    return 1.0 - overlap <= settings.max_hue_distance


def _visual_pairs(items: Sequence[DedupItem], settings: DedupSettings, checks: PairChecks | None,
                  known: set[tuple[int, int]], progress: Callable[[str, int, int], None] | None,
                  new: np.ndarray | None = None) -> list[Pair]:
    """Embedding neighbours: cosine >= visual_min_cosine is a copy unless the checks contradict it;
    from candidate_min_cosine up, the keypoint checks decide.  Pairs in ``known`` are not looked at again."""
    candidates = visual_candidates(items, settings, progress, new)
    pairs = []
    for n, (a, b, cos) in enumerate(candidates, 1):
        if (a, b) in known:
            continue
        close = cos >= settings.visual_min_cosine and colour_agrees(items[a].hashes, items[b].hashes, settings)
        v = checks.verify(a, b) if checks is not None else None
        if close and (v is None or checks is None or not checks.contradicts(v)):
            pairs.append(Pair(a, b, "visual", round(min(1.0, cos), 4)))
        elif not close and v is not None and checks is not None and checks.accepts(v):  # keypoints compare colours where they match
            pairs.append(Pair(a, b, "keypoints", round(v.ratio, 4)))
        if progress and (n % 256 == 0 or n == len(candidates)):
            progress("keypoint checks", n, len(candidates))
    return pairs


def visual_candidates(items: Sequence[DedupItem], settings: DedupSettings,
                      progress: Callable[[str, int, int], None] | None = None,
                      new: np.ndarray | None = None) -> list[tuple[int, int, float]]:
    """(a, b, whole-image cosine) with a < b: each image's ``neighbours`` nearest at >= candidate_min_cosine,
    by the whole image and by the centre view; best first.  With ``new``: each new image's neighbours
    among all, and each image's neighbours among the new ones."""
    found: dict[tuple[int, int], float] = {}
    for view in ("vector", "centre"):
        pairs = _neighbours(items, view, settings, progress) if new is None else \
            _neighbours_of_new(items, view, settings, new, progress)
        for a, b in pairs:
            found.setdefault((a, b), _cosine(items[a].vector, items[b].vector))
    return sorted(((a, b, s) for (a, b), s in found.items()), key=lambda t: -t[2])


def _cosine(u: np.ndarray | None, v: np.ndarray | None) -> float:
    return -1.0 if u is None or v is None else float(np.dot(u, v))


def _neighbours(items: Sequence[DedupItem], view: str, settings: DedupSettings,
                progress: Callable[[str, int, int], None] | None) -> list[tuple[int, int]]:
    have = [i for i, it in enumerate(items) if getattr(it, view) is not None]
    if len(have) < 2:
        return []
    vecs = _stack(items, have, view)
    return _search_pairs(vector_index(vecs), have, vecs, have, settings, view, progress)


def _neighbours_of_new(items: Sequence[DedupItem], view: str, settings: DedupSettings, new: np.ndarray,
                       progress: Callable[[str, int, int], None] | None) -> list[tuple[int, int]]:
    have = [i for i, it in enumerate(items) if getattr(it, view) is not None]
    fresh = [i for i in have if new[i]]
    if len(have) < 2 or not fresh:
        return []
    vecs, fresh_vecs = _stack(items, have, view), _stack(items, fresh, view)
    out = _search_pairs(vector_index(vecs), have, fresh_vecs, fresh, settings, view, progress)
    return out + _search_pairs(vector_index(fresh_vecs), fresh, vecs, have, settings, view, progress)


def _stack(items: Sequence[DedupItem], positions: list[int], view: str) -> np.ndarray:
    return np.ascontiguousarray(np.stack([getattr(items[i], view) for i in positions]), dtype=np.float32)


def _search_pairs(index, indexed: list[int], queries: np.ndarray, asking: list[int], settings: DedupSettings,
                  view: str, progress: Callable[[str, int, int], None] | None) -> list[tuple[int, int]]:
    """(a, b) with a < b: each query's ``neighbours`` nearest indexed items from candidate_min_cosine up."""
    k = min(settings.neighbours + 1, len(indexed))
    out: list = []
    step = 4096
    for start in range(0, len(asking), step):
        sims, nbrs = index.search(queries[start:start + step], k)
        for row, (srow, nrow) in enumerate(zip(sims, nbrs)):
            i = asking[start + row]
            out.extend((min(i, indexed[n]), max(i, indexed[n])) for s, n in zip(srow.tolist(), nrow.tolist())
                       if n >= 0 and s >= settings.candidate_min_cosine and indexed[n] != i)
        if progress:
            progress(f"neighbours ({'whole image' if view == 'vector' else 'centre'})",
                     min(start + step, len(asking)), len(asking))
    return out


def vector_index(vecs: np.ndarray):
    """Exact inner-product search for small sets; IVF (sqrt(N)*4 lists, 16 probed) for large ones."""
    import faiss

    n, dim = vecs.shape
    index: Any
    if n < _IVF_FROM:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        index.train(vecs[rng.choice(n, min(n, nlist * 64), replace=False)])
        index.nprobe = 16
    index.add(vecs)
    return index


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_pairs(n: int, pairs: Sequence[Pair]) -> list[tuple[list[int], list[Pair]]]:
    """Connected components with more than one member: (sorted members, their pairs), largest first."""
    uf = UnionFind(n)
    for p in pairs:
        uf.union(p.a, p.b)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    edges: dict[int, list[Pair]] = {}
    for p in pairs:
        edges.setdefault(uf.find(p.a), []).append(p)
    groups = [(m, edges.get(root, [])) for root, m in members.items() if len(m) > 1]
    return sorted(groups, key=lambda g: (-len(g[0]), g[0][0]))
