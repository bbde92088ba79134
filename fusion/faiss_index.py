"""FAISS vector index of catalogue embeddings (inner product on L2-normalised vectors).

The index kind follows catalogue size: exact search (``flat``) for small catalogues, IVF with 4-bit
codes (``ivf-sq4``, an eighth of the float32 vectors' memory) beyond ``ivf_threshold`` vectors, or
IVF with 8-bit codes (``ivf-sq8``), whole vectors (``ivf``) or HNSW when asked.  A compressed index searches for
``rerank`` candidates and re-ranks them with the exact vectors, read from where the catalogue keeps
them (its ``exact`` source: the database's float16 vectors), and gives those exact vectors back from
:meth:`FaissIndex.reconstruct`.  Deletes remove ids in place (flat, IVF) or are filtered out of
results and compacted later (HNSW, which cannot delete).  The
index lives in CPU memory and on disk in CPU form; when faiss has GPU support and a GPU is
visible, searches run on a GPU copy, with a logged fallback to the CPU otherwise.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from core.settings import IndexSettings

log = logging.getLogger(__name__)

TRAIN_POINTS_PER_LIST = 64
ADD_CHUNK = 65_536
BULK_ADD = 512
"""Vectors added at once from which an IVF assigns them to lists by brute force (see _add_assigned)."""
IVF_CODES = {"ivf": "Flat", "ivf-sq8": "SQ8", "ivf-sq4": "SQ4"}
"""The IVF kinds and the codes (faiss index-factory names) their lists hold."""
QUANTIZER = "HNSW32"
"""How an IVF finds the lists nearest a vector (to add it, or to probe them): a small HNSW graph over
the lists' centroids.  Comparing with every centroid reads all of them (37 MB at a million images)
for every vector added or searched, which made writes grow with the catalogue."""
QUANTIZER_EF = 4
"""The HNSW quantizer looks at this many candidates a list probed (and at least 64)."""
ADD_EF = 32
"""...and at this many to find the one list a written vector joins (on 600 real catalogue vectors of
the 100k-image catalogue it found the nearest list for all of them, as efSearch 256 did, in a third
of the time)."""
COMPRESSED = frozenset({"ivf-sq8", "ivf-sq4"})
"""Kinds whose codes only approximate the vectors: their candidates are re-ranked exactly."""

ExactVectors = Callable[[np.ndarray], np.ndarray]
"""Ids -> their exact float32 vectors, ``(len(ids), dim)``; an id no longer stored gives a row of zeros."""


def ivf_lists(count: int) -> int:
    """IVF lists for ``count`` vectors: about 4 sqrt(n), with at least 39 vectors a list."""
    return int(max(1, min(4 * np.sqrt(max(count, 1)), count // 39 if count >= 39 else 1)))


def train_size(count: int) -> int:
    """How many of ``count`` vectors an IVF over them is trained on."""
    return min(count, TRAIN_POINTS_PER_LIST * ivf_lists(count))


def choose_kind(settings: IndexSettings, count: int) -> str:
    if settings.kind != "auto":
        return settings.kind
    return "ivf-sq4" if count >= settings.ivf_threshold else "flat"


def _gpu_available(settings: IndexSettings) -> bool:
    if settings.use_gpu == "never":
        return False
    if not hasattr(faiss, "StandardGpuResources"):
        log.info("faiss has no GPU support (faiss-cpu installed); searching on the CPU")
        return False
    if faiss.get_num_gpus() == 0:
        log.info("faiss has GPU support but sees no GPU; searching on the CPU")
        return False
    return True


class FaissIndex:
    filters_inside = False
    """Searches take no filters: the ranker filters the candidates (see :class:`core.protocols.VectorIndex`)."""
    """``add / remove / search`` over int64 ids; ``save`` and ``load`` are atomic."""

    def __init__(self, dim: int, settings: IndexSettings, kind: str = "flat", exact: ExactVectors | None = None) -> None:
        """``exact``: where a compressed kind reads the exact vectors of its candidates (without it, a
        compressed index ranks by its codes)."""
        self.dim = dim
        self.settings = settings
        self.kind = kind
        self.exact = exact
        self._index = self._empty(kind)
        self._deleted: set[int] = set()  # HNSW tombstones
        self._use_gpu = _gpu_available(settings)
        self._gpu = None
        self.generation: int | None = None  # the database generation it was saved at (see load)

    # -- construction -------------------------------------------------------------
    def _empty(self, kind: str, train: np.ndarray | None = None, count: int | None = None):
        """An empty index of ``kind``; an IVF trained on ``train`` with lists for ``count`` vectors
        (default ``len(train)``)."""
        if kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dim, self.settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efSearch = self.settings.hnsw_ef_search
            return faiss.IndexIDMap2(hnsw)
        if kind in IVF_CODES:
            n = count if count is not None else (0 if train is None else len(train))
            nlist = ivf_lists(n)
            ivf: Any = faiss.index_factory(self.dim, f"IVF{nlist}_{QUANTIZER},{IVF_CODES[kind]}",
                                           faiss.METRIC_INNER_PRODUCT)  # an IndexIVF
            if train is not None and len(train):
                # k-means needs tens of points per list, not the whole catalogue
                cap = TRAIN_POINTS_PER_LIST * nlist
                if len(train) > cap:
                    pick = np.random.default_rng(0).choice(len(train), cap, replace=False)
                    train = np.ascontiguousarray(train[np.sort(pick)])
                ivf.train(train)
            _set_nprobe(ivf, self.settings.nprobe)
            # ids stay ours, reconstruct works (DirectMap is missing from faiss's type stubs)
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
            return ivf
        raise ValueError(f"expected index kind flat, ivf, ivf-sq8, ivf-sq4 or hnsw, got {kind!r}")

    @classmethod
    def build(cls, dim: int, settings: IndexSettings, ids: np.ndarray, vectors: np.ndarray,
              exact: ExactVectors | None = None) -> "FaissIndex":
        """A fresh index of the kind that fits ``len(vectors)``."""
        return cls.build_from(dim, settings, len(vectors), vectors,
                              ((ids[s:s + ADD_CHUNK], vectors[s:s + ADD_CHUNK]) for s in range(0, len(vectors), ADD_CHUNK)),
                              exact)

    @classmethod
    def build_from(cls, dim: int, settings: IndexSettings, count: int, sample: np.ndarray,
                   chunks: Iterable[tuple[np.ndarray, np.ndarray]], exact: ExactVectors | None = None) -> "FaissIndex":
        """A fresh index of the kind that fits ``count`` vectors, trained (IVF) on ``sample`` (a random
        subset, at least :data:`TRAIN_POINTS_PER_LIST` per list, or all of them) and filled from
        ``chunks`` of (ids, vectors): the vectors never need to be in memory all at once."""
        kind = choose_kind(settings, count)
        index = cls(dim, settings, kind, exact)
        if kind in IVF_CODES and count:
            index._index = index._empty(kind, train=_as_f32(sample, dim), count=count)
        for ids, vectors in chunks:
            index.add(ids, vectors)
        return index

    def set_nprobe(self, nprobe: int) -> int:
        """Probe ``nprobe`` lists from now on (an IVF kind; others ignore it); returns the number set."""
        if self.kind not in IVF_CODES:
            return 0
        self._gpu = None
        return _set_nprobe(self._index, nprobe)

    # -- the VectorIndex protocol ---------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._deleted)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = _as_f32(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"expected one id per vector, got {len(ids)} ids and {len(vectors)} vectors")
        if not len(ids):
            return
        if not self._index.is_trained:  # an IVF built empty: train it on its first vectors
            self._index = self._empty(self.kind, train=vectors)
        if self.kind == "hnsw" and not self._deleted.isdisjoint(ids.tolist()):
            self._compact()  # else the tombstoned old vectors of these ids would come back with them
        if self.kind in IVF_CODES and len(ids) >= BULK_ADD:
            _add_assigned(self._index, ids, vectors)
        elif self.kind in IVF_CODES:
            _add_few(self._index, ids, vectors)
        else:
            self._index.add_with_ids(vectors, ids)
        self._deleted.difference_update(ids.tolist())
        self._gpu = None

    def _compact(self) -> None:
        """Rebuild the HNSW graph without its tombstoned vectors (HNSW cannot delete in place)."""
        all_ids = faiss.vector_to_array(self._index.id_map)
        vectors = self._index.index.reconstruct_n(0, self._index.ntotal)
        keep = ~np.isin(all_ids, np.fromiter(self._deleted, np.int64, len(self._deleted)))
        self._index, self._deleted = self._empty("hnsw"), set()
        if keep.any():
            self._index.add_with_ids(vectors[keep], all_ids[keep])

    def remove(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return
        if self.kind == "hnsw":
            self._deleted.update(ids.tolist())
        else:
            self._index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))
        self._gpu = None

    def search(self, vectors: np.ndarray, k: int, filters: object = None) -> tuple[np.ndarray, np.ndarray]:
        """``filters`` are not applied here (:attr:`filters_inside` is False)."""
        vectors = _as_f32(vectors, self.dim)
        k = max(1, int(k))
        if self._index.ntotal == 0:
            return np.zeros((len(vectors), k), np.float32), np.full((len(vectors), k), -1, np.int64)
        if self.kind in COMPRESSED:
            sims, ids = self._searcher().search(vectors, max(k, self.settings.rerank))
            if self.exact is not None:
                sims, ids = _rerank(vectors, sims, ids, self.exact, self.settings.rerank)
            return sims[:, :k], ids[:, :k]
        extra = min(len(self._deleted), 10 * k)
        sims, ids = self._searcher().search(vectors, k + extra)
        if self._deleted:
            sims, ids = _drop_deleted(sims, ids, self._deleted, k)
        return sims[:, :k], ids[:, :k]

    def _searcher(self):
        if not self._use_gpu or self.kind == "hnsw":
            return self._index
        if self._gpu is None:
            try:
                self._gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, self._index)
            except RuntimeError as exc:
                log.warning("cannot move the index to the GPU (%s); searching on the CPU", exc)
                self._use_gpu = False
                return self._index
        return self._gpu

    def ids(self) -> np.ndarray:
        """Every id the index holds (tombstoned HNSW ids left out), sorted."""
        if self.kind in IVF_CODES:
            invlists = self._index.invlists
            parts = [np.zeros(0, np.int64)]
            for lst in range(invlists.nlist):
                size = invlists.list_size(lst)
                if size:
                    parts.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).astype(np.int64))
            held = np.concatenate(parts)
        else:
            held = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        if self._deleted:
            held = held[~np.isin(held, np.fromiter(self._deleted, np.int64, len(self._deleted)))]
        return np.sort(held)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (every one must be held), in their order: a compressed kind's
        exact vectors from its ``exact`` source."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        if self.kind in COMPRESSED and self.exact is not None:
            return self.exact(ids)
        return self._index.reconstruct_batch(ids)

    # -- persistence ------------------------------------------------------------------
    def snapshot(self, generation: int) -> "IndexSnapshot":
        """The index as bytes in memory (a copy: fast, so it can be taken under the lock that changes
        it), to be written to disk without that lock."""
        stamp = {"generation": generation, "kind": self.kind, "dim": self.dim, "ntotal": int(self._index.ntotal),
                 "deleted": sorted(self._deleted)}
        return IndexSnapshot(faiss.serialize_index(self._index), stamp)

    def save(self, path: Path, generation: int) -> None:
        """Write the index, then its stamp; each by rename, so a crash leaves an old or a new pair."""
        self.snapshot(generation).write(path)
        self.generation = generation

    @classmethod
    def load(cls, path: Path, settings: IndexSettings, generation: int | None, dim: int,
             exact: ExactVectors | None = None) -> "FaissIndex | None":
        """The saved index if its stamp matches ``generation`` (None: whichever it was saved at) and
        ``dim``, else None.  Its stamp's generation is in :attr:`generation`."""
        path = Path(path)
        stamp_path = path.with_suffix(".json")
        if not path.is_file() or not stamp_path.is_file():
            return None
        try:
            stamp = json.loads(stamp_path.read_text())
            if (generation is not None and stamp.get("generation") != generation) or stamp.get("dim") != dim:
                return None
            raw = faiss.read_index(str(path))
        except (ValueError, RuntimeError, OSError) as exc:
            log.warning("cannot read %s (%s); it will be rebuilt", path, exc)
            return None
        if raw.ntotal != stamp.get("ntotal"):
            return None
        index = cls(dim, settings, stamp.get("kind", "flat"), exact)
        index._index = raw
        if index.kind in IVF_CODES:  # the settings' nprobe, not the one it was saved with
            _set_nprobe(raw, settings.nprobe)
        index._deleted = set(stamp.get("deleted", []))
        index.generation = stamp.get("generation")
        return index


@dataclass(frozen=True)
class IndexSnapshot:
    data: np.ndarray  # faiss.serialize_index's bytes
    stamp: dict

    def write(self, path: Path) -> None:
        """The index file, then its stamp; each by rename, so a crash leaves an old or a new pair."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(self.data.data)  # the array's buffer, not a copy
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _write_json_atomic(path.with_suffix(".json"), self.stamp)


def _add_assigned(ivf: Any, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Add many vectors to an IVF, each to its nearest list found by comparing the batch with every
    centroid at once (one matrix product: exact, and far faster in bulk than the HNSW graph)."""
    quantizer = faiss.downcast_index(ivf.quantizer)
    if isinstance(quantizer, faiss.IndexFlat):  # faiss batches it already
        ivf.add_with_ids(vectors, ids)
        return
    flat = faiss.IndexFlat(ivf.d, ivf.metric_type)
    flat.add(quantizer.reconstruct_n(0, ivf.nlist))
    _, lists = flat.search(vectors, 1)
    ivf.add_core(len(ids), faiss.swig_ptr(vectors), faiss.swig_ptr(ids),
                 faiss.swig_ptr(np.ascontiguousarray(lists.reshape(-1), np.int64)))


def _add_few(ivf: Any, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Add a few vectors (a write), their lists found by the HNSW quantizer looking at ADD_EF
    candidates: a vector needs its one nearest list, not the many a search probes (efSearch 256 at
    64 probes made a write's 3 vectors cost milliseconds)."""
    quantizer = faiss.downcast_index(ivf.quantizer)
    if not isinstance(quantizer, faiss.IndexHNSW):
        ivf.add_with_ids(vectors, ids)
        return
    search_ef = quantizer.hnsw.efSearch
    quantizer.hnsw.efSearch = ADD_EF
    try:
        ivf.add_with_ids(vectors, ids)
    finally:
        quantizer.hnsw.efSearch = search_ef


def _set_nprobe(ivf: Any, nprobe: int) -> int:
    """Probe ``nprobe`` lists (at most all), with an HNSW quantizer looking wide enough to find them."""
    ivf.nprobe = max(1, min(int(nprobe), ivf.nlist))
    quantizer = faiss.downcast_index(ivf.quantizer)
    if isinstance(quantizer, faiss.IndexHNSW):
        quantizer.hnsw.efSearch = max(64, QUANTIZER_EF * ivf.nprobe)
    return int(ivf.nprobe)


def _rerank(queries: np.ndarray, sims: np.ndarray, ids: np.ndarray, exact: ExactVectors,
            top: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``top`` best candidates by their codes re-scored with their exact vectors (read once
    for all rows; a candidate the source no longer holds is dropped), then every candidate sorted: the
    rest keep their codes' scores (within about 0.002 of the exact ones for 8-bit codes), so a search
    for many candidates reads only ``top`` vectors a query."""
    if sims.shape[1] > top:
        head_s, head_i = _rerank(queries, sims[:, :top], ids[:, :top], exact, top)
        both_s, both_i = np.concatenate([head_s, sims[:, top:]], 1), np.concatenate([head_i, ids[:, top:]], 1)
        both_s = np.where(both_i >= 0, both_s, -np.inf)
        order = np.argsort(-both_s, axis=1, kind="stable")
        both_s, both_i = np.take_along_axis(both_s, order, 1), np.take_along_axis(both_i, order, 1)
        gone = ~np.isfinite(both_s)
        return np.where(gone, 0, both_s).astype(np.float32), np.where(gone, -1, both_i)
    held = ids >= 0
    unique, where = np.unique(ids[held], return_inverse=True)
    vectors = np.asarray(exact(unique), np.float32) if len(unique) else np.zeros((0, queries.shape[1]), np.float32)
    stored = np.any(vectors != 0, axis=1)
    rows = np.nonzero(held)[0]
    scores = np.full(ids.shape, -np.inf, np.float32)
    scores[held] = np.einsum("ij,ij->i", vectors[where], queries[rows])
    scores[held] = np.where(stored[where], scores[held], -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")
    scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
    gone = ~np.isfinite(scores)
    return np.where(gone, 0, scores).astype(np.float32), np.where(gone, -1, ids)


def _as_f32(vectors: np.ndarray, dim: int) -> np.ndarray:
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (N, {dim}), got {arr.shape}")
    return arr


def _drop_deleted(sims: np.ndarray, ids: np.ndarray, deleted: set[int], k: int):
    out_s = np.zeros((len(ids), k), np.float32)
    out_i = np.full((len(ids), k), -1, np.int64)
    for row in range(len(ids)):
        keep = [j for j, i in enumerate(ids[row]) if i >= 0 and int(i) not in deleted][:k]
        out_s[row, : len(keep)] = sims[row, keep]
        out_i[row, : len(keep)] = ids[row, keep]
    return out_s, out_i


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
