"""The vector index's file in the data directory: opened by catching up with the database, saved in
the background.

The database is the source of truth.  A write changes the in-memory index at once and only marks
the file out of date; a saver thread writes it at most every ``index.save_interval_s`` seconds (and
:meth:`IndexFile.flush` or closing writes it at once), so a write's cost does not grow with the
catalogue.  On open, the saved index (whatever generation it was saved at) catches up with the
database: vectors stored since are added, vectors deleted since are removed.  Vector ids are never
reused (``AUTOINCREMENT``), so comparing the two id sets is exact.  A file that cannot be read, or
one that has drifted too far to be worth patching, is rebuilt from the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.errors import ConflictError
from core.protocols import VectorIndex
from core.settings import IndexSettings
from fusion.faiss_index import IVF_CODES, ExactVectors, FaissIndex, choose_kind, train_size
from fusion.milvus_index import MilvusIndex
from pipeline.store_base import CatalogStoreBase as CatalogStore

log = logging.getLogger(__name__)

REBUILD_SHARE = 0.5
"""Catching up that would add or remove more than this share of the stored vectors rebuilds instead."""


def exact_vectors(store: CatalogStore, dim: int) -> ExactVectors:
    """A compressed index's source of exact vectors: the database's (float16) vectors."""
    return lambda ids: store.vectors_by_id(ids, dim, missing_ok=True)


def build_index(store: CatalogStore, settings: IndexSettings, dim: int) -> VectorIndex:
    """A fresh index of every stored vector, read from the database in chunks (an IVF is trained on
    a random sample first), so a million vectors never sit in memory as float32 all at once.
    With ``index.uri``, the Milvus collection is emptied and filled the same way."""
    if settings.uri:
        shared = MilvusIndex(dim, settings, exact=exact_vectors(store, dim), attributes=store.vector_facets)
        shared.clear()
        for ids, vectors in store.vector_chunks(dim, chunk=10_000):
            shared.add(ids, vectors)
        return shared
    ids = store.vector_ids()
    sample = np.zeros((0, dim), np.float32)
    if choose_kind(settings, len(ids)) in IVF_CODES:
        pick = np.random.default_rng(0).choice(len(ids), train_size(len(ids)), replace=False)
        sample = store.vectors_by_id(ids[np.sort(pick)], dim)
    return FaissIndex.build_from(dim, settings, len(ids), sample, store.vector_chunks(dim),
                                 exact=exact_vectors(store, dim))


def open_index(path: Path, store: CatalogStore, settings: IndexSettings, dim: int) -> tuple[VectorIndex, bool]:
    """The index of every stored vector, and whether it differs from the file (so needs saving).
    With ``index.uri``, the Milvus collection, brought level with the database."""
    if settings.uri:
        return open_shared(store, settings, dim), False
    index = FaissIndex.load(path, settings, None, dim, exact=exact_vectors(store, dim))
    if index is not None and index.generation == store.generation():
        return index, False  # saved after the last write: nothing to do
    stored = store.vector_ids()
    if index is not None and index.kind == choose_kind(settings, len(stored)):
        held = index.ids()
        missing = np.setdiff1d(stored, held, assume_unique=True)
        extra = np.setdiff1d(held, stored, assume_unique=True)
        if len(missing) + len(extra) <= max(1000, REBUILD_SHARE * len(stored)):
            index.remove(extra)
            if len(missing):
                index.add(missing, store.vectors_by_id(missing, dim))
            if len(missing) or len(extra):
                log.info("vector index caught up with the database: %d vectors added, %d removed",
                         len(missing), len(extra))
            return index, True
    if index is not None:
        log.info("vector index %s is too far behind the database (or of another kind) to catch up; "
                 "rebuilding it from %d stored vectors", path, len(stored))
    elif path.exists():
        log.warning("vector index %s cannot be read; rebuilding it from %d stored vectors", path, len(stored))
    return build_index(store, settings, dim), True


def open_shared(store: CatalogStore, settings: IndexSettings, dim: int) -> MilvusIndex:
    """The Milvus collection, with the vectors the database holds and it lacks added and those it
    holds beyond them removed (a process killed between its database commit and its Milvus write
    left them so)."""
    shared = MilvusIndex(dim, settings, exact=None, attributes=store.vector_facets)
    stored, held = store.vector_ids(), shared.ids()
    both = np.intersect1d(stored, held, assume_unique=True)
    # the collection must be this catalogue's: some ids in common, holding the same vectors
    mine = len(both) > 0 or not len(held)
    if len(both):
        sample = np.random.default_rng(0).choice(both, min(len(both), 32), replace=False)
        mine = float(np.einsum("ij,ij->i", shared.reconstruct(sample), store.vectors_by_id(sample, dim)).min()) > 0.99
    if not mine:
        raise ConflictError(f"the Milvus collection {settings.collection!r} holds vectors this catalogue does not "
                            "(another catalogue's collection?): name another with SKULENS_INDEX__COLLECTION, or "
                            "drop it to have it filled from this catalogue")
    shared.exact = exact_vectors(store, dim)
    missing = np.setdiff1d(stored, held, assume_unique=True)
    extra = np.setdiff1d(held, stored, assume_unique=True)
    shared.remove(extra)
    for start in range(0, len(missing), 10_000):
        part = missing[start:start + 10_000]
        shared.add(part, store.vectors_by_id(part, dim))
    if len(missing) or len(extra):
        log.info("Milvus collection %r caught up with the database: %d vectors added, %d removed",
                 settings.collection, len(missing), len(extra))
    return shared


class IndexFile:
    """Keeps ``path`` close behind the live index that ``current()`` returns.

    ``lock`` is the one every change to the index is made under: a save holds it while it copies the
    index into memory (never halfway through a change), not while it writes the copy to disk."""

    def __init__(self, path: Path, store: CatalogStore, settings: IndexSettings,
                 current: Callable[[], VectorIndex], lock: threading.RLock, read_only: bool = False) -> None:
        """``read_only``: never write the file (another process owns it)."""
        self.path = Path(path)
        self.shared = bool(settings.uri)  # Milvus keeps the index: no file
        self.store = store
        self.interval = settings.save_interval_s
        self.read_only = read_only
        self._current = current
        self._lock = lock
        self._writing = threading.Lock()  # one write at a time, so an older copy never lands last
        self._dirty = False
        self._last_save = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def changed(self) -> None:
        """The live index changed: save it within ``save_interval_s`` (at once when that is 0)."""
        if self.read_only or self.shared:
            return
        with self._lock:
            self._dirty = True
        if self.interval <= 0:
            self.flush()
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="skulens-index-saver", daemon=True)
            self._thread.start()
        self._wake.set()

    def flush(self) -> None:
        """Write the index now if it changed since it was last written."""
        with self._writing:
            with self._lock:
                self._last_save = time.monotonic()
                if not self._dirty:
                    return
                started = time.perf_counter()
                snapshot = self._current().snapshot(self.store.generation())
                self._dirty = False
                copied = time.perf_counter()
            try:
                snapshot.write(self.path)
            except BaseException:
                with self._lock:
                    self._dirty = True
                raise
            log.debug("vector index copied in %.0f ms (writes waited that long) and saved in %.0f ms",
                      (copied - started) * 1000, (time.perf_counter() - copied) * 1000)

    def close(self) -> None:
        """Stop the saver and write what it had not yet."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            wait = self._last_save + self.interval - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return  # close() writes it
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a full disk must not kill the saver: the next change tries again
                log.exception("cannot save the vector index %s; the database still holds every vector", self.path)
