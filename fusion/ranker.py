"""Fusion ranker: candidates from FAISS (and from full-text search and word space), scored on six signals.

Each candidate SKU gets, in [0, 1]: ``embedding`` (best cosine between any query region
and any of the SKU's image vectors), ``colour`` (palette similarity to the best-matching
image), ``tags`` (overlap of visual tags, and of the merchant's own tags), ``text``
(IDF-weighted overlap of the query's OCR and typed words with the SKU's text), and
``verify`` (local features of the query's object that the best-matching image explains under
one perspective transform; checked for the few best candidates by the other four only, 0 for
the rest), and ``semantic`` (the typed words' vector against the SKU's pictures in word space,
:mod:`fusion.semantic`; only for searches with typed words).  The fused score is the weighted mean
of the signals the query has, so it is monotone in each signal.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from core.errors import InvalidInputError
from core.filters import ProductFacets, SearchFilters
from core.protocols import GeometricVerifier, VectorIndex
from core.results import Candidate
from core.types import SIGNALS, LocalFeatures, Match, ObjectFeatures, Palette, Tags
from fusion.colour import palette_similarities
from fusion.image_signals import ImageSignals
from fusion.semantic import SemanticSpace, semantic_scores
from fusion.text import TextScorer, tokenize
from fusion.vector_owners import VectorOwners

log = logging.getLogger(__name__)


@dataclass
class CatalogView:
    """What the ranker reads of the catalogue, kept in memory by the engine."""

    index: VectorIndex
    vector_owner: VectorOwners = field(default_factory=VectorOwners)  # id -> (image id, sku, region); each SKU's ids
    images: ImageSignals = field(default_factory=ImageSignals)  # image id -> its SKU, palette and tags
    titles: dict[str, str] = field(default_factory=dict)
    merchant_tags: dict[str, frozenset[str]] = field(default_factory=dict)  # normalised tag words
    sku_tokens: dict[str, frozenset[str]] = field(default_factory=dict)
    facets: dict[str, ProductFacets] = field(default_factory=dict)
    text_scorer: TextScorer | None = None
    # set when the catalogue's words changed: makes the scorer anew on the next text search (not per write)
    stale_text_scorer: Callable[[], TextScorer] | None = None
    fts: Callable[[Sequence[str], int], list[tuple[str, float]]] | None = None  # full-text candidates of words
    local_features: Callable[[int], LocalFeatures | None] | None = None  # an image's keypoints, by image id
    semantic: SemanticSpace | None = None  # each SKU's pictures in word space (None: words.enabled off)
    semantic_floor: float = 0.35  # the cosine at which the semantic score starts above 0

    def scorer(self) -> TextScorer | None:
        """The text scorer, made anew first if the catalogue's words changed since."""
        if self.stale_text_scorer is not None:
            self.text_scorer, self.stale_text_scorer = self.stale_text_scorer(), None
        return self.text_scorer


def parse_weights(spec: str | dict | None, defaults: dict[str, float]) -> dict[str, float]:
    """``"embedding=0.5,text=0.3"`` or a dict over the defaults; unknown names or bad values are errors."""
    weights = dict(defaults)
    if not spec:
        return weights
    items = spec.items() if isinstance(spec, dict) else (p.split("=", 1) for p in str(spec).split(",") if p.strip())
    for item in items:
        if len(item) != 2:
            raise InvalidInputError(f"expected weights as name=value pairs, got {spec!r}")
        name, value = str(item[0]).strip().lower().replace("color", "colour"), item[1]
        if name not in SIGNALS:
            raise InvalidInputError(f"unknown signal {name!r} in weights; expected {', '.join(SIGNALS)}")
        try:
            weights[name] = float(value)
        except (TypeError, ValueError):
            raise InvalidInputError(f"weight {name} must be a number, got {value!r}") from None
        if not np.isfinite(weights[name]) or weights[name] < 0:
            raise InvalidInputError(f"weight {name} must be a finite number >= 0, got {value!r}")
    if sum(weights.values()) <= 0:
        raise InvalidInputError("at least one weight must be positive")
    return weights


def query_tokens(ocr_tokens: Sequence[str], ocr_conf: Sequence[float], typed: str | None) -> list[tuple[str, float]]:
    """(normalised token, weight) pairs: OCR words weighted by confidence, typed words by 1."""
    best: dict[str, float] = {}
    for word, conf in zip(ocr_tokens, ocr_conf):
        for tok in tokenize(word):
            best[tok] = max(best.get(tok, 0.0), float(conf))
    for tok in tokenize(typed or ""):
        best[tok] = 1.0
    return list(best.items())


def query_vectors(query: ObjectFeatures, regions: Sequence[str] | None) -> np.ndarray:
    """The query's vectors of the given regions (all when None; the first one if none match)."""
    chosen = [v for r, v in query.vectors.items() if regions is None or r in regions]
    return np.stack(chosen or [next(iter(query.vectors.values()))])


def gather_candidates(view: CatalogView, query: ObjectFeatures | None, tokens: list[tuple[str, float]],
                      n_neighbours: int, n_text: int, query_regions: Sequence[str] | None = None,
                      gallery_regions: Sequence[str] | None = None, pooling: str = "max",
                      sku_images: int = 1, filters: SearchFilters | None = None, words: np.ndarray | None = None,
                      n_semantic: int = 0) -> dict[str, Candidate]:
    """SKUs near any query region in the index, plus SKUs found by text, plus the ``n_semantic`` SKUs
    whose pictures lie nearest the typed words' vector ``words`` in word space (above the floor, among
    those ``filters`` accept), each with its embedding score.

    ``query_regions`` / ``gallery_regions`` restrict which embeddings take part (all when None).
    ``pooling`` turns the cosines of the query's regions with a SKU's vectors into one score:
    ``max`` takes the best pair; ``mean`` takes, for each query region, its best cosine among the
    SKU's vectors and averages those over the regions (every view of the query has a say).
    ``sku_images`` > 1: each query region's cosine with a SKU is the mean over the SKU's
    ``sku_images`` best-matching images (each image by its best vector), not the best one alone, so
    the SKU's photos vote (a SKU with fewer images averages those it has).
    """
    if sku_images < 1:
        raise InvalidInputError(f"expected sku_images >= 1, got {sku_images}")
    found: dict[str, Candidate] = {}
    # the catalogue's vectors as the view knows them (the index holds the same; a shared index, Milvus,
    # would have to be asked over the network for its count)
    held_vectors = len(view.vector_owner)
    if query is not None and held_vectors:
        q = query_vectors(query, query_regions)
        # ask for more when some catalogue regions will be filtered out
        spare = 3 if gallery_regions is not None else 1
        # an index that filters by itself searches only the products the filters accept
        sims, ids = view.index.search(q, min(n_neighbours * spare, held_vectors), filters)
        owners = view.vector_owner
        held, images, skus, regions = owners.lookup(ids.ravel())
        if gallery_regions is not None:
            held &= np.isin(regions, owners.region_codes(gallery_regions))
        names = owners.sku_names
        for s, image_id, code in zip(np.clip(sims, 0.0, 1.0).ravel()[held].tolist(), images[held].tolist(),
                                     skus[held].tolist()):
            sku = names[code]
            if sku not in found or s > found[sku].embedding:
                found[sku] = Candidate(sku, image_id, s)
        if found and ((pooling == "mean" and len(q) > 1) or sku_images > 1):
            found = {c.sku: c for c in pooled_candidates(view, q, list(found), gallery_regions, pooling, sku_images)}
    typed = [t for t, _ in tokens]
    missing: list[str] = []
    if typed and view.fts is not None and n_text > 0:
        missing = [sku for sku, _ in view.fts(typed, n_text) if sku not in found]
    if words is not None and view.semantic is not None and n_semantic > 0:
        allowed = None if filters is None or filters.empty else \
            [sku for sku, f in view.facets.items() if filters.accepts(f)]
        near = view.semantic.nearest(words, n_semantic, view.semantic_floor, allowed)
        missing += [sku for sku, _ in near if sku not in found and sku not in missing]
    if missing:
        found.update(exact_candidates(view, query, missing, query_regions, gallery_regions, pooling, sku_images))
    return found


def pooled_candidates(view: CatalogView, q: np.ndarray, skus: Sequence[str],
                      gallery_regions: Sequence[str] | None = None, pooling: str = "mean",
                      sku_images: int = 1) -> list[Candidate]:
    """Candidates scored against every stored vector of each SKU (one batch of reconstructions);
    ``pooling`` and ``sku_images`` as in :func:`gather_candidates`."""
    if pooling not in ("max", "mean"):
        raise InvalidInputError(f"expected region pooling 'max' or 'mean', got {pooling!r}")
    if sku_images < 1:
        raise InvalidInputError(f"expected sku_images >= 1, got {sku_images}")
    owned = [_owned(view, sku, gallery_regions) for sku in skus]
    flat = np.concatenate([ids for ids, _ in owned]) if owned else np.zeros(0, np.int64)
    stored = np.asarray(view.index.reconstruct(flat), np.float32) if len(flat) else np.zeros((0, q.shape[1]))
    sims = np.clip(stored @ q.T, 0.0, 1.0)  # (vectors, query regions)
    out, start = [], 0
    for sku, (vids, images) in zip(skus, owned):
        if not len(vids):
            out.append(Candidate(sku, None, 0.0))
            continue
        block = sims[start:start + len(vids)]
        start += len(vids)
        best = int(np.argmax(block.max(axis=1)))
        per_region = top_images_mean(block, images, sku_images)
        score = float(per_region.mean()) if pooling == "mean" else float(per_region.max())
        out.append(Candidate(sku, int(images[best]), score))
    return out


def _owned(view: CatalogView, sku: str, gallery_regions: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """A SKU's vector ids (of ``gallery_regions`` only, when given) and their images' ids."""
    owners = view.vector_owner
    vids = owners.of_sku(sku)
    _, images, _, regions = owners.lookup(vids)
    if gallery_regions is not None:
        keep = np.isin(regions, owners.region_codes(gallery_regions))
        vids, images = vids[keep], images[keep]
    return vids, images


def top_images_mean(sims: np.ndarray, image_ids: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """``sims``: cosines ``(vectors, query regions)`` of one SKU's vectors, owned by ``image_ids``.
    Per query region: the mean of its ``k`` best images' cosines, each image taken by its best
    vector (``k`` = 1: the best cosine)."""
    if k <= 1:
        return sims.max(axis=0)
    owners, row = np.unique(np.asarray(image_ids), return_inverse=True)
    per_image = np.full((len(owners), sims.shape[1]), -np.inf)
    np.maximum.at(per_image, row, sims)
    return -np.sort(-per_image, axis=0)[:k].mean(axis=0)


def exact_candidates(view: CatalogView, query: ObjectFeatures | None, skus: Sequence[str],
                     query_regions: Sequence[str] | None = None, gallery_regions: Sequence[str] | None = None,
                     pooling: str = "max", sku_images: int = 1) -> dict[str, Candidate]:
    """Candidates scored against every stored vector of each SKU (no index search); without a
    query photo their embedding score is 0 and their image is the SKU's first."""
    if query is None:
        out = {}
        for sku in skus:
            _, images = _owned(view, sku, gallery_regions)
            out[sku] = Candidate(sku, int(images[0]) if len(images) else None, 0.0)
        return out
    q = query_vectors(query, query_regions)
    return {c.sku: c for c in pooled_candidates(view, q, skus, gallery_regions, pooling, sku_images)}


def apply_filters(view: CatalogView, query: ObjectFeatures | None, candidates: dict[str, Candidate],
                  filters: SearchFilters | None, exhaustive_limit: int,
                  query_regions: Sequence[str] | None = None, pooling: str = "max",
                  sku_images: int = 1) -> dict[str, Candidate]:
    """Keep the candidates the filters accept.  When at most ``exhaustive_limit`` SKUs pass
    the filters, every one of them is a candidate (scored against all its vectors), so a
    narrow filter still fills the result list."""
    if filters is None or filters.empty:
        return candidates
    allowed = [sku for sku, f in view.facets.items() if filters.accepts(f)]
    allowed_set = set(allowed)
    kept = {sku: c for sku, c in candidates.items() if sku in allowed_set}
    if len(allowed) <= exhaustive_limit:
        missing = [sku for sku in allowed if sku not in kept]
        kept.update(exact_candidates(view, query, missing, query_regions, None, pooling, sku_images))
    return kept


@functools.lru_cache(maxsize=4096)
def _label_words(label: str) -> frozenset[str]:
    """A tag label's words (tags are the embedder's few thousand labels: worth remembering)."""
    return frozenset(tokenize(label))


def tag_similarity(query: Tags, image: Tags, merchant_words: frozenset[str], merchant_weight: float) -> float:
    """Histogram intersection of the two tag distributions (each renormalised over its
    top labels), or the share of query tag mass whose words the merchant's tags contain."""
    if not len(query):
        return 0.0
    q = query.scores / max(float(query.scores.sum()), 1e-9)
    inter = 0.0
    if len(image):
        img = dict(zip(image.labels, image.scores / max(float(image.scores.sum()), 1e-9)))
        inter = sum(min(float(p), float(img.get(label, 0.0))) for label, p in zip(query.labels, q))
    merchant = 0.0
    if merchant_words:
        merchant = sum(float(p) for label, p in zip(query.labels, q)
                       if not merchant_words.isdisjoint(_label_words(label))) * merchant_weight
    return float(np.clip(max(inter, merchant), 0.0, 1.0))


VERIFY = SIGNALS.index("verify")


class FusionRanker:
    def __init__(self, colour_scale: float, merchant_tag_weight: float,
                 verifier: GeometricVerifier | None = None, verify_top_k: int = 0) -> None:
        """``verifier``: checks the ``verify_top_k`` best candidates' pictures against the query's
        keypoints (no ``verify`` signal without it)."""
        self.colour_scale = colour_scale
        self.merchant_tag_weight = merchant_tag_weight
        self.verifier = verifier
        self.verify_top_k = verify_top_k

    def rank(self, view: CatalogView, query: ObjectFeatures | None, tokens: list[tuple[str, float]],
             candidates: dict[str, Candidate], weights: dict[str, float], k: int,
             words: np.ndarray | None = None) -> list[Match]:
        """The ``k`` best candidates; ``words``: the typed words' unit vector in word space (the
        ``semantic`` signal; None without typed words)."""
        if not candidates:
            return []
        cands, matrix = self.score(view, query, tokens, candidates, words)
        if self.verifier is not None and query is not None and query.local is not None \
                and view.local_features is not None:
            verifier, local, stored = self.verifier, query.local, view.local_features

            def check(row: int) -> float:
                image_id = cands[row].image_id
                theirs = stored(image_id) if image_id is not None else None
                return verifier.score(verifier.inliers(local, theirs)) if theirs is not None else 0.0

            matrix = verify_top(matrix, weights, self.verify_top_k, check, has_words=words is not None)
        fused = fuse(matrix, weights, has_image=query is not None, has_words=words is not None)
        order = np.argsort(-fused, kind="stable")[:k]
        return [Match(cands[i].sku, float(fused[i]),
                      {name: round(float(matrix[i, j]), 4) for j, name in enumerate(SIGNALS)},
                      cands[i].image_id, view.titles.get(cands[i].sku, "")) for i in order]

    def score(self, view: CatalogView, query: ObjectFeatures | None, tokens: list[tuple[str, float]],
              candidates: dict[str, Candidate], words: np.ndarray | None = None) -> tuple[list[Candidate], np.ndarray]:
        """Candidates and their ``(n, 6)`` signal matrix, columns in :data:`SIGNALS` order, in [0, 1]
        (``verify`` still 0: :func:`verify_top` fills it for the best few)."""
        cands = list(candidates.values())
        signals = {name: np.zeros(len(cands), np.float64) for name in SIGNALS}
        signals["embedding"] = np.asarray([c.embedding for c in cands], np.float64)
        infos = view.images.get_many([c.image_id for c in cands])
        if query is not None:
            palettes = [i.palette if i else Palette.empty() for i in infos]
            signals["colour"] = palette_similarities(query.palette, palettes, self.colour_scale)
            signals["tags"] = np.asarray([
                tag_similarity(query.tags, i.tags if i else Tags.empty(), view.merchant_tags.get(c.sku, frozenset()),
                               self.merchant_tag_weight) for c, i in zip(cands, infos)])
        scorer = view.scorer() if tokens else None
        if scorer is not None:
            docs = [view.sku_tokens.get(c.sku, frozenset()) for c in cands]
            signals["text"] = scorer.score_many(tokens, docs).astype(np.float64)
        if words is not None and view.semantic is not None:
            signals["semantic"] = semantic_scores(view.semantic.cosines(words, [c.sku for c in cands]),
                                                  view.semantic_floor)
        matrix = np.clip(np.stack([signals[name] for name in SIGNALS], axis=1), 0.0, 1.0)
        return cands, matrix


def verify_top(signals: np.ndarray, weights: dict[str, float], top_k: int,
               check: Callable[[int], float], has_words: bool = False) -> np.ndarray:
    """``signals`` with the ``verify`` column set to ``check(row)`` for the ``top_k`` rows that the
    other signals rank best under ``weights`` (the semantic one only ``has_words``), and 0 elsewhere
    (no check when ``verify`` weighs nothing)."""
    out = signals.copy()
    out[:, VERIFY] = 0.0
    if top_k <= 0 or weights.get("verify", 0.0) <= 0 or not len(out):
        return out
    for row in np.argsort(-fuse(out, weights, has_words=has_words), kind="stable")[:top_k]:
        out[row, VERIFY] = float(np.clip(check(int(row)), 0.0, 1.0))
    return out


WORD_SIGNALS = ("text", "semantic")


def fuse(signals: np.ndarray, weights: dict[str, float], has_image: bool = True, has_words: bool = False) -> np.ndarray:
    """Weighted mean of the signal columns (in :data:`SIGNALS` order): monotone in each, in [0, 1].

    Without a photo there is nothing to compare embeddings, colours, visual tags or keypoints with:
    only the text and semantic weights count.  Without typed words (``has_words`` False) the semantic
    signal has nothing to compare and does not count, so a photo's scores are as without it.
    """
    w = np.asarray([weights.get(name, 0.0) for name in SIGNALS], np.float64)  # a signal left out weighs 0
    if not has_words:
        w = w * np.asarray([name != "semantic" for name in SIGNALS], np.float64)
    if not has_image:
        w = w * np.asarray([name in WORD_SIGNALS for name in SIGNALS], np.float64)
        if w.sum() <= 0:
            w = np.asarray([name == "text" for name in SIGNALS], np.float64)
    total = w.sum() or 1.0
    return np.clip(signals @ (w / total), 0.0, 1.0)


def merchant_words(tags: Sequence[str]) -> frozenset[str]:
    return frozenset(w for t in tags for w in tokenize(t))
