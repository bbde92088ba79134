"""``skulens bench-words``: typed words against pictures (issue 31), through the engine as a shop runs it.

- **Caltech-101 and clothing, titles withheld.** Per label, the first 5 images (manifest order, C1's
  and K1's queries) are a titled catalogue (title = the class name) that a word map learns from; the
  other images are a catalogue without any words.  Queries: each class name and the paraphrases of
  :mod:`evaluation.word_queries`; relevant = that label's untitled images.  Methods: random order,
  full-text search (finds nothing: no words), ConSE, the word map learnt from the titled images
  ("known kinds"), and the word map learnt without the query's kind (labels in two folds, each
  queried with the map learnt from the other: "unseen kinds").
- **Grocery, titles withheld.** The 81 catalogue pictures without words; queries: each kind's generic
  name (``GROCERY_NAMES``), relevant = the products of that kind (``coarse_class``).  The word map
  learns from the ``train`` shop photos, each paired with its product's title and description
  (known products), or, for "unseen kinds", from the photos of the other kinds only (two folds).
- **Grocery, titles present.** The catalogue as G1 indexes it (titles, descriptions); the same
  queries: full-text search alone against the fused ranking (ConSE, and the word map
  ``skulens words train`` learns from this catalogue).

P@10 and mAP over what a words-only search returns (up to the whole catalogue; a relevant product
not returned counts as not found).  Costs: embedding a typed query, placing a product in word
space, describing a query photo.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.catalog import Product
from core.settings import Settings
from evaluation.protocols import read_manifest
from evaluation.word_queries import GROCERY_NAMES, PARAPHRASES, class_name
from pipeline.analysis import Stages
from pipeline.catalog_source import CatalogEntry, CatalogSource
from pipeline.database import FeatureCache
from pipeline.engine import Engine
from pipeline.indexing import index_catalog

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
TRAIN_PER_LABEL = 5
FTS_ONLY = {"text": 1.0, "embedding": 0.0, "colour": 0.0, "tags": 0.0, "verify": 0.0, "semantic": 0.0}


@dataclass(frozen=True)
class WordQuery:
    text: str
    label: str
    kind: str  # "name" | "paraphrase"


@dataclass
class MethodResult:
    method: str
    p10: float
    map: float
    by_kind: dict[str, tuple[float, float]]  # kind -> (P@10, mAP)
    queries: int


def average_precision(ranked: list[str], relevant: set[str]) -> float:
    hits, total = 0, 0.0
    for i, sku in enumerate(ranked, 1):
        if sku in relevant:
            hits += 1
            total += hits / i
    return total / len(relevant) if relevant else 0.0


def precision_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    return sum(1 for sku in ranked[:k] if sku in relevant) / k


def score(method: str, rankings: list[list[str]], queries: list[WordQuery], relevant: dict[str, set[str]]) -> MethodResult:
    p = np.asarray([precision_at(r, relevant[q.label]) for r, q in zip(rankings, queries)])
    a = np.asarray([average_precision(r, relevant[q.label]) for r, q in zip(rankings, queries)])
    kinds = {kind: (float(p[m].mean()), float(a[m].mean())) for kind in ("name", "paraphrase")
             if (m := np.asarray([q.kind == kind for q in queries])).any()}
    return MethodResult(method, float(p.mean()), float(a.mean()), kinds, len(queries))


class Catalogues:
    """Throw-away catalogues under ``<data>/words/``, their analyses cached by content hash in
    ``<data>/eval/features.sqlite3`` (shared with ``skulens eval``)."""

    def __init__(self, settings: Settings, stages: Stages, progress: Progress | None = None) -> None:
        self.settings, self.stages, self.progress = settings, stages, progress
        self.cache = FeatureCache(Path(settings.data) / "eval" / "features.sqlite3")
        self.open: list[Engine] = []

    def make(self, name: str, entries: list[tuple[Product, list[Path]]]) -> Engine:
        n = len(entries)
        words = self.settings.words.model_copy(update={"candidates": n})  # the whole ranking, for mAP
        fusion = self.settings.fusion.model_copy(update={"text_candidates": n})
        settings = self.settings.model_copy(update={"data": Path(self.settings.data) / "words" / name,
                                                    "words": words, "fusion": fusion})
        engine = Engine(settings, self.stages, feature_cache=self.cache)
        self.open.append(engine)
        done = iter(range(1, n + 1))
        index_catalog(engine, CatalogSource([CatalogEntry(p, tuple(paths)) for p, paths in entries]),
                      lambda sku: self.progress and self.progress(f"index {name}", next(done), n))
        engine.save()
        return engine

    def close(self) -> None:
        for engine in self.open:
            engine.close()
        self.cache.close()


def ranking(engine: Engine, text: str, weights: dict | None = None) -> list[str]:
    n = len(engine.view.titles)
    result = engine.search(None, text=text, k=n, weights=weights)
    return [m.sku for m in result.groups[0].matches]


def random_rankings(skus: list[str], count: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        order = list(skus)
        rng.shuffle(order)
        out.append(order)
    return out


def label_folds(labels: list[str], seed: int = 0) -> dict[str, int]:
    """Each label in one of two folds (seeded)."""
    shuffled = sorted(set(labels))
    random.Random(seed).shuffle(shuffled)
    return {label: i % 2 for i, label in enumerate(shuffled)}


MIXES = (0.0, 0.5)
"""Shares of ConSE mixed into a word map's places that are measured (``words.mix``)."""


def _with_mix(engine: Engine, mix: float) -> None:
    assert engine.words is not None
    engine.words.mix = mix
    engine.live.use_words(engine.words)


def methods(gallery: Engine, train: Engine, queries: list[WordQuery], relevant: dict[str, set[str]],
            train_labels: dict[str, str]) -> list[MethodResult]:
    """Every method on one untitled ``gallery``, the word maps learnt from ``train`` (its SKUs'
    labels in ``train_labels``): known kinds with each of :data:`MIXES`, unseen kinds likewise."""
    from training.words import train_word_map

    skus = sorted(gallery.view.titles)
    results = [score("random order", random_rankings(skus, len(queries)), queries, relevant),
               score("full-text search", [ranking(gallery, q.text, FTS_ONLY) for q in queries], queries, relevant)]
    gallery.use_word_map(None)
    results.append(score("ConSE (no training)", [ranking(gallery, q.text) for q in queries], queries, relevant))
    gallery.use_word_map(train_word_map(train))
    for mix in MIXES:
        _with_mix(gallery, mix)
        results.append(score(f"word map{_mix_name(mix)}, known kinds", [ranking(gallery, q.text) for q in queries],
                             queries, relevant))
    folds = label_folds(list(train_labels.values()))
    unseen: dict[float, dict[int, list[str]]] = {mix: {} for mix in MIXES}
    for fold in (0, 1):
        others = {sku for sku, label in train_labels.items() if folds[label] != fold}
        gallery.use_word_map(train_word_map(train, others))
        for mix in MIXES:
            _with_mix(gallery, mix)
            for i, q in enumerate(queries):
                if folds.get(q.label) == fold:
                    unseen[mix][i] = ranking(gallery, q.text)
    for mix in MIXES:
        results.append(score(f"word map{_mix_name(mix)}, unseen kinds", [unseen[mix][i] for i in range(len(queries))],
                             queries, relevant))
    gallery.use_word_map(None)
    return results


def _mix_name(mix: float) -> str:
    return f" + ConSE (mix {mix})" if mix else ""


def category_run(name: str, root: Path, catalogues: Catalogues) -> tuple[list[MethodResult], dict]:
    rows = read_manifest(root)
    by_label: dict[str, list[Path]] = defaultdict(list)
    for r in rows:
        by_label[r["label"]].append(root / r["path"])
    train_entries, gallery_entries, train_labels = [], [], {}
    relevant: dict[str, set[str]] = defaultdict(set)
    for label, paths in by_label.items():
        for i, path in enumerate(paths):
            if i < TRAIN_PER_LABEL:
                sku = f"t{len(train_entries):05d}"
                train_entries.append((Product(sku, title=class_name(label)), [path]))
                train_labels[sku] = label
            else:
                sku = f"g{len(gallery_entries):05d}"
                gallery_entries.append((Product(sku), [path]))  # no words at all
                relevant[label].add(sku)
    queries = [WordQuery(class_name(label), label, "name") for label in by_label]
    queries += [WordQuery(text, label, "paraphrase") for label, texts in PARAPHRASES.get(name, {}).items()
                if label in by_label for text in texts]
    train = catalogues.make(f"{name}-titled", train_entries)
    gallery = catalogues.make(f"{name}-untitled", gallery_entries)
    info = {"labels": len(by_label), "train": len(train_entries), "gallery": len(gallery_entries),
            "names": sum(q.kind == "name" for q in queries), "paraphrases": sum(q.kind == "paraphrase" for q in queries)}
    return methods(gallery, train, queries, relevant, train_labels), info


def grocery_runs(root: Path, catalogues: Catalogues) -> tuple[list[MethodResult], list[MethodResult], dict]:
    from evaluation.protocols import load_protocol
    from training.words import train_word_map

    rows = read_manifest(root)
    coarse = {r["class_name"]: r["coarse_class"] for r in rows}
    g1 = load_protocol("G1", root)
    queries = [WordQuery(text, kind, "name" if i == 0 else "paraphrase")
               for kind, texts in GROCERY_NAMES.items() for i, text in enumerate(texts)]
    # titles withheld: opaque SKUs, no words; relevant = the products of the query's kind
    opaque = {p.sku: f"p{i:03d}" for i, (p, _) in enumerate(g1.gallery)}
    relevant: dict[str, set[str]] = defaultdict(set)
    for p, _ in g1.gallery:
        relevant[coarse[p.sku]].add(opaque[p.sku])
    untitled = catalogues.make("grocery-untitled", [(Product(opaque[p.sku]), paths) for p, paths in g1.gallery])
    products = {p.sku: p for p, _ in g1.gallery}
    photos: dict[str, list[Path]] = defaultdict(list)
    for r in rows:
        if r["split"] == "train":
            photos[r["class_name"]].append(root / r["path"])
    train_entries = []
    train_labels = {}
    for sku, paths in sorted(photos.items()):
        p = products[sku]
        for i, path in enumerate(paths):  # each shop photo its own entry, with its product's words
            entry_sku = f"{sku}--{i:03d}"
            train_entries.append((Product(entry_sku, title=p.title, description=p.description), [path]))
            train_labels[entry_sku] = coarse[sku]
    train = catalogues.make("grocery-train-photos", train_entries)
    withheld = methods(untitled, train, queries, relevant, train_labels)
    # titles present: G1's catalogue; relevant = the products of the kind, by their own SKUs
    titled = catalogues.make("grocery-titled", g1.gallery)
    by_sku = {kind: {sku for sku, c in coarse.items() if c == kind} for kind in GROCERY_NAMES}
    present = [score("full-text search alone", [ranking(titled, q.text, FTS_ONLY) for q in queries], queries, by_sku)]
    titled.use_word_map(None)
    present.append(score("fused, ConSE", [ranking(titled, q.text) for q in queries], queries, by_sku))
    titled.use_word_map(train_word_map(titled))
    for mix in MIXES:
        _with_mix(titled, mix)
        present.append(score(f"fused, word map of this catalogue{_mix_name(mix)}", [ranking(titled, q.text)
                                                                                  for q in queries], queries, by_sku))
    titled.use_word_map(None)
    best = float(np.mean([min(10, len(relevant[q.label])) / 10 for q in queries]))
    info = {"kinds": len(GROCERY_NAMES), "products": len(g1.gallery), "train": len(train_entries), "best_p10": best,
            "mean_relevant": float(np.mean([len(relevant[q.label]) for q in queries])),
            "names": sum(q.kind == "name" for q in queries), "paraphrases": sum(q.kind == "paraphrase" for q in queries)}
    return withheld, present, info


def costs(engine: Engine, texts: list[str], repeats: int = 20) -> dict[str, float]:
    """ms: embedding one typed query (warm), a words-only search, placing one product in word space
    (ConSE and word map), describing one picture."""
    words = engine.words
    assert words is not None
    words.query("warm up")
    t0 = time.perf_counter()
    for _ in range(repeats):
        for text in texts:
            words.query(text)
    embed = (time.perf_counter() - t0) * 1000 / (repeats * len(texts))
    t0 = time.perf_counter()
    for text in texts:
        engine.search(None, text=text, k=10)
    search = (time.perf_counter() - t0) * 1000 / len(texts)
    n = len(engine.view.titles)
    out = {"embed_query_ms": embed, "words_search_ms": search, "products": float(n)}
    objects = [obj for im in engine.store.images()[:20]
               if (obj := _stored_object(engine, im.id)) is not None]
    engine.describe(objects[0])  # the vocabulary's vectors, once
    t0 = time.perf_counter()
    for obj in objects:
        engine.describe(obj)
    out["describe_ms"] = (time.perf_counter() - t0) * 1000 / max(len(objects), 1)
    for label in ("conse", "map"):
        if label == "map":
            from training.words import train_word_map

            t0 = time.perf_counter()
            projection = train_word_map(engine)
            out["train_s"] = time.perf_counter() - t0
            engine.use_word_map(projection)
        t0 = time.perf_counter()
        engine.live.use_words(engine.words)  # type: ignore[arg-type]
        out[f"place_{label}_ms"] = (time.perf_counter() - t0) * 1000 / max(n, 1)
    engine.use_word_map(None)
    return out


def _stored_object(engine: Engine, image_id: int):
    """A catalogue picture as a query object (its stored tags and vectors), to time describing it."""
    from core.types import Box, ObjectFeatures, OcrText

    info = engine.view.images.get(image_id)
    vids = [v for v in engine.view.vector_owner.of_sku(info.sku) if engine.view.vector_owner[int(v)][0] == image_id] \
        if info is not None else []
    if not vids:
        return None
    vectors = engine.store.vectors_by_id(np.asarray(vids), engine.stages.embedder.dim)
    return ObjectFeatures(Box(0, 0, 1, 1), {f"r{i}": v for i, v in enumerate(vectors)}, info.palette,
                          OcrText.empty(), info.tags)


def run(datasets: Path, settings: Settings, stages: Stages, only: tuple[str, ...],
        progress: Progress | None = None) -> dict:
    catalogues = Catalogues(settings, stages, progress)
    report: dict = {}
    try:
        for name in ("caltech101", "clothing"):
            if name in only:
                report[name] = category_run(name, datasets / name, catalogues)
        if "grocery" in only:
            report["grocery"] = grocery_runs(datasets / "grocery", catalogues)
            titled = next(e for e in catalogues.open if e.data.name == "grocery-titled")
            texts = [q for names in GROCERY_NAMES.values() for q in names]
            report["costs"] = costs(titled, texts)
    finally:
        catalogues.close()
    return report


def _table(results: list[MethodResult]) -> str:
    lines = ["| method | P@10 | mAP | P@10 class names | mAP class names | P@10 paraphrases | mAP paraphrases |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        n, p = r.by_kind.get("name", (0.0, 0.0)), r.by_kind.get("paraphrase", (float("nan"), float("nan")))
        lines.append(f"| {r.method} | {r.p10:.3f} | {r.map:.3f} | {n[0]:.3f} | {n[1]:.3f} | {p[0]:.3f} | {p[1]:.3f} |")
    return "\n".join(lines) + "\n"


def markdown(report: dict, settings: Settings) -> str:
    w = settings.fusion.weights
    parts = [f"Words-only searches through the engine with the default weights (text {w.text}, semantic {w.semantic}; "
             f"floor {settings.words.floor}; a word map mixed with ConSE by {settings.words.mix}, chosen on Caltech-101's "
             "figures below, so clothing and grocery are the held-out check), returning up to the whole catalogue; P@10 and mAP over what is "
             "returned (a relevant product not returned counts as not found). Queries: `evaluation/word_queries.py`, "
             "written before measuring. Word maps: `skulens words train` on the titled pictures named below "
             "(\"unseen kinds\": learnt without the query's kind, two folds of kinds).\n"]
    for name in ("caltech101", "clothing"):
        if name in report:
            results, info = report[name]
            parts.append(f"**{name}, titles withheld** ({info['labels']} labels; the first {TRAIN_PER_LABEL} images of "
                         f"each, {info['train']}, titled with the class name for the word map; the other "
                         f"{info['gallery']} without words are searched; {info['names']} class-name and "
                         f"{info['paraphrases']} paraphrase queries)\n\n" + _table(results))
    if "grocery" in report:
        withheld, present, info = report["grocery"]
        parts.append(f"**grocery, titles withheld** ({info['products']} catalogue pictures without words; "
                     f"{info['names']} generic names of the {info['kinds']} kinds and {info['paraphrases']} paraphrases; "
                     f"relevant: the products of that kind, {info['mean_relevant']:.1f} on average, so P@10 is "
                     f"{info['best_p10']:.3f} at best; word map learnt from the {info['train']} `train` shop "
                     "photos with their products' titles and descriptions)\n\n" + _table(withheld))
        parts.append("**grocery, titles present** (G1's catalogue with titles and descriptions; the same queries): "
                     "full-text search alone against the fused ranking\n\n" + _table(present))
    if "costs" in report:
        c = report["costs"]
        parts.append(f"**Cost** (grocery catalogue, {int(c['products'])} products): embedding a typed query "
                     f"{c['embed_query_ms']:.3f} ms (target <= 5 ms); a words-only search {c['words_search_ms']:.1f} ms; "
                     f"placing a product in word space {c['place_conse_ms']:.3f} ms by ConSE, "
                     f"{c['place_map_ms']:.3f} ms by the word map (per image at index time: the same, no new analysis); "
                     f"describing a photo in the catalogue's words {c['describe_ms']:.3f} ms; "
                     f"`skulens words train` on it {c['train_s']:.1f} s.\n")
    return "\n".join(parts)
