"""``skulens migrate``: a data directory's embedded catalogue (SQLite + FAISS) moved into PostgreSQL
(and its vectors into Milvus), with every product, image, vector, cached analysis and meta value
(tuned weights, embedder, regions, generation) accounted for.

Rows keep their ids, so vector ids stay those the index knows; the target's id sequences continue
after them.  The target database must hold no catalogue yet (nothing is overwritten), and the data
directory is held with its writer lock meanwhile, so nothing changes under the copy.  The copy is
one PostgreSQL transaction: a failure leaves the target as empty as it was.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from core.errors import ConflictError, NotFoundError, StorageError
from core.settings import Settings
from pipeline import writer_lock
from pipeline.files import FileStore
from pipeline.index_file import build_index
from pipeline.store import CatalogStore, sqlite_path
from pipeline.store_base import ProductText
from pipeline.store_postgres import PostgresStore, redacted

log = logging.getLogger(__name__)

Progress = Callable[..., None]
"""``(what, done, total)``, reported as the copy goes."""
# (table, its columns in both stores); products_text is rebuilt from SQLite's FTS rows
_TABLES = (("products", "sku, title, brand, category, tags, price, description, extra, source_hash, created_at, "
                        "updated_at"),
           ("images", "id, sku, file, sha256, width, height, palette, ocr, tags, boxes, created_at"),
           ("vectors", "id, image_id, region, vector"),
           ("keypoints", "image_id, data"),
           ("features", "key, value, created_at"),
           ("meta", "key, value"))
_CHUNK = 5_000


@dataclass
class MigrationReport:
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Rows per table: (in the data directory, in PostgreSQL)."""
    index: tuple[int, int] | None = None
    """Vectors: (in the database, in Milvus), when Milvus was filled."""
    files: tuple[int, int] | None = None
    """Image files: (named by the catalogue, copied), when they were copied."""

    @property
    def complete(self) -> bool:
        pairs = list(self.counts.values()) + [p for p in (self.index, self.files) if p is not None]
        return all(a == b for a, b in pairs)


def migrate(settings: Settings, target: Settings, progress: Progress | None = None) -> MigrationReport:
    """Copy the catalogue ``settings`` name (its data directory's SQLite file) into the PostgreSQL
    database (and Milvus collection, and file root) ``target`` names."""
    if not target.store.url:
        raise ConflictError("migrate needs a PostgreSQL catalogue to move into (--store-url / SKULENS_STORE__URL)")
    source_path = sqlite_path(settings)
    if not source_path.is_file():
        raise NotFoundError(f"no catalogue in {settings.data} to migrate")
    report = progress or (lambda what, done, total: None)
    lock = writer_lock.acquire(Path(settings.data))
    try:
        source = CatalogStore(source_path)
        dest = PostgresStore(target.store.url, target.store)
        try:
            out = MigrationReport()
            _copy_rows(source, dest, out, report)
            if target.index.uri:
                shared = build_index(dest, target.index, _dim(source))
                out.index = (dest.count()[2], len(shared))
                report("milvus", out.index[1], out.index[0])
            out.files = _copy_files(source, FileStore.of(settings), FileStore.of(target), report)
        finally:
            source.close()
            dest.close()
    finally:
        writer_lock.release(lock)
    return out


def _dim(store: CatalogStore) -> int:
    recorded = store.get_meta("embedder") or ""
    if ":" not in recorded:
        raise StorageError("the catalogue records no embedder (no vectors were ever written): nothing to migrate")
    return int(recorded.rsplit(":", 1)[1])


def _copy_rows(source: CatalogStore, dest: PostgresStore, out: MigrationReport, report: Progress) -> None:
    if dest.count()[0] or dest.generation():
        raise ConflictError(f"{redacted(dest.url)} already holds a catalogue: migrate into an empty database")
    with dest._transaction() as tx:
        tx.execute("DELETE FROM meta WHERE key <> 'schema_version'")
        for table, columns in _TABLES:
            where = " WHERE key <> 'schema_version'" if table == "meta" else ""
            total = int(source._rows(f"SELECT COUNT(*) FROM {table}{where}")[0][0])
            with source._snapshot() as snap:
                chunks = snap.stream(f"SELECT {columns} FROM {table}{where}", _CHUNK)
                dest.copy_in(tx, table, columns, chunks, partial(report, table, total=total))
            out.counts[table] = (total, -1)
        for sku, *text in source._rows("SELECT p.sku, f.title, f.brand, f.category, f.tags, f.description, f.ocr, "
                                       "f.colours FROM products_fts f JOIN products p ON p.rowid = f.rowid"):
            dest._put_text(tx, sku, ProductText(*(t or "" for t in text)))
        for table in ("images", "vectors"):  # new rows continue after the copied ids
            tx.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                       f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)")
        changes = int(source.generation())
        if changes:  # the generation goes on from the source's; one log row marks it as a whole change
            tx.execute("INSERT INTO changes(generation, sku) VALUES (?, '*')", (changes,))
    for table, _ in _TABLES:
        where = " WHERE key <> 'schema_version'" if table == "meta" else ""
        out.counts[table] = (out.counts[table][0], int(dest._rows(f"SELECT COUNT(*) FROM {table}{where}")[0][0]))
    out.counts["text"] = (len(source.texts_and_colours()), len(dest.texts_and_colours()))


def _copy_files(source: CatalogStore, old: FileStore, new: FileStore, report: Progress) -> tuple[int, int] | None:
    """The catalogue's image files into the target's file root, when that is another folder."""
    if Path(old.root).resolve() == Path(new.root).resolve():
        return None
    files = sorted({ref.file for ref in source.image_refs()})
    copied = 0
    for n, rel in enumerate(files, 1):
        if old.exists(rel):
            dest = new.path(rel)
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(old.path(rel), dest)
            copied += 1
        else:
            log.warning("image file %s is missing from %s; not copied", rel, old.root)
        if n % 1000 == 0 or n == len(files):
            report("files", n, len(files))
    return len(files), copied
