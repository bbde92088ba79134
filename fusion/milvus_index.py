"""The vector index on a Milvus server (``index.uri``), shared by every API replica and worker of a
deployment: Milvus standalone or distributed, or Milvus Lite's server for tests and trials.

One collection (``index.collection``) holds each stored vector under its catalogue id (the
database's vector id), with an HNSW (default), IVF_SQ8, IVF_FLAT or FLAT index over inner
products.  Searches and writes are strongly consistent: a vector written through one replica is
found through another at once.  Nothing is saved to the data directory: Milvus keeps the index.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConflictError, MissingDependencyError, StorageError
from core.filters import ProductFacets, SearchFilters, norm_value
from core.settings import IndexSettings

log = logging.getLogger(__name__)

KIND = "milvus"
_BATCH = 1000  # rows per insert or delete request (a request stays well under gRPC's 64 MB)
COUNT_TTL_S = 1.0
"""How long a count of the collection's vectors is trusted (other processes write it too)."""
ExactVectors = Callable[[np.ndarray], np.ndarray]
Attributes = Callable[[Iterable[int]], dict[int, tuple[str, ProductFacets]]]
"""Vector id -> (its product's SKU, that product's facets), for the ids given (those still stored)."""
_TEXT = 1024  # longest category or brand kept (longer ones are cut: a filter on them then misses)
_TAG, _TAGS = 256, 128  # longest tag or colour word, most tags or colours kept per product


def filter_expression(filters: SearchFilters) -> str:
    """Milvus's boolean expression for ``filters`` over the facet fields (values folded as the
    facets are; each string a JSON string literal, so no value can break out of it)."""
    parts = []
    if filters.category:
        parts.append(f"category == {json.dumps(norm_value(filters.category))}")
    if filters.brand:
        parts.append(f"brand == {json.dumps(norm_value(filters.brand))}")
    if filters.tags:
        parts.append(f"array_contains_all(tags, {json.dumps([norm_value(t) for t in filters.tags])})")
    if filters.colour:
        parts.append(f"array_contains(colours, {json.dumps(norm_value(filters.colour))})")
    if filters.price_min is not None:
        parts.append(f"price >= {float(filters.price_min)!r}")
    if filters.price_max is not None:
        parts.append(f"price <= {float(filters.price_max)!r}")
    return " and ".join(parts)


class _NoFile:
    """What :meth:`MilvusIndex.snapshot` gives: there is no file to write."""

    def write(self, path: Path) -> None:
        return None


GRPC_OPTIONS = {"grpc.keepalive_time_ms": 360_000, "grpc.keepalive_permit_without_calls": False,
                "grpc.initial_reconnect_backoff_ms": 200, "grpc.max_reconnect_backoff_ms": 5_000}
"""pymilvus pings an idle connection every 10 s; a gRPC server with the library's default policy (Milvus
Lite's) allows one ping in 5 minutes and then closes the connection ("Too many pings"), failing the next
calls. Every call has a timeout (``index.milvus_timeout_s``), which finds a dead server without pings.
A lost connection is tried again within 5 s (gRPC's default waits up to 2 minutes), so a restarted
Milvus is back for every process within seconds."""


class MilvusIndex:
    kind = KIND
    filters_inside = True

    def __init__(self, dim: int, settings: IndexSettings, exact: ExactVectors | None = None,
                 attributes: Attributes | None = None) -> None:
        """``exact``: the database's vectors by id; ``attributes``: the facets each vector is stored
        with, so searches filter inside Milvus (without them, a vector's facets are empty)."""
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
        self.attributes = attributes
        self.collection = settings.collection
        self._errors = MilvusException
        self._lock = threading.Lock()  # the client is shared by the process's threads
        self._counted: tuple[int, float] | None = None  # (count, when)
        try:
            self._client = MilvusClient(uri=settings.uri, timeout=settings.milvus_timeout_s, grpc_options=GRPC_OPTIONS)
            self._open()
        except MilvusException as exc:
            raise StorageError(f"cannot use the Milvus collection {self.collection!r} at {settings.uri}: {exc}") from exc

    def _open(self) -> None:
        client, name = self._client, self.collection
        if not client.has_collection(name):
            try:
                self._create()
            except self._errors:  # another process made it at the same moment: use theirs
                if not client.has_collection(name):
                    raise
        fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
        dim = int(fields.get("vector", {}).get("params", {}).get("dim", -1))
        if "category" not in fields:
            raise ConflictError(f"the Milvus collection {name!r} was made without the products' facets (by an "
                                "older skulens): drop it, and the next start fills it anew from the database")
        if dim != self.dim:
            raise ConflictError(f"the Milvus collection {name!r} holds vectors of dimension {dim}, this "
                                f"embedder makes {self.dim}: name another (SKULENS_INDEX__COLLECTION)")
        client.load_collection(name)

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        client, name = self._client, self.collection
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        # what search filters look at, per vector (its product's facets): a filtered search scans none
        schema.add_field("sku", DataType.VARCHAR, max_length=512)
        schema.add_field("category", DataType.VARCHAR, max_length=_TEXT)
        schema.add_field("brand", DataType.VARCHAR, max_length=_TEXT)
        schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=_TAGS, max_length=_TAG)
        schema.add_field("colours", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=_TAGS,
                         max_length=_TAG)
        schema.add_field("price", DataType.DOUBLE, nullable=True)
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
        """Write ``vectors`` under ``ids``, each with its product's facets (an id already held is
        overwritten: adding twice is harmless; an id whose product is gone meanwhile is left out)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        vectors = np.asarray(vectors, np.float32).reshape(len(ids), self.dim)
        for start in range(0, len(ids), _BATCH):
            part = ids[start:start + _BATCH]
            known = self.attributes(part) if self.attributes is not None else None
            rows = [self._row(int(i), v, known) for i, v in zip(part, vectors[start:start + _BATCH])]
            rows = [r for r in rows if r is not None]
            if rows:
                self._call("write vectors", partial(self._client.upsert, self.collection, rows))
        self._counted = None

    @staticmethod
    def _row(vid: int, vector: np.ndarray, known: dict[int, tuple[str, ProductFacets]] | None) -> dict | None:
        if known is not None and vid not in known:
            return None
        sku, f = known[vid] if known is not None else ("", None)
        return {"id": vid, "vector": vector.tolist(), "sku": sku[:512],
                "category": f.category[:_TEXT] if f else "", "brand": f.brand[:_TEXT] if f else "",
                "tags": sorted(t[:_TAG] for t in f.tags)[:_TAGS] if f else [],
                "colours": sorted(c[:_TAG] for c in f.colours)[:_TAGS] if f else [],
                "price": f.price if f else None}

    def refresh(self, ids: np.ndarray) -> None:
        """Write the vectors of ``ids`` again with their products' facets as they are now (a product's
        category, brand, tags, price or colours changed)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        for start in range(0, len(ids), _BATCH):
            part = ids[start:start + _BATCH]
            self.add(part, self.reconstruct(part))

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64).reshape(-1)
        for start in range(0, len(ids), _BATCH):
            part = ids[start:start + _BATCH].tolist()
            self._call("delete vectors", partial(self._client.delete, self.collection, ids=part))
        self._counted = None

    def search(self, vectors: np.ndarray, k: int, filters: SearchFilters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest vectors of products ``filters`` accept (all products without filters)."""
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        sims = np.full((len(vectors), k), -np.inf, np.float32)
        ids = np.full((len(vectors), k), -1, np.int64)
        if not len(vectors) or k <= 0:
            return sims, ids
        s = self.settings
        params = {"ef": max(k, s.hnsw_ef_search)} if s.milvus_index == "HNSW" else {"nprobe": s.nprobe}
        expression = filter_expression(filters) if filters is not None else ""
        hits = self._call("search", lambda: self._client.search(
            self.collection, data=vectors.tolist(), limit=min(k, 16_384), output_fields=[], filter=expression,
            search_params={"params": params}))
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
