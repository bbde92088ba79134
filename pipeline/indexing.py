"""Batch indexing of a catalogue source into an engine: changed SKUs only, bad items skipped; the
next products are analysed in worker threads while the current one is written."""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from core.catalog import NewImage
from core.errors import SkulensError
from pipeline.catalog_source import CatalogEntry, CatalogSource, Skipped
from pipeline.engine import Engine
from pipeline.images import read_image_bytes, sha256_hex

log = logging.getLogger(__name__)

WRITE_BATCH = 64
"""Entries analysed and waiting are written together, up to this many a transaction."""


@dataclass
class IndexReport:
    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0


def index_catalog(engine: Engine, source: CatalogSource,
                  progress: Callable[[str], None] | None = None, report: IndexReport | None = None) -> IndexReport:
    """Index every entry; an entry whose metadata and image bytes are unchanged is skipped.

    Entries are analysed ahead by ``ingest.workers`` threads (at most ``ingest.ahead`` of them
    waiting) while this thread writes them in the source's order, those already analysed together
    in one transaction.  ``progress(sku)``
    is called after each entry is written (an exception there stops between entries, with
    everything written so far kept); ``report``: fill this one (so a caller can read it as it grows)."""
    if report is None:
        report = IndexReport(skipped=list(source.skipped))
    start = time.monotonic()
    ingest = engine.settings.ingest
    entries = iter(source.entries)
    pool = ThreadPoolExecutor(ingest.workers, thread_name_prefix="skulens-ingest")
    waiting: deque[Future[_Prepared]] = deque()

    def submit() -> None:
        entry = next(entries, None)
        if entry is not None:
            waiting.append(pool.submit(_prepare, engine, entry))

    try:
        for _ in range(ingest.workers + ingest.ahead):
            submit()
        while waiting:
            # the next entry, and those after it already analysed, go to the database in one transaction
            batch = [waiting.popleft().result()]
            while waiting and waiting[0].done() and len(batch) < WRITE_BATCH:
                batch.append(waiting.popleft().result())
            for _ in batch:
                submit()
            _write(engine, batch, report)
            if progress:
                for prepared in batch:
                    progress(prepared.entry.product.sku)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        engine.save()  # the index file is written in the background meanwhile
    report.seconds = time.monotonic() - start
    return report


@dataclass
class _Prepared:
    entry: CatalogEntry
    images: list[NewImage] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    source_hash: str | None = None
    unchanged: bool = False


def _prepare(engine: Engine, entry: CatalogEntry) -> _Prepared:
    """Read and analyse one entry's images (in a worker thread: nothing is written to the catalogue)."""
    sku = entry.product.sku
    out = _Prepared(entry)
    images: list[tuple[str, bytes]] = []
    for path in entry.images:
        try:
            images.append((path.name, read_image_bytes(path, engine.settings.images)))
        except SkulensError as exc:
            out.skipped.append(Skipped(f"{sku}: {path.name}", _reason(exc, path.name)))
    if not images:
        out.skipped.append(Skipped(sku, "no readable image"))
        return out
    out.source_hash = entry.source_hash([sha256_hex(data) for _, data in images])
    if engine.store.source_hash(sku) == out.source_hash:
        out.unchanged = True
        return out
    for name, data in images:  # one by one so a bad image is skipped, not the product
        try:
            with engine.search_first.turn(engine.settings.ingest.search_first_s):
                out.images.append(engine.prepare_image(name, data))
        except SkulensError as exc:
            out.skipped.append(Skipped(f"{sku}: {name}", _reason(exc, name)))
    if not out.images:
        out.skipped.append(Skipped(sku, "no usable image"))
    return out


def _reason(exc: Exception, name: str) -> str:
    """An error's text without the file name it starts with (the skipped item names the file)."""
    text = str(exc)
    return text[len(name) + 2:] if text.startswith(f"{name}: ") else text


def _write(engine: Engine, batch: list[_Prepared], report: IndexReport) -> None:
    writes = [p for p in batch if p.images and not p.unchanged]
    if writes:
        engine.write_prepared_many([(p.entry.product, p.images, True, p.source_hash) for p in writes])
    for prepared in batch:
        report.skipped.extend(prepared.skipped)
        sku = prepared.entry.product.sku
        if prepared.unchanged:
            report.unchanged.append(sku)
        elif prepared.images:
            report.indexed.append(sku)
