"""``skulens bench-scale``: the engine on catalogues of 1k to 1M images built from real embeddings.

Analysing a million photos is days of CPU, so the catalogues are assembled: a few dozen real
images (catalogue pictures and shopper photos) are analysed once by the real pipeline, and each
catalogue image is a copy of one of them (its palette, words, tags, boxes and keypoints) whose
vectors are real embeddings grown to the size (:mod:`evaluation.real_vectors`), three images a
product.  The rows are written through the catalogue store's own ``write_product``.  What is then
measured goes through the product's code paths:

- **start-up**: opening the engine with no index file (the index is built from the database) and
  again with the file the first open saved; the resident memory the catalogue adds (from before
  the first open to after the second; models were loaded before) and the process's whole;
- **disk**: the database and the index file, per image;
- **writes**: adding a product with one image (its analysis cached, so the write is what is timed:
  the database transaction, the index and the in-memory view) and deleting it, p50 and p95;
- **searches**: the ranking part of a photo search (candidates, five signals, verification) for
  real shopper photos analysed beforehand; the analysis does not depend on the catalogue's size.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import psutil

from core.catalog import NewImage, Product
from core.errors import InvalidInputError
from core.settings import IndexSettings, Settings
from evaluation.protocols import ProtocolData
from evaluation.real_vectors import Grown
from fusion.faiss_index import FaissIndex
from pipeline.analysis import Stages
from pipeline.catalog_source import CatalogEntry, CatalogSource
from pipeline.database import FeatureCache
from pipeline.engine import Engine
from pipeline.indexing import index_catalog
from pipeline.store import CatalogStore

log = logging.getLogger(__name__)

IMAGES_PER_PRODUCT = 3
MARKER = ".bench-scale"
WRITES = 20
BATCH = 1000  # products a transaction while assembling
ASSEMBLED_KEY = "bench_scale_assembled"  # meta: the size a finished assembly wrote


@dataclass(frozen=True)
class ScaleRow:
    images: int
    vectors: int
    index_kind: str
    assemble_s: float
    open_cold_s: float
    open_warm_s: float
    memory_mb: float  # resident memory the catalogue added: before the first open to after the second
    rss_mb: float  # the process's resident memory then, models included
    db_bytes_per_image: float
    index_bytes_per_image: float
    write_ms_p50: float
    write_ms_p95: float
    delete_ms_p50: float
    rank_ms_p50: float
    rank_ms_p95: float
    vector_ms_p50: float = float("nan")  # the index search alone: a photo's query vectors, the candidates asked for
    vector_ms_p95: float = float("nan")
    protocol: str = ""  # e.g. G1: its gallery is in the catalogue and its queries are ranked
    protocol_queries: int = 0
    r1_index: float = float("nan")  # top-1 accuracy with the catalogue's index
    r1_exact: float = float("nan")  # the same with exact search (a flat index over the same vectors)
    top1_agree: float = float("nan")  # share of queries whose first SKU is the same either way
    recall10: float = float("nan")  # the query vectors' 10 nearest: share exact search finds too
    nprobe: int = 0  # lists an IVF index probed for the figures above (0: not an IVF)
    protocol_vector_ms: tuple[float, float] = (float("nan"), float("nan"))  # its queries' vector search p50, p95
    # (lists probed, R@1, same first SKU as exact, vector search p50, p95 ms, Recall@10) for other nprobe values
    nprobe_rows: tuple[tuple[int, float, float, float, float, float], ...] = ()


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def templates(engine: Engine, paths: Sequence[Path]) -> list[tuple[NewImage, str]]:
    """Each real image analysed for the index by the real pipeline, with its title."""
    out = []
    for path in paths:
        image = engine.prepare_image(path.name, path.read_bytes())
        out.append((image, path.stem.replace("-", " ").replace("_", " ")))
    return out


def assemble(store: CatalogStore, models: list[tuple[NewImage, str]], vectors: Grown, n_images: int,
             progress: Callable[[int, int], None] | None = None) -> int:
    """Write ``n_images`` copies of the templates, each with its own grown vectors, 1,000 products a
    transaction; returns the number of vectors written."""
    used, next_vec = 0, 0
    batch: list[tuple[Product, list[NewImage], bool, str | None]] = []
    for start in range(0, n_images, IMAGES_PER_PRODUCT):
        count = min(IMAGES_PER_PRODUCT, n_images - start)
        images = []
        for k in range(start, start + count):
            model, _ = models[k % len(models)]
            regions = list(model.vectors)
            vecs = {r: vectors[(next_vec + j) % len(vectors)] for j, r in enumerate(regions)}
            next_vec += len(regions)
            images.append(dataclasses.replace(model, sha256=f"{k:064x}", vectors=vecs))
        title = models[start % len(models)][1]
        batch.append((Product(f"SCALE-{start // IMAGES_PER_PRODUCT:07d}", f"{title} {start // 3}", tags=("scale",)),
                      images, False, None))
        used += count
        if len(batch) == BATCH or used == n_images:
            store.write_products(batch)
            batch = []
            if progress and (used // IMAGES_PER_PRODUCT) % 10_000 < BATCH:
                progress(used, n_images)
    return next_vec


def bench_size(settings: Settings, stages: Stages, n_images: int, make_vectors: Callable[[], Grown],
               template_paths: Sequence[Path], query_paths: Sequence[Path], progress: Callable[[str], None],
               protocol: ProtocolData | None = None, cache: FeatureCache | None = None,
               nprobes: Sequence[int] = (), reuse: bool = False) -> ScaleRow:
    """One catalogue of ``n_images`` in ``settings.data`` (emptied first if an earlier run made it; with
    ``reuse``, kept if an earlier run assembled it at this size), measured.

    ``protocol`` (G1): its real gallery is indexed into the catalogue first and its queries are
    ranked at the end with the catalogue's index (also with each of ``nprobes`` IVF lists probed)
    and with exact search; ``cache`` keeps their analyses across sizes."""
    folder = Path(settings.data)
    queries = [p.read_bytes() for p in query_paths]
    if reuse and _assembled(folder, n_images):
        progress(f"{n_images:,} images: reusing the catalogue an earlier run assembled in {folder}")
        store = CatalogStore(folder / "catalog.sqlite3")  # brought to this version's schema before timing
        n_vectors, assemble_s = store.count()[2], float("nan")
        store.close()
    else:
        n_vectors, assemble_s = _assemble_afresh(settings, stages, n_images, make_vectors, template_paths, queries,
                                                 progress, protocol, cache)

    progress(f"{n_images:,} images: opening (index built from the database)")
    shutil.rmtree(folder / "index", ignore_errors=True)  # the empty catalogue's: built afresh below
    gc.collect()
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    engine = Engine(settings, stages)
    open_cold = time.perf_counter() - t0
    engine.close()
    del engine
    gc.collect()
    t0 = time.perf_counter()
    engine = Engine(settings, stages, feature_cache=cache)
    open_warm = time.perf_counter() - t0
    rss = _rss_mb()
    memory = rss - rss0
    try:
        db = sum(p.stat().st_size for p in Path(settings.data).glob("catalog.sqlite3*"))
        idx = engine.index_path.stat().st_size

        for data in queries:  # analysed before timing (a reused catalogue's run has not seen them yet)
            engine.analyse(data, "query", engine.settings.fusion.query_regions, use_cache=True)
        progress(f"{n_images:,} images: writes and searches")
        image = template_paths[0].read_bytes()
        engine.add_product(Product("SCALE-WARM", "warm-up"), [("w.jpg", image)])  # analysis into the cache
        engine.remove_product("SCALE-WARM")
        writes, deletes = [], []
        for i in range(WRITES):
            t0 = time.perf_counter()
            engine.add_product(Product(f"SCALE-NEW-{i}", f"new product {i}"), [("n.jpg", image)])
            writes.append(time.perf_counter() - t0)
        for i in range(WRITES):
            t0 = time.perf_counter()
            engine.remove_product(f"SCALE-NEW-{i}")
            deletes.append(time.perf_counter() - t0)
        ranks = [engine.search(data, use_cache=True).timings["rank"] for data in queries]
        vector_ms = _vector_search_ms(engine, queries)
        kind, held = engine.view.index.kind, len(engine.view.index)
        row = ScaleRow(n_images, held or n_vectors, kind, assemble_s, open_cold, open_warm, memory, rss,
                       db / n_images, idx / n_images, float(np.percentile(writes, 50)) * 1e3,
                       float(np.percentile(writes, 95)) * 1e3, float(np.percentile(deletes, 50)) * 1e3,
                       float(np.percentile(ranks, 50)), float(np.percentile(ranks, 95)),
                       float(np.percentile(vector_ms, 50)), float(np.percentile(vector_ms, 95)))
        if protocol is not None:
            progress(f"{n_images:,} images: {protocol.name} queries with the {kind} index and with exact search")
            row = _protocol_accuracy(engine, protocol, row, nprobes)
    finally:
        engine.close()
    return row


def _assembled(folder: Path, n_images: int) -> bool:
    """Whether an earlier run finished assembling a catalogue of ``n_images`` in ``folder``."""
    if not (folder / MARKER).is_file() or not (folder / "catalog.sqlite3").is_file():
        return False
    store = CatalogStore(folder / "catalog.sqlite3")
    try:
        return store.get_meta(ASSEMBLED_KEY) == str(n_images)
    finally:
        store.close()


def _assemble_afresh(settings: Settings, stages: Stages, n_images: int, make_vectors: Callable[[], Grown],
                     template_paths: Sequence[Path], queries: list[bytes], progress: Callable[[str], None],
                     protocol: ProtocolData | None, cache: FeatureCache | None) -> tuple[int, float]:
    """Empty ``settings.data``, index the protocol's gallery, write ``n_images`` copies of the templates;
    returns the vectors written and the seconds the writing took."""
    folder = Path(settings.data)
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).is_file():
            raise InvalidInputError(f"{folder} is not empty and was not made by bench-scale: not touching it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("made by skulens bench-scale; removed by its next run\n")
    engine = Engine(settings, stages, feature_cache=cache)
    models = templates(engine, template_paths)
    for data in queries:  # analysed once; the timed searches reuse the analyses
        engine.search(data, use_cache=True)
    if protocol is not None:
        progress(f"{n_images:,} images: indexing the {protocol.name} gallery ({len(protocol.gallery)} products)")
        index_catalog(engine, CatalogSource([CatalogEntry(p, tuple(paths)) for p, paths in protocol.gallery]))
    engine.close()

    progress(f"{n_images:,} images: writing the catalogue")
    t0 = time.perf_counter()
    store = CatalogStore(folder / "catalog.sqlite3")
    n_vectors = assemble(store, models, make_vectors(), n_images,
                         lambda done, total: progress(f"{n_images:,} images: writing the catalogue ({done:,})"))
    store.set_meta(ASSEMBLED_KEY, str(n_images))
    store.close()
    return n_vectors, time.perf_counter() - t0


def _vector_search_ms(engine: Engine, queries: list[bytes]) -> list[float]:
    """The index search alone for each photo's query vectors (as many candidates as a search asks for)."""
    out = []
    for data in queries:
        _, analysis, _ = engine.analyse(data, "query", engine.settings.fusion.query_regions, use_cache=True)
        vectors = np.stack(list(analysis.objects[0].vectors.values()))
        t0 = time.perf_counter()
        engine.view.index.search(vectors, engine.settings.fusion.candidates)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _protocol_accuracy(engine: Engine, protocol: ProtocolData, row: ScaleRow,
                       nprobes: Sequence[int] = ()) -> ScaleRow:
    """Top-1 accuracy of the protocol's queries with the catalogue's index (and, for an IVF, with each
    of ``nprobes`` lists probed), then with exact search over the same stored vectors swapped in (their
    float16 values, as the database keeps them: a million vectors fit in memory that way)."""
    blobs = [(q.label, q.path.read_bytes()) for q in protocol.queries]
    labels = [label for label, _ in blobs]

    def firsts() -> tuple[list[str | None], list[float], np.ndarray]:
        """Each query's first SKU, its vector search time, and its vectors' 10 nearest ids."""
        out, vector_ms, nearest = [], [], []
        for _, data in blobs:
            _, analysis, _ = engine.analyse(data, "query", engine.settings.fusion.query_regions, use_cache=True)
            vectors = np.stack(list(analysis.objects[0].vectors.values()))
            t0 = time.perf_counter()
            _, ids = engine.view.index.search(vectors, engine.settings.fusion.candidates)
            vector_ms.append((time.perf_counter() - t0) * 1e3)
            nearest.append(ids[:, :10])
            matches = engine.search(data, k=1, use_cache=True).groups[0].matches
            out.append(matches[0].sku if matches else None)
        return out, vector_ms, np.concatenate(nearest)

    chosen = engine.view.index
    with_index, index_ms, index_nearest = firsts()
    variants: list[tuple[int, list[str | None], list[float], np.ndarray]] = []
    default = chosen.set_nprobe(engine.settings.index.nprobe) if isinstance(chosen, FaissIndex) else 0
    if default:
        try:
            for n in nprobes:
                variants.append((chosen.set_nprobe(n), *firsts()))
        finally:
            chosen.set_nprobe(default)
    engine.view.index = _exact_index(engine, chosen.dim, len(chosen))
    try:
        with_exact, _, exact_nearest = firsts()
    finally:
        engine.view.index = chosen

    def r1(found: list[str | None]) -> float:
        return float(np.mean([a == b for a, b in zip(found, labels)]))

    def agree(found: list[str | None]) -> float:
        return float(np.mean([a == b for a, b in zip(found, with_exact)]))

    def recall10(nearest: np.ndarray) -> float:
        """Recall@10 of the query vectors' search against exact search (labels play no part)."""
        return float(np.mean([len(np.intersect1d(a[a >= 0], b[b >= 0])) / max(1, int((b >= 0).sum()))
                              for a, b in zip(nearest, exact_nearest)]))

    return dataclasses.replace(
        row, protocol=protocol.name, protocol_queries=len(blobs), r1_index=r1(with_index), r1_exact=r1(with_exact),
        top1_agree=agree(with_index), recall10=recall10(index_nearest),
        nprobe=default,
        protocol_vector_ms=(float(np.percentile(index_ms, 50)), float(np.percentile(index_ms, 95))),
        nprobe_rows=tuple((n, r1(f), agree(f), float(np.percentile(ms, 50)), float(np.percentile(ms, 95)),
                           recall10(near)) for n, f, ms, near in variants))


def _exact_index(engine: Engine, dim: int, count: int) -> FaissIndex:
    """A flat index over the stored vectors in float16 (exact search over what the database holds)."""
    exact = FaissIndex(dim, IndexSettings(kind="flat", use_gpu="never"), "flat")
    exact._index = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16,
                                                                faiss.METRIC_INNER_PRODUCT))
    for ids, vectors in engine.store.vector_chunks(dim):
        exact.add(ids, vectors)
    return exact


def scale_markdown(rows: Sequence[ScaleRow]) -> str:
    head = ("| images | vectors | index | open, index built s | open, index file s | memory added MB | process RSS MB "
            "| DB bytes/image | index bytes/image | write p50 / p95 ms | delete p50 ms | vector search p50 / p95 ms "
            "| rank p50 / p95 ms | assembled in s |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        lines.append(f"| {r.images:,} | {r.vectors:,} | {r.index_kind} | {r.open_cold_s:.1f} | {r.open_warm_s:.1f} "
                     f"| {r.memory_mb:.0f} | {r.rss_mb:.0f} | {r.db_bytes_per_image:,.0f} | {r.index_bytes_per_image:,.0f} "
                     f"| {r.write_ms_p50:.1f} / {r.write_ms_p95:.1f} | {r.delete_ms_p50:.1f} "
                     f"| {r.vector_ms_p50:.1f} / {r.vector_ms_p95:.1f} "
                     f"| {r.rank_ms_p50:.1f} / {r.rank_ms_p95:.1f} "
                     f"| {'reused' if np.isnan(r.assemble_s) else f'{r.assemble_s:.0f}'} |")
    measured = [r for r in rows if r.protocol]
    if measured:
        lines += ["", "| images | protocol | queries | R@1 with the index | R@1 with exact search | difference "
                      "| same first SKU | vector Recall@10 vs exact |", "|---|---|---|---|---|---|---|---|"]
        for r in measured:
            probed = f"nprobe {r.nprobe}; " if r.nprobe else ""
            lines.append(f"| {r.images:,} | {r.protocol} ({r.index_kind}, {probed}vector search "
                         f"{r.protocol_vector_ms[0]:.0f} / {r.protocol_vector_ms[1]:.0f} ms) | {r.protocol_queries} "
                         f"| {r.r1_index:.3f} "
                         f"| {r.r1_exact:.3f} | {r.r1_index - r.r1_exact:+.3f} | {r.top1_agree:.1%} | {r.recall10:.3f} |")
            for n, r1, same, p50, p95, rec in r.nprobe_rows:
                lines.append(f"| {r.images:,} | {r.protocol} ({r.index_kind}, nprobe {n}; vector search {p50:.0f} / "
                             f"{p95:.0f} ms) | {r.protocol_queries} | {r1:.3f} | {r.r1_exact:.3f} "
                             f"| {r1 - r.r1_exact:+.3f} | {same:.1%} | {rec:.3f} |")
    return "\n".join(lines) + "\n"
