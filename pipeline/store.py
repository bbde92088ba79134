"""The embedded catalogue store: one SQLite database (WAL) in the data directory, the default.

What it holds and every statement it shares with the PostgreSQL backend are in
:mod:`pipeline.store_base`; here are SQLite's connections (one writer under a lock, a reader per
thread), its FTS5 full-text index (``products_fts``) and its schema upgrades.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import InvalidInputError, StorageError
from core.settings import Settings
from fusion.text import fts_match_expression
from pipeline.database import FeatureTable, read_meta
from pipeline.store_base import (  # noqa: F401 - re-exported: the names callers know the store by
    EMBEDDER_KEY,
    EMBEDDER_WEIGHTS_KEY,
    INDEX_REGIONS_KEY,
    CatalogStoreBase,
    OwnerColumns,
    ProductText,
    Tx,
    decode_vectors,
    encode_vector,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: products_fts gained a colours column
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
CREATE TABLE IF NOT EXISTS changes (generation INTEGER NOT NULL, sku TEXT NOT NULL, PRIMARY KEY (generation, sku));
CREATE TABLE IF NOT EXISTS keypoints (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, data BLOB NOT NULL);
"""
_FTS = """CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5(
    title, brand, category, tags, description, ocr, colours, tokenize = 'unicode61 remove_diacritics 2')"""


class CatalogStore(FeatureTable, CatalogStoreBase):
    """The catalogue in one SQLite file (see :mod:`pipeline.store_base` for what it holds)."""

    OWNER_SCAN = "vectors INDEXED BY vectors_owner"
    COLOURS_OF = "SELECT p.sku, f.colours FROM products_fts f JOIN products p ON p.rowid = f.rowid WHERE p.sku IN ({marks})"
    ALL_ROWS = -1

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
                    self._refresh_text(conn, sku)
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- connections ------------------------------------------------------------------------
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        return self._read().execute(sql, tuple(args)).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[Tx]:
        """One IMMEDIATE transaction on the writer connection."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _snapshot(self) -> Iterator["_Snapshot"]:
        conn = self._read()
        conn.execute("BEGIN")
        try:
            yield _Snapshot(conn)
        finally:
            conn.execute("COMMIT")

    # -- full-text index ---------------------------------------------------------------------
    def _put_text(self, tx: Tx, sku: str, text: ProductText) -> None:
        rowid = tx.execute("SELECT rowid FROM products WHERE sku = ?", (sku,)).fetchone()[0]
        tx.execute("DELETE FROM products_fts WHERE rowid = ?", (rowid,))
        tx.execute("INSERT INTO products_fts(rowid, title, brand, category, tags, description, ocr, colours)"
                   " VALUES (?,?,?,?,?,?,?,?)", (rowid, text.title, text.brand, text.category, text.tags,
                                                  text.description, text.ocr, text.colours))

    def _drop_text(self, tx: Tx, sku: str) -> None:
        tx.execute("DELETE FROM products_fts WHERE rowid = (SELECT rowid FROM products WHERE sku = ?)", (sku,))

    def _tag_clause(self) -> str:
        return "EXISTS (SELECT 1 FROM json_each(products.tags) WHERE lower(value) = lower(?))"

    def texts_and_colours(self, sku: str | None = None) -> dict[str, tuple[str, list[str]]]:
        rows = self._rows(
            "SELECT p.sku, f.title, f.brand, f.category, f.tags, f.description, f.ocr, f.colours FROM products_fts f"
            " JOIN products p ON p.rowid = f.rowid" + (" WHERE p.sku = ?" if sku else ""), (sku,) if sku else ())
        return {r[0]: (" ".join(x for x in r[1:] if x), (r[7] or "").split()) for r in rows}

    def fts_search(self, tokens: Sequence[str], limit: int) -> list[tuple[str, float]]:
        match = fts_match_expression(tokens)
        return [] if match is None else self.fts_match(match, limit)

    def fts_match(self, match: str, limit: int) -> list[tuple[str, float]]:
        """SKUs matching an FTS5 expression, best first, with their (positive) BM25 scores."""
        try:
            rows = self._rows(
                "SELECT p.sku, -bm25(products_fts, 3.0, 3.0, 1.0, 1.0, 0.5, 2.0, 1.0) AS s FROM products_fts f"
                " JOIN products p ON p.rowid = f.rowid WHERE products_fts MATCH ? ORDER BY s DESC LIMIT ?",
                (match, limit))
        except sqlite3.OperationalError as exc:
            raise InvalidInputError(f"bad full-text query {match!r}: {exc}") from exc
        return [(r[0], float(r[1])) for r in rows]


class _Snapshot:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def stream(self, sql: str, chunk: int) -> Iterator[list[tuple]]:
        cursor = self.conn.execute(sql)
        while rows := cursor.fetchmany(chunk):
            yield rows


def open_store(settings: Settings) -> CatalogStoreBase:
    """The catalogue store ``settings`` name: PostgreSQL at ``store.url``, else the data directory's SQLite file."""
    if settings.store.url:
        from pipeline.store_postgres import PostgresStore

        return PostgresStore(settings.store.url, settings.store)
    return CatalogStore(sqlite_path(settings))


def sqlite_path(settings: Settings) -> Path:
    return Path(settings.data) / "catalog.sqlite3"


def catalogue_name(settings: Settings) -> str:
    """How messages name the catalogue: its PostgreSQL URL (without a password) or its SQLite file."""
    if settings.store.url:
        from pipeline.store_postgres import redacted

        return redacted(settings.store.url)
    return str(sqlite_path(settings))


def has_catalogue(settings: Settings) -> bool:
    """Whether there is a catalogue to open (a PostgreSQL one always is: it is made on first open)."""
    return bool(settings.store.url) or sqlite_path(settings).is_file()


def catalogue_meta(settings: Settings, key: str) -> str | None:
    """One ``meta`` value of the catalogue, read without opening it for writing (None when absent)."""
    if not settings.store.url:
        return read_meta(sqlite_path(settings), key)
    store = open_store(settings)
    try:
        return store.get_meta(key)
    finally:
        store.close()
