"""Reading a catalogue's vectors, shared by both stores (:mod:`pipeline.store_base`): every
vector or those of some ids, in chunks from one snapshot, and their owners as columns.  Vectors are
stored in float16; catalogues written before hold float32, read as well."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from core.errors import StorageError

_CHUNK = 500  # ids per IN (...) list (SQLite caps a statement's parameters)


def encode_vector(vec: np.ndarray) -> bytes:
    """A vector as stored: float16 (half the bytes of float32; cosines move by about 1e-4)."""
    return np.ascontiguousarray(vec, np.float16).tobytes()


def decode_vectors(blobs: list[bytes], dim: int) -> np.ndarray:
    """Stored vectors as float32 ``(N, dim)``: float16 blobs, or the float32 ones of catalogues
    written before vectors were stored in float16."""
    if not blobs:
        return np.zeros((0, dim), np.float32)
    sizes = {len(b) for b in blobs}
    if sizes == {2 * dim}:
        return np.frombuffer(b"".join(blobs), np.float16).reshape(len(blobs), dim).astype(np.float32)
    if sizes == {4 * dim}:
        return np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), dim).copy()
    if not sizes <= {2 * dim, 4 * dim}:
        raise StorageError(f"stored vectors of {sorted(sizes)} bytes do not fit dimension {dim}")
    return np.stack([np.frombuffer(b, np.float16 if len(b) == 2 * dim else np.float32).astype(np.float32)
                     for b in blobs])


@dataclass(frozen=True)
class OwnerColumns:
    """Every stored vector's owner as columns, in vector id order (see :class:`VectorOwners`)."""
    ids: np.ndarray  # int64
    images: np.ndarray  # int64 image ids
    skus: np.ndarray  # int32 codes into sku_names
    sku_names: list[str]
    regions: np.ndarray  # int8 codes into region_names
    region_names: list[str]


class Snapshot(Protocol):
    def stream(self, sql: str, chunk: int) -> Iterator[list[tuple]]:
        """The rows of ``sql``, ``chunk`` at a time, all from one snapshot of the database."""


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


class StoreReads:
    """The reads of a SQL catalogue; a backend supplies :meth:`_rows` and :meth:`_snapshot`."""

    OWNER_SCAN = "vectors"
    """How the owner scan names the vectors table (SQLite forces its covering index)."""

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[Snapshot]:
        raise NotImplementedError

    def _row(self, sql: str, args: Sequence[Any] = ()) -> tuple | None:
        rows = self._rows(sql, args)
        return rows[0] if rows else None

    def _chunked(self, sql: str, ids: Sequence[Any]) -> list[tuple]:
        """``sql`` with ``{marks}`` for an IN list, run over ``ids`` in chunks."""
        out: list[tuple] = []
        for start in range(0, len(ids), _CHUNK):
            part = list(ids[start:start + _CHUNK])
            out += self._rows(sql.format(marks=",".join("?" * len(part))), part)
        return out

    # -- vectors ------------------------------------------------------------------------
    def vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, str]]]:
        """All (ids, vectors, [(image_id, sku, region)]) in id order."""
        rows = self._rows("SELECT v.id, v.vector, v.image_id, i.sku, v.region FROM vectors v"
                          " JOIN images i ON i.id = v.image_id ORDER BY v.id")
        ids = np.asarray([r[0] for r in rows], np.int64)
        return ids, decode_vectors([bytes(r[1]) for r in rows], dim), [(r[2], r[3], r[4]) for r in rows]

    def vector_ids(self) -> np.ndarray:
        """Every stored vector's id, sorted (read from the owner index, not the vectors themselves)."""
        rows = self._rows(f"SELECT id FROM {self.OWNER_SCAN}")
        return np.sort(np.fromiter((r[0] for r in rows), np.int64, len(rows)))

    def vector_chunks(self, dim: int, chunk: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every (ids, float32 vectors), in id order, ``chunk`` rows at a time, from one snapshot of the
        database (a read transaction held while iterating)."""
        with self._snapshot() as snap:
            for rows in snap.stream("SELECT id, vector FROM vectors ORDER BY id", chunk):
                yield (np.fromiter((r[0] for r in rows), np.int64, len(rows)),
                       decode_vectors([bytes(r[1]) for r in rows], dim))

    def vectors_by_id(self, ids: np.ndarray, dim: int, missing_ok: bool = False) -> np.ndarray:
        """The vectors of ``ids``, in their order (every id must be stored; with ``missing_ok``, one
        that is not gives a row of zeros)."""
        ids = np.asarray(ids, np.int64)
        found: dict[int, bytes] = {r[0]: bytes(r[1]) for r in
                                   self._chunked("SELECT id, vector FROM vectors WHERE id IN ({marks})", ids.tolist())}
        if len(found) != len(ids) and not missing_ok:
            raise StorageError(f"{len(ids) - len(found)} of the vectors asked for are not stored")
        if len(found) == len(ids):
            return decode_vectors([found[i] for i in ids.tolist()], dim)
        out = np.zeros((len(ids), dim), np.float32)
        held = [j for j, i in enumerate(ids.tolist()) if i in found]
        if held:
            out[held] = decode_vectors([found[i] for i in ids[held].tolist()], dim)
        return out

    def vector_regions(self) -> set[str]:
        """The regions the stored vectors are of."""
        return {r[0] for r in self._rows("SELECT DISTINCT region FROM vectors")}

    def region_vectors(self, region: str, dim: int) -> dict[int, np.ndarray]:
        """Image id -> its vector of one region (e.g. ``full``)."""
        rows = self._rows("SELECT image_id, vector FROM vectors WHERE region = ?", (region,))
        vecs = decode_vectors([bytes(r[1]) for r in rows], dim)
        return {r[0]: vec for r, vec in zip(rows, vecs)}

    def vector_owner_columns(self, chunk: int = 100_000) -> OwnerColumns:
        """Every vector's owner, in vector id order, read from two covering indexes (the vectors'
        ``vectors_owner`` and the images' ``UNIQUE (sku, sha256)``) in one snapshot: a catalogue's
        start-up never reads its vectors or its images' analyses."""
        image_ids: list[np.ndarray] = []
        image_skus: list[np.ndarray] = []
        sku_codes: dict[str, int] = {}
        ids: list[np.ndarray] = []
        images: list[np.ndarray] = []
        regions: list[np.ndarray] = []
        region_names: list[str] = []
        with self._snapshot() as snap:
            for rows in snap.stream("SELECT id, sku FROM images", chunk):
                image_ids.append(np.fromiter((r[0] for r in rows), np.int64, len(rows)))
                image_skus.append(np.fromiter((sku_codes.setdefault(r[1], len(sku_codes)) for r in rows),
                                              np.int32, len(rows)))
            for rows in snap.stream(f"SELECT id, image_id, region FROM {self.OWNER_SCAN}", chunk):
                ids.append(np.fromiter((r[0] for r in rows), np.int64, len(rows)))
                images.append(np.fromiter((r[1] for r in rows), np.int64, len(rows)))
                for name in {r[2] for r in rows} - set(region_names):
                    region_names.append(name)
                lookup = {name: k for k, name in enumerate(region_names)}
                regions.append(np.fromiter((lookup[r[2]] for r in rows), np.int8, len(rows)))
        all_images, all_skus = _joined(image_ids, np.int64), _joined(image_skus, np.int32)
        vids, owners, codes = _joined(ids, np.int64), _joined(images, np.int64), _joined(regions, np.int8)
        by_image = np.argsort(all_images)
        pos = by_image[np.minimum(np.searchsorted(all_images, owners, sorter=by_image), len(by_image) - 1)] \
            if len(by_image) else np.zeros(len(owners), np.int64)
        held = all_images[pos] == owners if len(by_image) else np.zeros(len(owners), bool)  # as the join did
        order = np.argsort(vids[held], kind="stable")
        return OwnerColumns(vids[held][order], owners[held][order], all_skus[pos[held]][order], list(sku_codes),
                            codes[held][order], region_names)

    def vector_owners(self, sku: str) -> list[tuple[int, int, str]]:
        """(vector id, image id, region) of one product's vectors."""
        return [tuple(r) for r in self._rows(  # type: ignore[misc]
            "SELECT v.id, v.image_id, v.region FROM vectors v JOIN images i ON i.id = v.image_id"
            " WHERE i.sku = ? ORDER BY v.id", (sku,))]
