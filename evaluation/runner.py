"""Run an evaluation protocol: index its gallery, analyse its queries once, score configurations.

Every image is analysed once with every region (``full``, ``crop``, ``masked``) and every
signal, and cached by content hash in ``<data>/eval/features.sqlite3``; a configuration
(which regions, which weights) only re-ranks, so an ablation or a weight search takes seconds.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from core.results import Analysis
from core.settings import Settings
from core.types import SIGNALS
from evaluation.mask_cache import PersistentMasks
from evaluation.metrics import category_metrics, sku_metrics
from evaluation.protocols import EvalQuery, ProtocolData
from fusion.ranker import fuse, gather_candidates, query_tokens, verify_top
from pipeline.analysis import Stages
from pipeline.catalog_source import CatalogEntry, CatalogSource
from pipeline.database import FeatureCache
from pipeline.engine import Engine, pipeline_fingerprint
from pipeline.images import read_image_bytes
from pipeline.indexing import index_catalog

log = logging.getLogger(__name__)

ALL_REGIONS = ("full", "crop", "masked", "centre70", "centre50")
"""Every region an evaluated configuration may pick, for its queries or its gallery."""
QUERY_REGIONS = ALL_REGIONS
"""Regions every query photo is analysed with: all of them."""
BASE_GALLERY_REGIONS = ("full", "crop", "masked")
"""Regions every gallery image is analysed with, besides those the settings index (the centre views)."""
Progress = Callable[[str, int, int], None]
EXPLAIN_TOP = 5
"""Candidates of each query whose scores a report keeps (``per_query[...]["explained"]``)."""


@dataclass(frozen=True)
class EvalConfig:
    name: str
    weights: dict[str, float] = field(default_factory=lambda: {"embedding": 1.0, "colour": 0.0, "tags": 0.0,
                                                                "text": 0.0})
    query_regions: tuple[str, ...] = ("full",)
    gallery_regions: tuple[str, ...] = ("full",)
    kind: str = "fusion"  # fusion | random | colour-histogram
    sku_images: int = 1  # how many of a SKU's best-matching images its embedding score averages


@dataclass
class ConfigResult:
    config: EvalConfig
    metrics: dict[str, float]
    packaged: dict[str, float] | None
    per_query: list[dict]
    ms_per_query: float


@dataclass
class Scored:
    """One query's candidates and their signal matrix for one choice of regions."""

    skus: list[str]
    signals: np.ndarray  # the verify column still 0: :meth:`Evaluator.verified` fills it per configuration
    rank_ms: float
    image_ids: list[int | None] = field(default_factory=list)  # each candidate's best-matching image


def gallery_regions(settings: Settings) -> tuple[str, ...]:
    """The regions a gallery is indexed with: the base ones and those the settings index, so that an
    evaluation measures the catalogue regions configured (and its ablation rows pick among them)."""
    return BASE_GALLERY_REGIONS + tuple(r for r in settings.fusion.index_regions if r not in BASE_GALLERY_REGIONS)


class Evaluator:
    def __init__(self, data: ProtocolData, settings: Settings, stages: Stages) -> None:
        self.data = data
        root = settings.data / "eval"
        self.cache = FeatureCache(root / "features.sqlite3")
        gallery_size = len(data.gallery)
        regions = gallery_regions(settings)
        fusion = settings.fusion.model_copy(update={
            "index_regions": regions,
            "candidates": max(settings.fusion.candidates, gallery_size) if data.per_image else settings.fusion.candidates,
        })
        # one indexed gallery per gallery *and* per pipeline: another detector, mask source or colour
        # setting must index the gallery anew, not rank against the last run's vectors
        # a gallery without centre views keeps the name it had before they existed (its cached index)
        views = regions != BASE_GALLERY_REGIONS
        pipeline = pipeline_fingerprint(settings, stages, *((*regions, settings.fusion.packshot_centre_views) if views
                                                            else ()))
        self.settings = settings.model_copy(update={"data": root / f"{data.name}-{data.digest()}-{pipeline}",
                                                    "fusion": fusion})
        self.engine = Engine(self.settings, stages, feature_cache=self.cache)
        self.analyses: list[tuple[EvalQuery, Analysis]] = []
        self._scored: dict[tuple, list[Scored]] = {}
        self._inliers: dict[tuple[int, int], tuple[int, float]] = {}  # (query, image) -> (inliers, ms to count them)
        self._explained: dict[int, dict] = {}  # query -> why it ranked as it did (the last ranking; see _explain)
        self._verify_ms = 0.0  # time the checks of the configuration being ranked take, each as first measured
        self.stage_ms: dict[str, float] | None = None

    def close(self) -> None:
        self.engine.close()
        self.cache.close()

    # -- features ---------------------------------------------------------------------
    def prepare(self, progress: Progress | None = None) -> None:
        """Index the gallery (changed entries only) and analyse every query (cached)."""
        entries = [CatalogEntry(product, tuple(paths)) for product, paths in self.data.gallery]
        total = len(entries)
        done = iter(range(1, total + 1))
        report = index_catalog(self.engine, CatalogSource(entries),
                               lambda sku: progress and progress("index", next(done), total))
        for item in report.skipped:
            log.warning("gallery item skipped: %s: %s", item.item, item.reason)
        self.analyses = []
        for i, q in enumerate(self.data.queries, 1):
            blob = read_image_bytes(q.path, self.settings.images)
            _, analysis, _ = self.engine.analyse(blob, q.path.name, QUERY_REGIONS, use_cache=True)
            self.analyses.append((q, analysis))
            if progress:
                progress("queries", i, len(self.data.queries))

    def scored(self, query_regions: tuple[str, ...], gallery_regions: tuple[str, ...],
               sku_images: int = 1) -> list[Scored]:
        """Signal matrices of every query for one choice of regions and SKU images (memoised)."""
        key = (query_regions, gallery_regions, sku_images)
        if key not in self._scored:
            fs, view, out = self.engine.settings.fusion, self.engine.view, []
            for _, analysis in self.analyses:
                t0 = time.perf_counter()
                obj = analysis.objects[0]
                tokens = query_tokens(obj.ocr.tokens, obj.ocr.confidences, None)
                cands = gather_candidates(view, obj, tokens, fs.candidates, fs.text_candidates,
                                          query_regions, gallery_regions, fs.region_pooling, sku_images)
                if cands:
                    cand_list, matrix = self.engine.ranker.score(view, obj, tokens, cands)
                else:
                    cand_list, matrix = [], np.zeros((0, len(SIGNALS)))
                out.append(Scored([c.sku for c in cand_list], matrix, (time.perf_counter() - t0) * 1000,
                                  [c.image_id for c in cand_list]))
            self._scored[key] = out
        return self._scored[key]

    def verified(self, query: int, s: Scored, weights: dict[str, float]) -> np.ndarray:
        """``s``'s signals with the ``verify`` column the search would give them under ``weights``
        (its best few candidates checked; each pair's inliers computed once per run)."""
        geometry, stored = self.engine.stages.geometry, self.engine.view.local_features
        local = self.analyses[query][1].objects[0].local
        if geometry is None or local is None or stored is None:
            return s.signals  # its verify column is 0: nothing can be checked

        def check(row: int) -> float:
            image_id = s.image_ids[row]
            if image_id is None:
                return 0.0
            key = (query, image_id)
            if key not in self._inliers:
                t0 = time.perf_counter()
                theirs = stored(image_id)
                count = geometry.inliers(local, theirs) if theirs is not None else 0
                self._inliers[key] = (count, (time.perf_counter() - t0) * 1000)
            count, ms = self._inliers[key]
            self._verify_ms += ms
            return geometry.score(count)

        return verify_top(s.signals, weights, self.settings.verify.top_k, check)

    # -- evaluation --------------------------------------------------------------------
    def evaluate(self, config: EvalConfig, seed: int = 0) -> ConfigResult:
        rankings, rank_ms = self._rankings(config, seed)
        per_query = []
        if self.data.per_image:
            lists = [[self.data.labels.get(s) == q.label for s in ranking]
                     for (q, _), ranking in zip(self.analyses, rankings)]
            counts = [self.data.relevant_count(q.label) for q, _ in self.analyses]
            metrics = category_metrics(lists, counts)
            packaged = None
            for i, ((q, _), rel) in enumerate(zip(self.analyses, lists)):
                per_query.append({"path": str(q.path), "label": q.label, "precision@10": sum(rel[:10]) / 10,
                                  **self._explained.get(i, {})})
        else:
            ranks = [ranking.index(q.label) + 1 if q.label in ranking else None
                     for (q, _), ranking in zip(self.analyses, rankings)]
            metrics = sku_metrics(ranks)
            pk = [r for (q, _), r in zip(self.analyses, ranks) if q.packaged]
            packaged = sku_metrics(pk) if pk else None
            for i, ((q, _), r, ranking) in enumerate(zip(self.analyses, ranks, rankings)):
                row = {"path": str(q.path), "label": q.label, "packaged": q.packaged, "rank": r, "top": ranking[:3]}
                row.update(self._explained.get(i, {}))
                per_query.append(row)
        return ConfigResult(config, metrics, packaged, per_query, self._cost_ms(config) + rank_ms)

    def _rankings(self, config: EvalConfig, seed: int) -> tuple[list[list[str]], float]:
        skus = [p.sku for p, _ in self.data.gallery]
        self._explained = {}
        if config.kind == "random":
            rng = random.Random(seed)
            return [rng.sample(skus, len(skus)) for _ in self.analyses], 0.0
        if config.kind == "colour-histogram":
            return self._histogram_rankings(), 0.0
        out, ms = [], []
        for i, s in enumerate(self.scored(config.query_regions, config.gallery_regions, config.sku_images)):
            verify_before = self._verify_ms
            signals = self.verified(i, s, config.weights)
            fused = fuse(signals, config.weights) if len(s.skus) else np.zeros(0)
            order = np.argsort(-fused, kind="stable")
            out.append([s.skus[i] for i in order])
            self._explained[i] = self._explain(i, s, signals, fused, order)
            ms.append(s.rank_ms + self._verify_ms - verify_before)
        return out, float(np.mean(ms)) if ms else 0.0

    def _explain(self, query: int, s: Scored, signals: np.ndarray, fused: np.ndarray, order: np.ndarray) -> dict:
        """What a report shows of one query's ranking: the searched box, the best EXPLAIN_TOP candidates
        and the right SKU (protocols with one right SKU) with their fused scores and every signal's."""
        q, analysis = self.analyses[query]

        def entry(row: int, rank: int) -> dict:
            return {"sku": s.skus[row], "rank": rank, "score": round(float(fused[row]), 4),
                    "signals": {name: round(float(signals[row, j]), 4) for j, name in enumerate(SIGNALS)}}

        box = analysis.objects[0].box if analysis.objects else None
        out: dict = {"top_scores": [round(float(fused[j]), 4) for j in order[:3]],
                     "explained": [entry(int(row), rank) for rank, row in enumerate(order[:EXPLAIN_TOP], 1)],
                     "size": [analysis.width, analysis.height], "box": box.to_list() if box is not None else None}
        if not self.data.per_image:
            where = [rank for rank, row in enumerate(order, 1) if s.skus[row] == q.label]
            out["right"] = entry(int(order[where[0] - 1]), where[0]) if where else None
        return out

    def measure_stage_costs(self, n: int = 5) -> dict[str, float]:
        """Mean per-stage time over ``n`` query photos analysed now, without any cache (masks
        included), so the ablation's time column does not depend on what was cached before."""
        remover = self.engine.stages.remover
        uncached = remover.uncached if isinstance(remover, PersistentMasks) else contextlib.nullcontext
        runs: list[dict[str, float]] = []
        for q in self.data.queries[:n + 1]:  # the first one warms the models up and is not counted
            blob = read_image_bytes(q.path, self.settings.images)
            t0 = time.perf_counter()
            image = self.engine.decode(blob, q.path.name)
            decode_ms = (time.perf_counter() - t0) * 1000
            with uncached():
                analysis = self.engine.analyzer.analyse(image, QUERY_REGIONS)
            runs.append({"decode": decode_ms, **analysis.timings})
        runs = runs[1:] if len(runs) > 1 else runs
        stages = {k for r in runs for k in r}
        self.stage_ms = {k: float(np.mean([r.get(k, 0.0) for r in runs])) for k in stages} if runs else None
        return self.stage_ms or {}

    def _cost_ms(self, config: EvalConfig) -> float:
        """Mean analysis time of the stages a configuration needs: from :meth:`measure_stage_costs`
        when it ran, else as recorded when each query was first analysed."""
        if config.kind != "fusion":
            return 0.0
        total = []
        recorded = [a.timings for _, a in self.analyses] if self.stage_ms is None else [self.stage_ms]
        for t in recorded:
            if not t:
                continue
            cost = t.get("decode", 0.0) + t.get("embed", 0.0) * len(config.query_regions) / len(QUERY_REGIONS)
            if set(config.query_regions) - {"full"} or config.weights.get("colour", 0) > 0:
                cost += t.get("detect", 0.0) + t.get("background", 0.0)
            if config.weights.get("colour", 0) > 0:
                cost += t.get("colour", 0.0)
            if config.weights.get("text", 0) > 0:
                cost += t.get("ocr", 0.0)
            if config.weights.get("verify", 0) > 0:
                cost += t.get("keypoints", 0.0)
            total.append(cost)
        return float(np.mean(total)) if total else float("nan")

    def _histogram_rankings(self) -> list[list[str]]:
        gallery = []
        for product, paths in self.data.gallery:
            hists = [hsv_histogram(self.engine.decode(read_image_bytes(p, self.settings.images), p.name))
                     for p in paths]
            gallery.append((product.sku, np.stack(hists)))
        out = []
        for q, _ in self.analyses:
            h = hsv_histogram(self.engine.decode(read_image_bytes(q.path, self.settings.images), q.path.name))
            scores = np.asarray([np.minimum(hs, h).sum(axis=1).max() for _, hs in gallery])
            out.append([gallery[i][0] for i in np.argsort(-scores, kind="stable")])
        return out


def hsv_histogram(image: np.ndarray, bins: tuple[int, int, int] = (8, 4, 4)) -> np.ndarray:
    """An L1-normalised HSV colour histogram of the whole image (the colour-only baseline)."""
    from PIL import Image

    hsv = np.asarray(Image.fromarray(image).convert("HSV")).reshape(-1, 3)
    hist, _ = np.histogramdd(hsv, bins=bins, range=((0, 256), (0, 256), (0, 256)))
    hist = hist.ravel().astype(np.float64)
    return hist / max(hist.sum(), 1.0)
