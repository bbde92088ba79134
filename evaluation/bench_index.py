"""Benchmark of the vector index alone: exact (flat), IVF and HNSW through our ``FaissIndex``,
side by side with a brute-force numpy search and Annoy, on random unit vectors.

For every size the same database and queries serve every method, so the figures can be read
as ratios measured in one run on one machine:

- **Data.** Seeded standard-normal vectors, L2-normalised, float32, generated in chunks into one
  array (no second copy). Queries: half are fresh random unit vectors, half are noisy copies of
  database vectors, ``normalise(x + 0.3 * u)`` with ``u`` a random *unit* vector (cosine to ``x``
  about 0.96), so that each of those has one clear nearest neighbour.
- **Ground truth.** Exact top-10 by inner product with ``faiss.IndexFlatIP``, batched over chunks
  of the database (each chunk indexed, searched and merged) so memory stays bounded.
- **Recall@10.** ``|found & true| / 10``, averaged over all queries. On random data the 2nd..10th
  true neighbours are barely nearer than the rest, which is the hardest case for approximate
  indexes; ``params`` therefore also gives ``dup@1``: the share of noisy-copy queries whose first
  result is the vector they were made from.
- **Latency.** One query at a time (batch 1), ``time.perf_counter`` around each call, after one
  untimed warm-up query; p50 and p95 in milliseconds. faiss runs on ``omp_set_num_threads(cpu
  count)`` threads; numpy uses its BLAS's default threads.
- **Memory** (``memory_mb``): for faiss methods, the serialised index size (counted through a
  callback writer, no copy), which is exact and not disturbed by the allocator; for numpy, the
  bytes of the database matrix it searches; for Annoy, the growth of the resident set during
  building (Annoy has no in-memory serialisation). The RSS growth of every method is also given
  in ``params`` as ``rss+N MB``.
- **Build time** (``build_s``): wall time of ``FaissIndex.build`` (training included for IVF),
  of Annoy's ``add_item`` loop plus ``build``; 0 for numpy, which has nothing to build.

With ``time_budget_s`` the whole call tries to stay within that many seconds: before a method
runs at a size, its time (build plus queries) is extrapolated from its time at the largest
smaller size already measured (linear for numpy and flat, ``n log n`` for HNSW and Annoy,
``n^1.5`` for IVF, whose ``nlist`` grows with ``sqrt(n)``); when that exceeds the time left the
method is skipped with a row whose numbers are NaN and whose ``params`` say ``skipped: ...``.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import psutil

from core.settings import IndexSettings
from fusion.faiss_index import FaissIndex

log = logging.getLogger(__name__)

K = 10
METHODS = ("numpy", "flat", "ivf", "hnsw", "annoy", "ivf-sq8", "ivf-sq4", "pca256-ivf-sq8", "ivf-pq")
COMPRESSED = {  # not FaissIndex kinds: faiss index-factory strings, compared with its ivf-sq8 and ivf-sq4
    "pca256-ivf-sq8": "PCA{pca},IVF{nlist},SQ8",  # 256 dimensions (a PCA learnt on the vectors), 8 bits each
    "ivf-pq": "IVF{nlist},PQ64",  # 64 bytes a vector
}
RERANK = IndexSettings().rerank  # compressed indexes: this many candidates re-ranked exactly from the stored vectors
ANNOY_TREES = 50
_CHUNK = 50_000
_NAN = float("nan")
# how a method's time grows with n, for the time-budget estimate
_SCALING: dict[str, Callable[[float, float], float]] = {
    "numpy": lambda n, m: n / m,
    "flat": lambda n, m: n / m,
    "ivf": lambda n, m: (n / m) ** 1.5,
    "hnsw": lambda n, m: n * math.log(n) / (m * math.log(m)),
    "annoy": lambda n, m: n * math.log(n) / (m * math.log(m)),
    "ivf-sq8": lambda n, m: (n / m) ** 1.5,
    "ivf-sq4": lambda n, m: (n / m) ** 1.5,
    "pca256-ivf-sq8": lambda n, m: (n / m) ** 1.5,
    "ivf-pq": lambda n, m: (n / m) ** 1.5,
}


@dataclass(frozen=True)
class IndexBenchRow:
    method: str
    n: int
    dim: int
    build_s: float
    memory_mb: float
    query_ms_p50: float
    query_ms_p95: float
    recall_at_10: float
    params: str

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"expected a method among {METHODS}, got {self.method!r}")
        if self.n <= 0 or self.dim <= 0:
            raise ValueError(f"expected positive n and dim, got n={self.n}, dim={self.dim}")

    @property
    def skipped(self) -> bool:
        return self.params.startswith("skipped")


@dataclass(frozen=True)
class _Built:
    """A built method: how to search one query, and what building it cost."""

    search: Callable[[np.ndarray], np.ndarray]  # one (dim,) query -> (K,) database positions
    build_s: float
    memory_mb: float
    rss_mb: float
    params: str


@dataclass(frozen=True)
class _Workload:
    database: np.ndarray  # (n, dim) float32, unit rows
    queries: np.ndarray  # (q, dim) float32, unit rows
    truth: np.ndarray  # (q, K) int64 positions of the exact top-K
    dup_of: np.ndarray  # (q,) source position of a noisy-copy query, -1 for a random query


# -- data ------------------------------------------------------------------------------------
def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, _CHUNK):
        block = out[start : start + _CHUNK]
        rng.standard_normal(out=block, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _queries(rng: np.random.Generator, database: np.ndarray, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    n_dup = n_queries // 2
    fresh = _unit_rows(rng, n_queries - n_dup, database.shape[1])
    src = rng.choice(len(database), size=n_dup, replace=len(database) < n_dup)
    dups = database[src] + 0.3 * _unit_rows(rng, n_dup, database.shape[1])
    dups /= np.linalg.norm(dups, axis=1, keepdims=True)
    dup_of = np.concatenate([np.full(len(fresh), -1, np.int64), src.astype(np.int64)])
    return np.ascontiguousarray(np.concatenate([fresh, dups]), np.float32), dup_of


def _ground_truth(database: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Exact top-k by inner product: ``IndexFlatIP`` per database chunk, results merged."""
    sims, ids = [], []
    for start in range(0, len(database), 4 * _CHUNK):
        flat = faiss.IndexFlatIP(database.shape[1])
        flat.add(database[start : start + 4 * _CHUNK])
        s, i = flat.search(queries, min(k, flat.ntotal))
        sims.append(s)
        ids.append(i + start)
        del flat
    s, i = np.concatenate(sims, axis=1), np.concatenate(ids, axis=1)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(i, top, axis=1)


def _workload(n: int, dim: int, n_queries: int, seed: int) -> _Workload:
    rng = np.random.default_rng(seed)
    database = _unit_rows(rng, n, dim)
    queries, dup_of = _queries(rng, database, n_queries)
    return _Workload(database, queries, _ground_truth(database, queries), dup_of)


# -- methods ---------------------------------------------------------------------------------
def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _serialised_mb(index: object) -> float:
    size = [0]

    def count(chunk: bytes) -> int:
        size[0] += len(chunk)
        return len(chunk)

    writer = faiss.PyCallbackIOWriter(count)
    faiss.write_index(index, writer)
    del writer
    return size[0] / 2**20


def _build_numpy(database: np.ndarray) -> _Built:
    def search(q: np.ndarray) -> np.ndarray:
        sims = database @ q
        top = np.argpartition(-sims, K - 1)[:K] if len(sims) > K else np.arange(len(sims))
        return top[np.argsort(-sims[top])]

    return _Built(search, 0.0, database.nbytes / 2**20, 0.0, "database @ q + argpartition; BLAS default threads")


def _build_faiss(kind: str, database: np.ndarray) -> _Built:
    settings = IndexSettings(kind=kind, use_gpu="never")
    rss0, t0 = _rss_mb(), time.perf_counter()
    # a compressed kind re-ranks from the exact vectors: the database array stands in for the float16
    # vectors the catalogue keeps on disk
    index = FaissIndex.build(database.shape[1], settings, np.arange(len(database), dtype=np.int64), database,
                             exact=lambda ids: database[ids])
    build_s, rss = time.perf_counter() - t0, _rss_mb() - rss0
    raw = index._index  # the faiss index FaissIndex holds, for its parameters and size
    if kind == "ivf":
        params = f"nlist={raw.nlist}, nprobe={raw.nprobe}"
    elif kind in ("ivf-sq8", "ivf-sq4"):
        params = (f"nlist={raw.nlist}, nprobe={raw.nprobe}, codes SQ{kind[-1]}, top {settings.rerank} "
                  "re-ranked exactly")
    elif kind == "hnsw":
        hnsw = faiss.downcast_index(raw.index).hnsw
        params = f"M={settings.hnsw_m}, efSearch={hnsw.efSearch}, efConstruction={hnsw.efConstruction}"
    else:
        params = "exact inner product"

    def search(q: np.ndarray) -> np.ndarray:
        return index.search(q[None, :], K)[1][0]

    params += f", omp_threads={faiss.omp_get_max_threads()}, via FaissIndex.build/search"
    return _Built(search, build_s, _serialised_mb(raw), rss, params)


def _build_annoy(database: np.ndarray) -> _Built:
    from annoy import AnnoyIndex  # optional: a dev dependency

    rss0, t0 = _rss_mb(), time.perf_counter()
    index = AnnoyIndex(database.shape[1], "angular")
    for i, row in enumerate(database):
        index.add_item(i, row)
    index.build(ANNOY_TREES, n_jobs=os.cpu_count() or 1)
    build_s, rss = time.perf_counter() - t0, _rss_mb() - rss0

    def search(q: np.ndarray) -> np.ndarray:
        return np.asarray(index.get_nns_by_vector(q, K), np.int64)

    params = f"angular, n_trees={ANNOY_TREES}, search_k=default (n_trees*k), n_jobs={os.cpu_count()}"
    return _Built(search, build_s, rss, rss, params)


def _build_compressed(method: str, database: np.ndarray) -> _Built:
    """An IVF index with other compressed codes (not one of FaissIndex's kinds), searched for
    :data:`RERANK` candidates that are re-ranked exactly against the stored vectors (the database
    array stands in for the float16 vectors the catalogue keeps on disk)."""
    n, dim = database.shape
    settings = IndexSettings()
    nlist = int(max(1, min(4 * np.sqrt(n), n // 39 if n >= 39 else 1)))
    rss0, t0 = _rss_mb(), time.perf_counter()
    index = faiss.index_factory(dim, COMPRESSED[method].format(nlist=nlist, pca=min(256, dim)),
                                faiss.METRIC_INNER_PRODUCT)
    sample = database if n <= 256 * nlist else database[np.sort(np.random.default_rng(0).choice(n, 256 * nlist,
                                                                                               replace=False))]
    index.train(np.ascontiguousarray(sample))
    for start in range(0, n, _CHUNK):
        index.add(database[start:start + _CHUNK])
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = min(settings.nprobe, nlist)
    build_s, rss = time.perf_counter() - t0, _rss_mb() - rss0

    def search(q: np.ndarray) -> np.ndarray:
        _, cand = index.search(q[None, :], RERANK)
        cand = cand[0][cand[0] >= 0]
        exact = database[cand] @ q
        return cand[np.argsort(-exact)[:K]]

    params = (f"nlist={nlist}, nprobe={ivf.nprobe}, {COMPRESSED[method].format(nlist=nlist, pca=min(256, dim))}, top {RERANK} re-ranked exactly, "
              f"trained on {len(sample)} vectors")
    return _Built(search, build_s, _serialised_mb(index), rss, params)


def _build(method: str, database: np.ndarray) -> _Built:
    if method in COMPRESSED:
        return _build_compressed(method, database)
    if method == "numpy":
        return _build_numpy(database)
    if method == "annoy":
        return _build_annoy(database)
    return _build_faiss(method, database)


# -- measuring -------------------------------------------------------------------------------
def _measure(method: str, built: _Built, work: _Workload) -> IndexBenchRow:
    built.search(work.queries[0])  # warm-up, not timed
    times, found = [], []
    for q in work.queries:
        t0 = time.perf_counter()
        ids = built.search(q)
        times.append(time.perf_counter() - t0)
        found.append(ids)
    recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, work.truth)]))
    dups = np.flatnonzero(work.dup_of >= 0)
    dup_hit = float(np.mean([len(found[j]) > 0 and found[j][0] == work.dup_of[j] for j in dups])) if len(dups) else _NAN
    ms = np.asarray(times) * 1e3
    n, dim = work.database.shape
    params = f"{built.params}, rss+{built.rss_mb:.0f} MB" + ("" if math.isnan(dup_hit) else f", dup@1={dup_hit:.2f}")
    return IndexBenchRow(method, n, dim, built.build_s, built.memory_mb, float(np.percentile(ms, 50)),
                         float(np.percentile(ms, 95)), recall, params)


def _skip(method: str, n: int, dim: int, why: str) -> IndexBenchRow:
    return IndexBenchRow(method, n, dim, _NAN, _NAN, _NAN, _NAN, _NAN, f"skipped: {why}")


def _too_slow(method: str, n: int, spent: dict[str, tuple[int, float]], left: float | None) -> str | None:
    """Why ``method`` at ``n`` would overrun the time left, or None to run it."""
    if left is None:
        return None
    if left <= 0:
        return "time budget spent"
    if method not in spent:
        return None
    m, seconds = spent[method]
    estimate = seconds * _SCALING[method](float(n), float(max(m, 2)))
    if estimate > left:
        return f"estimated {estimate:.0f} s from {seconds:.0f} s at n={m}, only {left:.0f} s of the budget left"
    return None


def _annoy_missing() -> str | None:
    try:
        import annoy  # noqa: F401
    except ImportError as exc:
        return f"annoy not installed ({exc})"
    return None


def bench_vector_indexes(
    sizes: Sequence[int],
    dim: int = 1280,
    n_queries: int = 200,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    progress: Callable[[str], None] | None = None,
    time_budget_s: float | None = None,
    data: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[IndexBenchRow]:
    """One row per (size, method), sizes in the order given; see the module docstring.

    ``data(n)``: the (database, queries) unit vectors at size ``n`` (e.g. real embeddings,
    :mod:`evaluation.real_vectors`) instead of random ones; ``dim`` and ``n_queries`` are then theirs."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or n_queries < 1 or dim < 1 or not all(n >= K for n in sizes):
        raise ValueError(f"expected methods among {METHODS}, n_queries and dim >= 1 and sizes >= {K}, "
                         f"got methods={list(methods)}, n_queries={n_queries}, dim={dim}, sizes={list(sizes)}")
    say = progress or (lambda msg: None)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    start, rows = time.perf_counter(), []
    spent: dict[str, tuple[int, float]] = {}  # method -> (n, seconds) at the largest size measured
    for n in sizes:
        if data is None:
            say(f"n={n}: generating {n} x {dim} vectors and the exact top-{K} of {n_queries} queries")
            work = _workload(n, dim, n_queries, seed)
        else:
            database, queries = data(n)
            say(f"n={n}: {len(database)} x {database.shape[1]} vectors, the exact top-{K} of {len(queries)} queries")
            work = _Workload(database, queries, _ground_truth(database, queries), np.full(len(queries), -1, np.int64))
        for method in methods:
            left = None if time_budget_s is None else time_budget_s - (time.perf_counter() - start)
            why = (_annoy_missing() if method == "annoy" else None) or _too_slow(method, n, spent, left)
            if why:
                log.info("skipping %s at n=%d: %s", method, n, why)
                say(f"n={n}: {method} skipped: {why}")
                rows.append(_skip(method, n, dim, why))
                continue
            say(f"n={n}: {method}: building and querying")
            t0 = time.perf_counter()
            built = _build(method, work.database)
            rows.append(_measure(method, built, work))
            del built
            gc.collect()
            spent[method] = (n, time.perf_counter() - t0)
            log.info("%s at n=%d: %s", method, n, rows[-1])
            say(f"n={n}: {method}: build {rows[-1].build_s:.1f} s, p50 {rows[-1].query_ms_p50:.2f} ms, "
                f"recall@10 {rows[-1].recall_at_10:.3f}")
        del work
        gc.collect()
    return rows


# -- reporting -------------------------------------------------------------------------------
def _fmt(value: float, spec: str) -> str:
    return "—" if math.isnan(value) else format(value, spec)


def rows_to_markdown(rows: Sequence[IndexBenchRow]) -> str:
    """A Markdown table; ``speed x numpy`` is numpy's p50 latency over the row's (>1: faster)."""
    numpy_p50 = {r.n: r.query_ms_p50 for r in rows if r.method == "numpy" and not r.skipped}
    head = ("| method | vectors | build s | memory MB | query p50 ms | query p95 ms | Recall@10 "
            "| speed x numpy | params |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        ref = numpy_p50.get(r.n, _NAN)
        ratio = ref / r.query_ms_p50 if r.query_ms_p50 > 0 else _NAN
        ratio_s = "—" if math.isnan(ratio) else f"{ratio:.2f}x"
        lines.append(f"| {r.method} | {r.n:,} | {_fmt(r.build_s, '.2f')} | {_fmt(r.memory_mb, '.1f')} "
                     f"| {_fmt(r.query_ms_p50, '.3f')} | {_fmt(r.query_ms_p95, '.3f')} "
                     f"| {_fmt(r.recall_at_10, '.3f')} | {ratio_s} | {r.params.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
