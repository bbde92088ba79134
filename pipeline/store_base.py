"""The catalogue store's shared part: every read and write that SQLite (:mod:`pipeline.store`, the
embedded default) and PostgreSQL (:mod:`pipeline.store_postgres`) run alike, written once.

Tables (both backends): ``products``; ``images`` (file, content hash, palette, OCR words, tags,
boxes); ``vectors`` (one embedding per image region in float16, the source of truth the vector
index is built from); ``keypoints`` (the main box's SIFT features per image, for the verify
signal); a full-text index over titles, brands, descriptions, tags, OCR words and the colour words
of the images' palettes (FTS5 in SQLite, ``tsvector`` in PostgreSQL); ``features`` (per-image
analyses cached by content hash); ``meta`` (schema version, embedder, tuned weights
(:mod:`pipeline.tuned`), and a generation number bumped by every write); ``changes`` (which
products each generation changed, so API replicas and read-only processes follow the writes).
Every write is one transaction: a crash leaves the previous consistent state.

A backend supplies the connection handling (:meth:`_rows`, :meth:`_transaction`,
:meth:`_snapshot`), its full-text index and the few statements whose SQL differs.  Statements
here use ``?`` placeholders; the PostgreSQL backend translates them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from core.catalog import ImageRef, NewImage, Product, ProductQuery, StoredImage, WriteResult
from core.colours import colour_names
from core.errors import ConflictError, NotFoundError
from core.filters import ProductFacets, facets
from core.types import LocalFeatures, OcrText, Palette, Tags
from pipeline.store_vectors import (  # noqa: F401 - re-exported
    OwnerColumns,
    Snapshot,
    StoreReads,
    decode_vectors,
    encode_vector,
)

EMBEDDER_KEY = "embedder"  # meta: '<name>:<dim>' of the embedder that made the vectors
INDEX_REGIONS_KEY = "index_regions"  # meta: JSON {"regions": [...], "packshot_centre_views": bool} of the vectors
EMBEDDER_WEIGHTS_KEY = "embedder_weights"  # meta: the trained embedder the vectors came from ('' = ImageNet's)
_BUMP = ("INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key) "
         "DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT) RETURNING value")
CHANGES_KEPT = 100_000
"""Generations the change log keeps: a process further behind than that reloads the catalogue whole."""
EVERYTHING = "*"
"""The change log's word for a write that changed every product (``skulens reindex``)."""
_PRODUCT_COLUMNS = "sku, title, brand, category, tags, price, description, extra"


@dataclass(frozen=True)
class ProductText:
    """What the full-text index holds of one product."""
    title: str
    brand: str
    category: str
    tags: str
    description: str
    ocr: str
    colours: str


class Tx(Protocol):
    """A connection inside a write transaction."""

    def execute(self, sql: str, args: Sequence[Any] = ...) -> Any: ...


class CatalogStoreBase(StoreReads):
    """The catalogue: products, their images' analyses and vectors, text, meta (see the module doc)."""

    ALL_ROWS: int | None = None
    """``LIMIT`` meaning no limit."""

    # -- what a backend supplies ------------------------------------------------------------
    def _transaction(self) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def _put_text(self, tx: Tx, sku: str, text: ProductText) -> None:
        raise NotImplementedError

    def _drop_text(self, tx: Tx, sku: str) -> None:
        raise NotImplementedError

    COLOURS_OF = ""
    """SQL of (sku, its colour words) from the text index for the SKUs in ``{marks}``."""

    def _tag_clause(self) -> str:
        """SQL true when the product's tags (a JSON list) hold ``?``, ignoring case."""
        raise NotImplementedError

    def texts_and_colours(self, sku: str | None = None) -> dict[str, tuple[str, list[str]]]:
        """SKU -> (all its searchable text, the colour names of its images' palettes)."""
        raise NotImplementedError

    def fts_search(self, tokens: Sequence[str], limit: int) -> list[tuple[str, float]]:
        """SKUs whose text holds any of ``tokens`` (normalised words; those of
        :data:`fusion.text.PREFIX_MIN_LENGTH` or more also as prefixes), best first, with positive scores."""
        raise NotImplementedError

    def cached_features(self, key: str) -> bytes | None:
        raise NotImplementedError

    def cache_features(self, key: str, value: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    # -- meta -------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._row("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as tx:
            _set_meta(tx, key, value)

    def set_meta_for_all(self, key: str, value: str) -> None:
        """Set a meta value that changes how every product is seen (the word map): logged as a change
        of everything, so other processes on the catalogue reload their view whole."""
        with self._write([EVERYTHING]) as tx:
            _set_meta(tx, key, value)

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def local_features(self, image_id: int) -> LocalFeatures | None:
        """The SIFT features stored for an image (None for one indexed without them)."""
        row = self._row("SELECT data FROM keypoints WHERE image_id = ?", (image_id,))
        return None if row is None else LocalFeatures.from_bytes(bytes(row[0]))

    @contextmanager
    def _write(self, skus: Iterable[str]) -> Iterator[Tx]:
        """One write transaction that also bumps the generation and logs which products it changed
        (``skus``), so other processes on the catalogue can follow (:meth:`changes_since`).

        The generation is bumped last, so the row it locks (PostgreSQL) is held only until the
        commit: writers from several processes commit in generation order."""
        with self._transaction() as tx:
            yield tx
            generation = int(tx.execute(_BUMP).fetchone()[0])
            tx.execute("DELETE FROM changes WHERE generation <= ?", (generation - CHANGES_KEPT,))
            for sku in sorted(set(skus)) or [""]:  # every generation is logged, even one that changed none
                tx.execute("INSERT INTO changes(generation, sku) VALUES (?, ?)", (generation, sku))

    def changes_since(self, generation: int) -> tuple[int, set[str] | None]:
        """(the generation now, the SKUs changed since ``generation``), or None for the SKUs when the
        log does not reach back that far or a write changed everything: reload the catalogue whole."""
        now = self.generation()
        if now <= generation:
            return now, set()
        rows = self._rows("SELECT generation, sku FROM changes WHERE generation > ? AND generation <= ?",
                          (generation, now))
        if {r[0] for r in rows} != set(range(generation + 1, now + 1)):
            return now, None
        skus = {r[1] for r in rows}
        return now, None if EVERYTHING in skus else skus - {""}

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
        with self._write(product.sku for product, *_ in items) as tx:
            for product, images, replace_images, source_hash in items:
                written.append(self._write_one(tx, product, images, replace_images, source_hash, now))
        results = []
        for ids, vecs, removed, image_ids in written:
            dim = len(vecs[0]) if vecs else 0
            stored = decode_vectors([encode_vector(v) for v in vecs], dim)  # as a restart will read them back
            results.append(WriteResult(np.asarray(ids, np.int64), stored, removed, tuple(image_ids)))
        return results

    def _write_one(self, tx: Tx, product: Product, images: list[NewImage], replace_images: bool,
                   source_hash: str | None, now: float) -> tuple[list[int], list[np.ndarray], np.ndarray, list[int]]:
        tx.execute(
            f"INSERT INTO products({_PRODUCT_COLUMNS}, source_hash, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(sku) DO UPDATE SET"
            " title=excluded.title, brand=excluded.brand, category=excluded.category, tags=excluded.tags,"
            " price=excluded.price, description=excluded.description, extra=excluded.extra,"
            " source_hash=excluded.source_hash, updated_at=excluded.updated_at",
            (product.sku, product.title, product.brand, product.category, json.dumps(list(product.tags)),
             product.price, product.description, json.dumps(product.extra), source_hash, now, now))
        existing = dict(tx.execute("SELECT sha256, id FROM images WHERE sku = ?", (product.sku,)).fetchall())
        wanted = {im.sha256 for im in images}
        removed_images = [iid for sha, iid in existing.items() if replace_images and sha not in wanted]
        removed = self._delete_images(tx, removed_images)
        ids: list[int] = []
        vecs: list[np.ndarray] = []
        image_ids: list[int] = []
        for im in images:
            if im.sha256 in existing:
                continue
            iid, vids = self._insert_image(tx, product.sku, im, now)
            existing[im.sha256] = iid
            image_ids.append(iid)
            ids.extend(vids)
            vecs.extend(im.vectors[r] for r in im.vectors)
        self._refresh_text(tx, product.sku)
        return ids, vecs, removed, image_ids

    def _insert_image(self, tx: Tx, sku: str, im: NewImage, now: float) -> tuple[int, list[int]]:
        iid = int(tx.execute(
            "INSERT INTO images(sku, file, sha256, width, height, palette, ocr, tags, boxes, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (sku, im.file, im.sha256, im.width, im.height, json.dumps(im.palette.to_json()),
             json.dumps(im.ocr.to_json()), json.dumps(im.tags.to_json()),
             json.dumps([b.to_list() for b in im.boxes]), now)).fetchone()[0])
        if im.local is not None:
            tx.execute("INSERT INTO keypoints(image_id, data) VALUES (?, ?)", (iid, im.local.to_bytes()))
        vids = []
        for region, vec in im.vectors.items():
            vids.append(int(tx.execute("INSERT INTO vectors(image_id, region, vector) VALUES (?,?,?) RETURNING id",
                                       (iid, region, encode_vector(vec))).fetchone()[0]))
        return iid, vids

    def _delete_images(self, tx: Tx, image_ids: list[int]) -> np.ndarray:
        if not image_ids:
            return np.zeros((0,), np.int64)
        marks = ",".join("?" * len(image_ids))
        vids = [r[0] for r in tx.execute(f"SELECT id FROM vectors WHERE image_id IN ({marks})", image_ids)]
        tx.execute(f"DELETE FROM images WHERE id IN ({marks})", image_ids)
        return np.asarray(vids, np.int64)

    def _refresh_text(self, tx: Tx, sku: str) -> None:
        row = tx.execute("SELECT title, brand, category, tags, description FROM products WHERE sku = ?",
                         (sku,)).fetchone()
        words: list[str] = []
        colours: list[str] = []
        for ocr, palette in tx.execute("SELECT ocr, palette FROM images WHERE sku = ? ORDER BY id", (sku,)).fetchall():
            words.extend(d["word"] for d in json.loads(ocr))
            colours.extend(c for c in colour_names(Palette.from_json(json.loads(palette))) if c not in colours)
        self._put_text(tx, sku, ProductText(row[0], row[1], row[2], " ".join(json.loads(row[3])), row[4],
                                            " ".join(words), " ".join(colours)))

    def delete_product(self, sku: str) -> np.ndarray:
        """Remove a product, its images and vectors; returns the removed vector ids."""
        with self._write([sku]) as tx:
            if tx.execute("SELECT 1 FROM products WHERE sku = ?", (sku,)).fetchone() is None:
                raise NotFoundError(f"no product with SKU {sku!r}")
            image_ids = [r[0] for r in tx.execute("SELECT id FROM images WHERE sku = ?", (sku,)).fetchall()]
            removed = self._delete_images(tx, image_ids)
            self._drop_text(tx, sku)
            tx.execute("DELETE FROM products WHERE sku = ?", (sku,))
        return removed

    def replace_embeddings(self, images: list[tuple[int, dict[str, np.ndarray], Tags]], embedder: str,
                           weights: str, regions: str, keypoints: dict[int, LocalFeatures] | None = None) -> None:
        """Every image's vectors and visual tags anew (and ``keypoints``, by image id, when given), and
        the embedder and regions (JSON, see :func:`pipeline.compat.regions_record`) that made them
        (``skulens reindex``), in one transaction: a failure leaves the catalogue as it was."""
        with self._write([EVERYTHING]) as tx:
            known = {r[0] for r in tx.execute("SELECT id FROM images").fetchall()}
            if known != {iid for iid, _, _ in images}:
                raise ConflictError("the catalogue changed while it was being re-embedded; run the command again")
            tx.execute("DELETE FROM vectors")
            for image_id, vectors, tags in images:
                tx.execute("UPDATE images SET tags = ? WHERE id = ?", (json.dumps(tags.to_json()), image_id))
                for region, vec in vectors.items():
                    tx.execute("INSERT INTO vectors(image_id, region, vector) VALUES (?,?,?)",
                               (image_id, region, encode_vector(vec)))
            for image_id, local in (keypoints or {}).items():
                tx.execute("INSERT INTO keypoints(image_id, data) VALUES (?, ?) ON CONFLICT(image_id) "
                           "DO UPDATE SET data = excluded.data", (image_id, local.to_bytes()))
            for key, value in ((EMBEDDER_KEY, embedder), (EMBEDDER_WEIGHTS_KEY, weights),
                               (INDEX_REGIONS_KEY, regions)):
                _set_meta(tx, key, value)

    def delete_image(self, sku: str, image_id: int) -> np.ndarray:
        with self._write([sku]) as tx:
            if tx.execute("SELECT id FROM images WHERE id = ? AND sku = ?", (image_id, sku)).fetchone() is None:
                raise NotFoundError(f"product {sku!r} has no image {image_id}")
            removed = self._delete_images(tx, [image_id])
            self._refresh_text(tx, sku)
        return removed

    def get_product(self, sku: str) -> Product:
        row = self._row(f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE sku = ?", (sku,))
        if row is None:
            raise NotFoundError(f"no product with SKU {sku!r}")
        return _product(row)

    def source_hash(self, sku: str) -> str | None:
        row = self._row("SELECT source_hash FROM products WHERE sku = ?", (sku,))
        return None if row is None else row[0]

    def get_products(self, skus: list[str]) -> dict[str, Product]:
        """The products of ``skus`` that exist, by SKU."""
        rows = self._chunked(f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE sku IN ({{marks}})", skus)
        return {r[0]: _product(r) for r in rows}

    def has_product(self, sku: str) -> bool:
        return self._row("SELECT 1 FROM products WHERE sku = ?", (sku,)) is not None

    def list_products(self, offset: int = 0, limit: int = 100, query: ProductQuery | None = None) -> list[Product]:
        """The products ``query`` picks, in SKU order (or newest first); ``limit`` -1 for all."""
        query = query or ProductQuery()
        where, args = self._product_filter(query)
        order = "created_at DESC, sku" if query.newest else "sku"
        rows = self._rows(f"SELECT {_PRODUCT_COLUMNS} FROM products{where} ORDER BY {order} LIMIT ? OFFSET ?",
                          (*args, limit if limit >= 0 else self.ALL_ROWS, offset))
        return [_product(r) for r in rows]

    def count_products(self, query: ProductQuery | None = None) -> int:
        where, args = self._product_filter(query or ProductQuery())
        return int(self._rows(f"SELECT COUNT(*) FROM products{where}", args)[0][0])

    def _product_filter(self, query: ProductQuery) -> tuple[str, tuple]:
        clauses, args = [], []
        if query.category:
            clauses.append("lower(category) = lower(?)")
            args.append(query.category)
        if query.brand:
            clauses.append("lower(brand) = lower(?)")
            args.append(query.brand)
        if query.tag:
            clauses.append(self._tag_clause())
            args.append(query.tag)
        if query.text and query.text.strip():
            like = "%" + query.text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(lower(sku) LIKE lower(?) ESCAPE '\\' OR lower(title) LIKE lower(?) ESCAPE '\\')")
            args += [like, like]
        if query.without_images:
            clauses.append("NOT EXISTS (SELECT 1 FROM images WHERE images.sku = products.sku)")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)

    def vector_facets(self, ids: Iterable[int]) -> dict[int, tuple[str, ProductFacets]]:
        """Vector id -> (its product's SKU, what filters look at of that product), for those stored:
        what a vector index that filters by itself (Milvus) keeps beside each vector."""
        owners = dict(self._chunked("SELECT v.id, i.sku FROM vectors v JOIN images i ON i.id = v.image_id "
                                    "WHERE v.id IN ({marks})", [int(i) for i in ids]))
        skus = sorted(set(owners.values()))
        products = self.get_products(skus)
        colours = {r[0]: (r[1] or "").split() for r in self._chunked(self.COLOURS_OF, skus)}
        made = {sku: facets(p.category, p.brand, p.tags, p.price, set(colours.get(sku, ())))
                for sku, p in products.items()}
        return {vid: (sku, made[sku]) for vid, sku in owners.items() if sku in made}

    def count(self) -> tuple[int, int, int]:
        """(products, images, vectors)."""
        return tuple(int(self._rows(f"SELECT COUNT(*) FROM {t}")[0][0])  # type: ignore[return-value]
                     for t in ("products", "images", "vectors"))

    def images(self, sku: str | None = None) -> list[StoredImage]:
        sql = "SELECT id, sku, file, sha256, width, height, palette, ocr, tags, boxes FROM images"
        rows = self._rows(sql + (" WHERE sku = ? ORDER BY id" if sku else " ORDER BY id"), (sku,) if sku else ())
        return [StoredImage(r[0], r[1], r[2], r[3], r[4], r[5], Palette.from_json(json.loads(r[6])),
                            OcrText.from_json(json.loads(r[7])), Tags.from_json(json.loads(r[8])),
                            json.loads(r[9])) for r in rows]

    def image_refs(self) -> list[ImageRef]:
        """(id, sku, file, sha256) of every image, in id order, without its analysis."""
        return [ImageRef(*r) for r in self._rows("SELECT id, sku, file, sha256 FROM images ORDER BY id")]

    def image_signals(self, image_ids: Sequence[int]) -> list[tuple[int, str, Palette, Tags]]:
        """(image id, sku, palette, tags) of those of ``image_ids`` that are stored: what the colour and
        tag signals read of a search's candidates."""
        rows = self._chunked("SELECT id, sku, palette, tags FROM images WHERE id IN ({marks})",
                             [int(i) for i in image_ids])
        return [(r[0], r[1], Palette.from_json(json.loads(r[2])), Tags.from_json(json.loads(r[3]))) for r in rows]

    def image_tags(self, image_ids: Sequence[int]) -> list[tuple[int, str, list[tuple[str, float]]]]:
        """(image id, sku, [(label, score), ...]) of those of ``image_ids`` that are stored: the visual
        tags alone, read without the rest of the analysis (placing a catalogue in word space)."""
        rows = self._chunked("SELECT id, sku, tags FROM images WHERE id IN ({marks})", [int(i) for i in image_ids])
        return [(r[0], r[1], [(d["label"], float(d["score"])) for d in json.loads(r[2])]) for r in rows]

    def file_in_use(self, file: str) -> bool:
        return self._row("SELECT 1 FROM images WHERE file = ? LIMIT 1", (file,)) is not None

def _set_meta(tx: Tx, key: str, value: str) -> None:
    tx.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
               (key, value))


def _product(row: tuple) -> Product:
    return Product(row[0], row[1], row[2], row[3], tuple(json.loads(row[4])), row[5], row[6], json.loads(row[7]))
