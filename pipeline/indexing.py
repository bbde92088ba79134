"""Batch indexing of a catalogue source into an engine: changed SKUs only, bad items skipped."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from core.errors import SkulensError
from pipeline.catalog_source import CatalogEntry, CatalogSource, Skipped
from pipeline.engine import Engine
from pipeline.images import read_image_bytes, sha256_hex

log = logging.getLogger(__name__)


@dataclass
class IndexReport:
    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0


def index_catalog(engine: Engine, source: CatalogSource,
                  progress: Callable[[str], None] | None = None, report: IndexReport | None = None) -> IndexReport:
    """Index every entry; an entry whose metadata and image bytes are unchanged is skipped.

    ``progress(sku)`` is called after each entry (an exception there stops between entries, with
    everything indexed so far kept); ``report``: fill this one (so a caller can read it as it grows)."""
    if report is None:
        report = IndexReport(skipped=list(source.skipped))
    start = time.monotonic()
    try:
        for entry in source.entries:
            _index_one(engine, entry, report)
            if progress:
                progress(entry.product.sku)
    finally:
        engine.save()  # the index file is written in the background meanwhile
    report.seconds = time.monotonic() - start
    return report


def _index_one(engine: Engine, entry: CatalogEntry, report: IndexReport) -> None:
    sku = entry.product.sku
    images: list[tuple[str, bytes]] = []
    for path in entry.images:
        try:
            images.append((path.name, read_image_bytes(path, engine.settings.images)))
        except SkulensError as exc:
            report.skipped.append(Skipped(f"{sku}: {path.name}", str(exc)))
    if not images:
        report.skipped.append(Skipped(sku, "no readable image"))
        return
    source_hash = entry.source_hash([sha256_hex(data) for _, data in images])
    if engine.store.source_hash(sku) == source_hash:
        report.unchanged.append(sku)
        return
    good = []
    for name, data in images:  # analyse one by one so a bad image is skipped, not the product
        try:
            engine.analyse(data, name, engine.settings.fusion.index_regions, use_cache=True, for_index=True)
            good.append((name, data))
        except SkulensError as exc:
            report.skipped.append(Skipped(f"{sku}: {name}", str(exc)))
    if not good:
        report.skipped.append(Skipped(sku, "no usable image"))
        return
    engine.add_product(entry.product, good, replace_images=True, source_hash=source_hash)
    report.indexed.append(sku)
