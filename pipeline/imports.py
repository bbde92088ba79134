"""Bulk import as a job: a CSV manifest and the images it names, written to the job's folder when
submitted and indexed by the job runner (:mod:`pipeline.jobs`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePath

from core.errors import InvalidInputError
from pipeline.catalog_source import CatalogEntry, CatalogSource, Skipped, read_catalog
from pipeline.engine import Engine
from pipeline.indexing import IndexReport, index_catalog
from pipeline.jobs import Progress, RowError

KIND = "import"
MANIFEST = ".manifest.csv"  # a leading dot: no uploaded image can be called this


def prepare_import(folder: Path, manifest: bytes, uploads: dict[str, bytes]) -> int:
    """Write the manifest and the images into ``folder`` (synced to disk) and check the manifest
    reads; returns its row count.  Bad CSV or an empty manifest raises :class:`InvalidInputError`."""
    if not manifest.strip():
        raise InvalidInputError("the manifest is empty (expected a header with 'sku' and 'image')")
    for name, data in uploads.items():
        if PurePath(name).name != name or name.startswith("."):
            raise InvalidInputError(f"an uploaded image needs a plain file name, got {name!r}")
        _write_synced(folder / name, data)
    _write_synced(folder / MANIFEST, manifest)
    source = read_catalog(folder / MANIFEST)
    return len(source.entries) + len(source.skipped)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def uploaded_only(folder: Path) -> CatalogSource:
    """The manifest's entries whose images were all uploaded with it; the others are skipped rows."""
    source = read_catalog(folder / MANIFEST)
    uploads = {p.name for p in folder.iterdir() if p.name != MANIFEST}
    kept = CatalogSource(skipped=list(source.skipped))
    for entry in source.entries:
        outside = [p for p in entry.images if p.parent != folder or p.name not in uploads]
        if outside:
            kept.skipped.append(Skipped(entry.product.sku, "image not uploaded with the manifest: "
                                        + ", ".join(sorted({p.name for p in outside}))))
        else:
            kept.entries.append(CatalogEntry(entry.product, entry.images))
    return kept


def import_handler(engine: Engine) -> Callable[[Path, Callable[[Progress], None]], Progress]:
    """The job handler that indexes an import folder into ``engine``."""

    def run(folder: Path, report: Callable[[Progress], None]) -> Progress:
        return run_part(engine, folder, 0, None, report)

    return run


def part_bounds(folder: Path, rows: int) -> list[tuple[int, int]]:
    """The parts of an import folder's entries, ``rows`` each: (start, stop) pairs, at least one."""
    n = len(uploaded_only(folder).entries)
    return [(start, min(start + rows, n)) for start in range(0, n, rows)] or [(0, 0)]


def run_part(engine: Engine, folder: Path, start: int, stop: int | None,
             report: Callable[[Progress], None]) -> Progress:
    """Index the entries ``start:stop`` of an import folder (``stop`` None: to the end); the part at 0
    also reports the rows skipped before indexing (they count as done)."""
    source = uploaded_only(folder)
    done = IndexReport(skipped=list(source.skipped) if start == 0 else [])
    progress = Progress(done=len(done.skipped))

    def step(_sku: str) -> None:
        progress.done += 1
        _fill(progress, done)
        report(progress)

    index_catalog(engine, CatalogSource(source.entries[start:stop]), step, report=done)
    _fill(progress, done)
    return progress


def _fill(progress: Progress, report: IndexReport) -> None:
    progress.counts = {"indexed": len(report.indexed), "unchanged": len(report.unchanged),
                       "skipped": len(report.skipped)}
    # the report's skipped rows only grow: add the new ones rather than copying all of them per row
    progress.errors.extend(RowError(s.item, s.reason) for s in report.skipped[len(progress.errors):])
