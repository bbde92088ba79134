"""The vector index on a Milvus server (``index.uri``), shared by every API replica and worker of a
deployment: Milvus standalone or distributed, or Milvus Lite's server for tests and trials.

One collection (``index.collection``) holds each stored vector under its catalogue id (the
database's vector id), with an HNSW (default), IVF_SQ8, IVF_FLAT or FLAT index over inner
products.  Searches and writes are strongly consistent: a vector written through one replica is
found through another at once.  Nothing is saved to the data directory: Milvus keeps the index.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConflictError, MissingDependencyError, StorageError
from core.settings import IndexSettings

log = logging.getLogger(__name__)

KIND = "milvus"
_BATCH = 1000  # rows per insert or delete request (a request stays well under gRPC's 64 MB)
COUNT_TTL_S = 1.0
"""How long a count of the collection's vectors is trusted (other processes write it too)."""
ExactVectors = Callable[[np.ndarray], np.ndarray]


class _NoFile:
    """What :meth:`MilvusIndex.snapshot` gives: there is no file to write."""

    def write(self, path: Path) -> None:
        return None


class MilvusIndex:
    kind = KIND
    shared = True
    """Other processes write the same index: a process following their writes need not repeat them."""

    def __init__(self, dim: int, settings: IndexSettings, exact: ExactVectors | None = None) -> None:
        if not settings.uri:
            raise ValueError("a Milvus index needs index.uri")
        try:
            from pymilvus import MilvusClient
            from pymilvus.exceptions import MilvusException
        except ImportError as exc:
            raise MissingDependencyError("a Milvus vector index needs pymilvus: pip install 'skulens[distributed]'") \
                from exc
        self.dim = dim
        self.settings = settings
        self.exact = exact
        self.collection = settings.collection
        self._errors = MilvusException
        self._lock = threading.Lock()  # the client is shared by the process's threads
        self._counted: tuple[int, float] | None = None  # (count, when)
        try:
            self._client = MilvusClient(uri=settings.uri, timeout=settings.milvus_timeout_s)
            self._open()
        except MilvusException as exc:
            raise StorageError(f"cannot use the Milvus collection {self.collection!r} at {settings.uri}: {exc}") from exc

    def _open(self) -> None:
        from pymilvus import DataType, MilvusClient

        client, name = self._client, self.collection
        if client.has_collection(name):
            fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
            dim = int(fields.get("vector", {}).get("params", {}).get("dim", -1))
            if dim != self.dim:
                raise ConflictError(f"the Milvus collection {name!r} holds vectors of dimension {dim}, this "
                                    f"embedder makes {self.dim}: name another (SKULENS_INDEX__COLLECTION)")
            client.load_collection(name)
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = client.prepare_index_params()
        s = self.settings
        build = {"HNSW": {"M": s.hnsw_m, "efConstruction": 200}, "FLAT": {}}.get(
            s.milvus_index, {"nlist": s.milvus_nlist})
        params.add_index(field_name="vector", index_type=s.milvus_index, metric_type="IP", params=build)
        client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        log.info("created the Milvus collection %r (%s, dimension %d)", name, s.milvus_index, self.dim)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            with self._lock:
                return fn()
        except self._errors as exc:
            raise StorageError(f"Milvus could not {what} ({self.collection!r} at {self.settings.uri}): {exc}") from exc

    # -- VectorIndex ----------------------------------------------------------------------
    def __len__(self) -> int:
        """How many vectors the collection holds: counted at most every :data:`COUNT_TTL_S` (a count
        is a query of its own; every search asks), and after this process's own writes."""
        now = time.monotonic()
        if self._counted is None or now - self._counted[1] > COUNT_TTL_S:
            rows = self._call("count the vectors", lambda: self._client.query(
                self.collection, filter="", output_fields=["count(*)"]))
            self._counted = (int(rows[0]["count(*)"]) if rows else 0, now)
        return self._counted[0]

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Write ``vectors`` under ``ids`` (an id already held is overwritten: adding twice is harmless)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        vectors = np.asarray(vectors, np.float32).reshape(len(ids), self.dim)
        for start in range(0, len(ids), _BATCH):
            rows = [{"id": int(i), "vector": v.tolist()}
                    for i, v in zip(ids[start:start + _BATCH], vectors[start:start + _BATCH])]
            self._call("write vectors", partial(self._client.upsert, self.collection, rows))
        self._counted = None

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64).reshape(-1)
        for start in range(0, len(ids), _BATCH):
            part = ids[start:start + _BATCH].tolist()
            self._call("delete vectors", partial(self._client.delete, self.collection, ids=part))
        self._counted = None

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        sims = np.full((len(vectors), k), -np.inf, np.float32)
        ids = np.full((len(vectors), k), -1, np.int64)
        if not len(vectors) or k <= 0:
            return sims, ids
        s = self.settings
        params = {"ef": max(k, s.hnsw_ef_search)} if s.milvus_index == "HNSW" else {"nprobe": s.nprobe}
        hits = self._call("search", lambda: self._client.search(
            self.collection, data=vectors.tolist(), limit=k, output_fields=[], search_params={"params": params}))
        for row, found in enumerate(hits):
            for col, hit in enumerate(list(found)[:k]):
                ids[row, col] = int(hit["id"])
                sims[row, col] = float(hit["distance"])
        return sims, ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of ``ids`` (every one must be held), in their order: the database's exact
        vectors when the index was given them, else Milvus's."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        if self.exact is not None:
            return self.exact(ids)
        rows = self._call("read vectors", lambda: self._client.get(self.collection, ids=ids.tolist(),
                                                                    output_fields=["vector"]))
        found = {int(r["id"]): r["vector"] for r in rows}
        missing = [i for i in ids.tolist() if i not in found]
        if missing:
            raise KeyError(f"the Milvus index holds no vector {missing[0]}")
        return np.asarray([found[i] for i in ids.tolist()], np.float32)

    def held(self, ids: Iterable[int]) -> np.ndarray:
        """Those of ``ids`` the collection holds."""
        ids = [int(i) for i in ids]
        out: list[int] = []
        for start in range(0, len(ids), _BATCH):
            part = ids[start:start + _BATCH]
            rows = self._call("look up vectors", partial(self._client.query, self.collection,
                                                         filter=f"id in {part}", output_fields=["id"]))
            out += [int(r["id"]) for r in rows]
        return np.asarray(sorted(out), np.int64)

    def ids(self) -> np.ndarray:
        """Every id the collection holds, sorted."""
        def read() -> list[int]:
            it = self._client.query_iterator(self.collection, batch_size=10_000, filter="", output_fields=["id"])
            got: list[int] = []
            try:
                while batch := it.next():
                    got += [int(r["id"]) for r in batch]
            finally:
                it.close()
            return got

        return np.sort(np.asarray(self._call("list the vectors", read), np.int64))

    def clear(self) -> None:
        """Drop every vector (and the collection, made anew): before a rebuild from the database."""
        self._call("drop the collection", lambda: self._client.drop_collection(self.collection))
        self._call("create the collection", self._open)
        self._counted = None

    def save(self, path: Path, generation: int) -> None:
        return None  # Milvus keeps it

    def snapshot(self, generation: int) -> _NoFile:
        return _NoFile()

    def close(self) -> None:
        with self._lock:
            self._client.close()
