"""The catalogue on disk: one SQLite database (WAL) in the data directory.

Tables: ``products``; ``images`` (file, content hash, palette, OCR words, tags, boxes);
``vectors`` (one embedding per image region in float16, the source of truth the FAISS index is
built from; catalogues written before hold float32, read as well); ``keypoints`` (the main box's SIFT features per image, for the verify signal); ``products_fts`` (FTS5 over titles, brands, descriptions, tags, OCR words and the
colour words of the images' palettes);
``features`` (per-image analysis cached by content hash, :mod:`pipeline.database`); ``meta`` (schema
version, embedder, tuned weights (:mod:`pipeline.tuned`), and a generation number bumped by every write
that changes vectors).
Every write is one transaction: a crash leaves the previous consistent state.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from core.catalog import ImageRef, NewImage, Product, ProductQuery, StoredImage, WriteResult
from core.errors import ConflictError, InvalidInputError, NotFoundError, StorageError
from core.types import LocalFeatures, OcrText, Palette, Tags
from pipeline.database import FeatureTable

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: products_fts gained a colours column
EMBEDDER_KEY = "embedder"  # meta: '<name>:<dim>' of the embedder that made the vectors
INDEX_REGIONS_KEY = "index_regions"  # meta: JSON {"regions": [...], "packshot_centre_views": bool} of the vectors
EMBEDDER_WEIGHTS_KEY = "embedder_weights"  # meta: the trained embedder the vectors came from ('' = ImageNet's)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY, title TEXT NOT NULL DEFAULT '', brand TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '[]', price REAL,
    description TEXT NOT NULL DEFAULT '', extra TEXT NOT NULL DEFAULT '{}', source_hash TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sku TEXT NOT NULL REFERENCES products(sku) ON DELETE CASCADE,
    file TEXT NOT NULL, sha256 TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    palette TEXT NOT NULL, ocr TEXT NOT NULL, tags TEXT NOT NULL, boxes TEXT NOT NULL,
    created_at REAL NOT NULL, UNIQUE (sku, sha256));
CREATE INDEX IF NOT EXISTS images_sha ON images(sha256);
CREATE TABLE IF NOT EXISTS vectors (
    id INTEGER PRIMARY KEY AUTOINCREMENT, image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    region TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS vectors_owner ON vectors(image_id, region);
CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, value BLOB NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS keypoints (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, data BLOB NOT NULL);
"""
_FTS = """CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5(
    title, brand, category, tags, description, ocr, colours, tokenize = 'unicode61 remove_diacritics 2')"""


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


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


class CatalogStore(FeatureTable):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._open(self.path)
            self._add_owner_index()
            self._conn.executescript(_SCHEMA)
            if self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() in (None, ("2",)):
                self._conn.execute(_FTS)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open the catalogue database {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._init_readers()
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) == 1:
            self._migrate_from_1()
        elif int(version) != SCHEMA_VERSION:
            raise StorageError(f"{self.path} has schema version {version}, this skulens expects {SCHEMA_VERSION}")

    def _add_owner_index(self) -> None:
        """Catalogues from before ``vectors_owner`` (vectors by image and region, so a vector's owner is
        read without its 2.5 KB vector) get it in place of ``vectors_image``: one pass over the vectors."""
        conn = self._conn
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
        if "vectors_image" not in have:
            return
        log.info("%s: indexing the vectors' owners (once; a minute a million vectors)", self.path)
        conn.execute("CREATE INDEX IF NOT EXISTS vectors_owner ON vectors(image_id, region)")
        conn.execute("DROP INDEX vectors_image")

    def _migrate_from_1(self) -> None:
        """Version 1 had no ``colours`` column in the full-text index: rebuild that index."""
        log.info("%s: upgrading the catalogue schema 1 -> %d (full-text index gains colour words)",
                 self.path, SCHEMA_VERSION)
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DROP TABLE IF EXISTS products_fts")
                conn.execute(_FTS)
                for (sku,) in conn.execute("SELECT sku FROM products").fetchall():
                    self._refresh_fts(conn, sku)
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- meta -------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._read().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def local_features(self, image_id: int) -> LocalFeatures | None:
        """The SIFT features stored for an image (None for one indexed without them)."""
        row = self._read().execute("SELECT data FROM keypoints WHERE image_id = ?", (image_id,)).fetchone()
        return None if row is None else LocalFeatures.from_bytes(row[0])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction that also bumps the generation."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key) "
                             "DO UPDATE SET value = CAST(value AS INTEGER) + 1")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- products ---------------------------------------------------------------------
    def write_product(self, product: Product, images: list[NewImage], replace_images: bool,
                      source_hash: str | None = None) -> WriteResult:
        """Create or update a product and its images in one transaction.

        ``replace_images``: the product's images become exactly ``images`` (kept when their
        content hash is unchanged); otherwise ``images`` are appended (duplicates skipped).
        """
        return self.write_products([(product, images, replace_images, source_hash)])[0]

    def write_products(self, items: Sequence[tuple[Product, list[NewImage], bool, str | None]]) -> list[WriteResult]:
        """Several products as :meth:`write_product` writes one, all in one transaction (all or none)."""
        now = time.time()
        written = []
        with self._write() as conn:
            for product, images, replace_images, source_hash in items:
                written.append(self._write_one(conn, product, images, replace_images, source_hash, now))
        results = []
        for ids, vecs, removed, image_ids in written:
            dim = len(vecs[0]) if vecs else 0
            stored = decode_vectors([encode_vector(v) for v in vecs], dim)  # as a restart will read them back
            results.append(WriteResult(np.asarray(ids, np.int64), stored, removed, tuple(image_ids)))
        return results

    def _write_one(self, conn: sqlite3.Connection, product: Product, images: list[NewImage], replace_images: bool,
                   source_hash: str | None, now: float) -> tuple[list[int], list[np.ndarray], np.ndarray, list[int]]:
        conn.execute(
            "INSERT INTO products(sku, title, brand, category, tags, price, description, extra, source_hash,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(sku) DO UPDATE SET"
            " title=excluded.title, brand=excluded.brand, category=excluded.category, tags=excluded.tags,"
            " price=excluded.price, description=excluded.description, extra=excluded.extra,"
            " source_hash=excluded.source_hash, updated_at=excluded.updated_at",
            (product.sku, product.title, product.brand, product.category, json.dumps(list(product.tags)),
             product.price, product.description, json.dumps(product.extra), source_hash, now, now))
        existing = dict(conn.execute("SELECT sha256, id FROM images WHERE sku = ?", (product.sku,)).fetchall())
        wanted = {im.sha256 for im in images}
        removed_images = [iid for sha, iid in existing.items() if replace_images and sha not in wanted]
        removed = self._delete_images(conn, removed_images)
        ids: list[int] = []
        vecs: list[np.ndarray] = []
        image_ids: list[int] = []
        for im in images:
            if im.sha256 in existing:
                continue
            iid, vids = self._insert_image(conn, product.sku, im, now)
            existing[im.sha256] = iid
            image_ids.append(iid)
            ids.extend(vids)
            vecs.extend(im.vectors[r] for r in im.vectors)
        self._refresh_fts(conn, product.sku)
        return ids, vecs, removed, image_ids

    def _insert_image(self, conn: sqlite3.Connection, sku: str, im: NewImage, now: float) -> tuple[int, list[int]]:
        cur = conn.execute(
            "INSERT INTO images(sku, file, sha256, width, height, palette, ocr, tags, boxes, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (sku, im.file, im.sha256, im.width, im.height, json.dumps(im.palette.to_json()),
             json.dumps(im.ocr.to_json()), json.dumps(im.tags.to_json()),
             json.dumps([b.to_list() for b in im.boxes]), now))
        iid = int(cur.lastrowid or 0)  # an INSERT always sets it
        if im.local is not None:
            conn.execute("INSERT INTO keypoints(image_id, data) VALUES (?, ?)", (iid, im.local.to_bytes()))
        vids = []
        for region, vec in im.vectors.items():
            vids.append(int(conn.execute("INSERT INTO vectors(image_id, region, vector) VALUES (?,?,?)",
                                         (iid, region, encode_vector(vec))).lastrowid or 0))
        return iid, vids

    def _delete_images(self, conn: sqlite3.Connection, image_ids: list[int]) -> np.ndarray:
        if not image_ids:
            return np.zeros((0,), np.int64)
        marks = ",".join("?" * len(image_ids))
        vids = [r[0] for r in conn.execute(f"SELECT id FROM vectors WHERE image_id IN ({marks})", image_ids)]
        conn.execute(f"DELETE FROM images WHERE id IN ({marks})", image_ids)
        return np.asarray(vids, np.int64)

    def _refresh_fts(self, conn: sqlite3.Connection, sku: str) -> None:
        row = conn.execute("SELECT rowid, title, brand, category, tags, description FROM products WHERE sku = ?",
                           (sku,)).fetchone()
        from core.colours import colour_names

        conn.execute("DELETE FROM products_fts WHERE rowid = ?", (row[0],))
        words: list[str] = []
        colours: list[str] = []
        for ocr, palette in conn.execute("SELECT ocr, palette FROM images WHERE sku = ?", (sku,)):
            words.extend(d["word"] for d in json.loads(ocr))
            colours.extend(c for c in colour_names(Palette.from_json(json.loads(palette))) if c not in colours)
        tags = " ".join(json.loads(row[4]))
        conn.execute("INSERT INTO products_fts(rowid, title, brand, category, tags, description, ocr, colours)"
                     " VALUES (?,?,?,?,?,?,?,?)",
                     (row[0], row[1], row[2], row[3], tags, row[5], " ".join(words), " ".join(colours)))

    def delete_product(self, sku: str) -> np.ndarray:
        """Remove a product, its images and vectors; returns the removed vector ids."""
        with self._write() as conn:
            row = conn.execute("SELECT rowid FROM products WHERE sku = ?", (sku,)).fetchone()
            if row is None:
                raise NotFoundError(f"no product with SKU {sku!r}")
            image_ids = [r[0] for r in conn.execute("SELECT id FROM images WHERE sku = ?", (sku,))]
            removed = self._delete_images(conn, image_ids)
            conn.execute("DELETE FROM products_fts WHERE rowid = ?", (row[0],))
            conn.execute("DELETE FROM products WHERE sku = ?", (sku,))
        return removed

    def replace_embeddings(self, images: list[tuple[int, dict[str, np.ndarray], Tags]], embedder: str,
                           weights: str, regions: str, keypoints: dict[int, LocalFeatures] | None = None) -> None:
        """Every image's vectors and visual tags anew (and ``keypoints``, by image id, when given), and
        the embedder and regions (JSON, see :func:`pipeline.compat.regions_record`) that made them
        (``skulens reindex``), in one transaction: a failure leaves the catalogue as it was."""
        with self._write() as conn:
            known = {r[0] for r in conn.execute("SELECT id FROM images")}
            if known != {iid for iid, _, _ in images}:
                raise ConflictError("the catalogue changed while it was being re-embedded; run the command again")
            conn.execute("DELETE FROM vectors")
            for image_id, vectors, tags in images:
                conn.execute("UPDATE images SET tags = ? WHERE id = ?", (json.dumps(tags.to_json()), image_id))
                for region, vec in vectors.items():
                    conn.execute("INSERT INTO vectors(image_id, region, vector) VALUES (?,?,?)",
                                 (image_id, region, encode_vector(vec)))
            for image_id, local in (keypoints or {}).items():
                conn.execute("INSERT OR REPLACE INTO keypoints(image_id, data) VALUES (?, ?)",
                             (image_id, local.to_bytes()))
            for key, value in ((EMBEDDER_KEY, embedder), (EMBEDDER_WEIGHTS_KEY, weights),
                               (INDEX_REGIONS_KEY, regions)):
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def delete_image(self, sku: str, image_id: int) -> np.ndarray:
        with self._write() as conn:
            row = conn.execute("SELECT id FROM images WHERE id = ? AND sku = ?", (image_id, sku)).fetchone()
            if row is None:
                raise NotFoundError(f"product {sku!r} has no image {image_id}")
            removed = self._delete_images(conn, [image_id])
            self._refresh_fts(conn, sku)
        return removed

    def get_product(self, sku: str) -> Product:
        row = self._read().execute("SELECT sku, title, brand, category, tags, price, description, extra FROM products"
                                 " WHERE sku = ?", (sku,)).fetchone()
        if row is None:
            raise NotFoundError(f"no product with SKU {sku!r}")
        return _product(row)

    def source_hash(self, sku: str) -> str | None:
        row = self._read().execute("SELECT source_hash FROM products WHERE sku = ?", (sku,)).fetchone()
        return None if row is None else row[0]

    def get_products(self, skus: list[str]) -> dict[str, Product]:
        """The products of ``skus`` that exist, by SKU."""
        out: dict[str, Product] = {}
        for start in range(0, len(skus), 500):
            part = skus[start:start + 500]
            rows = self._read().execute("SELECT sku, title, brand, category, tags, price, description, extra FROM "
                                        f"products WHERE sku IN ({','.join('?' * len(part))})", part).fetchall()
            out.update((r[0], _product(r)) for r in rows)
        return out

    def has_product(self, sku: str) -> bool:
        return self._read().execute("SELECT 1 FROM products WHERE sku = ?", (sku,)).fetchone() is not None

    def list_products(self, offset: int = 0, limit: int = 100, query: ProductQuery | None = None) -> list[Product]:
        """The products ``query`` picks, in SKU order (or newest first); ``limit`` -1 for all."""
        query = query or ProductQuery()
        where, args = _product_filter(query)
        order = "created_at DESC, sku" if query.newest else "sku"
        rows = self._read().execute("SELECT sku, title, brand, category, tags, price, description, extra FROM products"
                                    f"{where} ORDER BY {order} LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return [_product(r) for r in rows]

    def count_products(self, query: ProductQuery | None = None) -> int:
        where, args = _product_filter(query or ProductQuery())
        return int(self._read().execute(f"SELECT COUNT(*) FROM products{where}", args).fetchone()[0])

    def count(self) -> tuple[int, int, int]:
        """(products, images, vectors)."""
        q = self._read().execute
        return tuple(q(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("products", "images", "vectors"))

    def images(self, sku: str | None = None) -> list[StoredImage]:
        sql = "SELECT id, sku, file, sha256, width, height, palette, ocr, tags, boxes FROM images"
        rows = self._read().execute(sql + (" WHERE sku = ? ORDER BY id" if sku else " ORDER BY id"),
                                  (sku,) if sku else ()).fetchall()
        return [StoredImage(r[0], r[1], r[2], r[3], r[4], r[5], Palette.from_json(json.loads(r[6])),
                            OcrText.from_json(json.loads(r[7])), Tags.from_json(json.loads(r[8])),
                            json.loads(r[9])) for r in rows]

    def image_refs(self) -> list[ImageRef]:
        """(id, sku, file, sha256) of every image, in id order, without its analysis."""
        return [ImageRef(*r) for r in self._read().execute("SELECT id, sku, file, sha256 FROM images ORDER BY id")]

    def image_signals(self, image_ids: Sequence[int]) -> list[tuple[int, str, Palette, Tags]]:
        """(image id, sku, palette, tags) of those of ``image_ids`` that are stored: what the colour and
        tag signals read of a search's candidates."""
        rows = []
        for start in range(0, len(image_ids), 500):  # SQLite caps a statement's parameters
            chunk = list(image_ids[start:start + 500])
            rows += self._read().execute(f"SELECT id, sku, palette, tags FROM images WHERE id IN "
                                         f"({','.join('?' * len(chunk))})", chunk).fetchall()
        return [(r[0], r[1], Palette.from_json(json.loads(r[2])), Tags.from_json(json.loads(r[3]))) for r in rows]

    def file_in_use(self, file: str) -> bool:
        return self._read().execute("SELECT 1 FROM images WHERE file = ? LIMIT 1", (file,)).fetchone() is not None

    # -- vectors and text ---------------------------------------------------------------
    def vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, str]]]:
        """All (ids, vectors, [(image_id, sku, region)]) in id order."""
        rows = self._read().execute("SELECT v.id, v.vector, v.image_id, i.sku, v.region FROM vectors v"
                                  " JOIN images i ON i.id = v.image_id ORDER BY v.id").fetchall()
        ids = np.asarray([r[0] for r in rows], np.int64)
        return ids, decode_vectors([r[1] for r in rows], dim), [(r[2], r[3], r[4]) for r in rows]

    def vector_ids(self) -> np.ndarray:
        """Every stored vector's id, sorted (read from the owner index, not the vectors themselves)."""
        rows = self._read().execute("SELECT id FROM vectors INDEXED BY vectors_owner").fetchall()
        return np.sort(np.fromiter((r[0] for r in rows), np.int64, len(rows)))

    def vector_chunks(self, dim: int, chunk: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every (ids, float32 vectors), in id order, ``chunk`` rows at a time, from one snapshot of the
        database (a read transaction held while iterating)."""
        conn = self._read()
        conn.execute("BEGIN")
        try:
            cursor = conn.execute("SELECT id, vector FROM vectors ORDER BY id")
            while rows := cursor.fetchmany(chunk):
                yield np.fromiter((r[0] for r in rows), np.int64, len(rows)), decode_vectors([r[1] for r in rows], dim)
        finally:
            conn.execute("COMMIT")

    def vectors_by_id(self, ids: np.ndarray, dim: int, missing_ok: bool = False) -> np.ndarray:
        """The vectors of ``ids``, in their order (every id must be stored; with ``missing_ok``, one
        that is not gives a row of zeros)."""
        found: dict[int, bytes] = {}
        ids = np.asarray(ids, np.int64)
        for start in range(0, len(ids), 500):  # SQLite caps a statement's parameters
            chunk = ids[start:start + 500].tolist()
            marks = ",".join("?" * len(chunk))
            found.update(self._read().execute(f"SELECT id, vector FROM vectors WHERE id IN ({marks})", chunk))
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
        return {r[0] for r in self._read().execute("SELECT DISTINCT region FROM vectors")}

    def region_vectors(self, region: str, dim: int) -> dict[int, np.ndarray]:
        """Image id -> its vector of one region (e.g. ``full``)."""
        rows = self._read().execute("SELECT image_id, vector FROM vectors WHERE region = ?", (region,)).fetchall()
        vecs = decode_vectors([r[1] for r in rows], dim)
        return {r[0]: vec for r, vec in zip(rows, vecs)}

    def vector_owner_columns(self, chunk: int = 100_000) -> OwnerColumns:
        """Every vector's owner, in vector id order, read from two covering indexes (the vectors'
        ``vectors_owner`` and the images' ``UNIQUE (sku, sha256)``) in one snapshot: a catalogue's
        start-up never reads its vectors or its images' analyses."""
        conn = self._read()
        conn.execute("BEGIN")
        try:
            image_ids: list[np.ndarray] = []
            image_skus: list[np.ndarray] = []
            sku_codes: dict[str, int] = {}
            cursor = conn.execute("SELECT id, sku FROM images")  # SQLite reads the (sku, sha256) index
            while rows := cursor.fetchmany(chunk):
                image_ids.append(np.fromiter((r[0] for r in rows), np.int64, len(rows)))
                image_skus.append(np.fromiter((sku_codes.setdefault(r[1], len(sku_codes)) for r in rows),
                                              np.int32, len(rows)))
            ids: list[np.ndarray] = []
            images: list[np.ndarray] = []
            regions: list[np.ndarray] = []
            region_names: list[str] = []
            cursor = conn.execute("SELECT id, image_id, region FROM vectors INDEXED BY vectors_owner")
            while rows := cursor.fetchmany(chunk):
                ids.append(np.fromiter((r[0] for r in rows), np.int64, len(rows)))
                images.append(np.fromiter((r[1] for r in rows), np.int64, len(rows)))
                for name in {r[2] for r in rows} - set(region_names):
                    region_names.append(name)
                lookup = {name: k for k, name in enumerate(region_names)}
                regions.append(np.fromiter((lookup[r[2]] for r in rows), np.int8, len(rows)))
        finally:
            conn.execute("COMMIT")
        all_images, all_skus = _joined(image_ids, np.int64), _joined(image_skus, np.int32)
        vids, owners, codes = _joined(ids, np.int64), _joined(images, np.int64), _joined(regions, np.int8)
        by_image = np.argsort(all_images)
        pos = by_image[np.minimum(np.searchsorted(all_images, owners, sorter=by_image), len(by_image) - 1)] \
            if len(by_image) else np.zeros(len(owners), np.int64)
        held = all_images[pos] == owners if len(by_image) else np.zeros(len(owners), bool)  # as the join did
        order = np.argsort(vids[held], kind="stable")
        return OwnerColumns(vids[held][order], owners[held][order], all_skus[pos[held]][order], list(sku_codes),
                            codes[held][order], region_names)

    def texts_and_colours(self, sku: str | None = None) -> dict[str, tuple[str, list[str]]]:
        """SKU -> (all its searchable text, the colour names of its images' palettes)."""
        rows = self._read().execute(
            "SELECT p.sku, f.title, f.brand, f.category, f.tags, f.description, f.ocr, f.colours FROM products_fts f"
            " JOIN products p ON p.rowid = f.rowid" + (" WHERE p.sku = ?" if sku else ""),
            (sku,) if sku else ()).fetchall()
        return {r[0]: (" ".join(x for x in r[1:] if x), (r[7] or "").split()) for r in rows}

    def vector_owners(self, sku: str) -> list[tuple[int, int, str]]:
        """(vector id, image id, region) of one product's vectors."""
        return self._read().execute("SELECT v.id, v.image_id, v.region FROM vectors v JOIN images i ON i.id = v.image_id"
                                  " WHERE i.sku = ? ORDER BY v.id", (sku,)).fetchall()

    def fts_search(self, match: str, limit: int) -> list[tuple[str, float]]:
        """SKUs matching an FTS5 expression, best first, with their (positive) BM25 scores."""
        try:
            rows = self._read().execute(
                "SELECT p.sku, -bm25(products_fts, 3.0, 3.0, 1.0, 1.0, 0.5, 2.0, 1.0) AS s FROM products_fts f"
                " JOIN products p ON p.rowid = f.rowid WHERE products_fts MATCH ? ORDER BY s DESC LIMIT ?",
                (match, limit)).fetchall()
        except sqlite3.OperationalError as exc:
            raise InvalidInputError(f"bad full-text query {match!r}: {exc}") from exc
        return [(r[0], float(r[1])) for r in rows]



def _product_filter(query: ProductQuery) -> tuple[str, tuple]:
    clauses, args = [], []
    if query.category:
        clauses.append("category = ? COLLATE NOCASE")
        args.append(query.category)
    if query.brand:
        clauses.append("brand = ? COLLATE NOCASE")
        args.append(query.brand)
    if query.tag:
        clauses.append("EXISTS (SELECT 1 FROM json_each(products.tags) WHERE value = ? COLLATE NOCASE)")
        args.append(query.tag)
    if query.text and query.text.strip():
        like = "%" + query.text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append("(sku LIKE ? ESCAPE '\\' OR title LIKE ? ESCAPE '\\')")
        args += [like, like]
    if query.without_images:
        clauses.append("NOT EXISTS (SELECT 1 FROM images WHERE images.sku = products.sku)")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


def _product(row: tuple) -> Product:
    return Product(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5], row[6], json.loads(row[7]))
