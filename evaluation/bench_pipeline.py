"""Speed benchmarks (``skulens bench``): per-stage query latency cold and warm, end-to-end
latency, and indexing throughput.  Figures go to BENCHMARKS.md, never into test assertions."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from core.settings import Settings
from pipeline.build import build_stages
from pipeline.catalog_source import CatalogSource, read_catalog
from pipeline.engine import Engine
from pipeline.images import read_image_bytes
from pipeline.indexing import index_catalog

STAGES = ("decode", "detect", "background", "colour", "ocr", "embed", "keypoints", "rank")


def _pct(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "n": int(len(v))}


def bench_queries(settings: Settings, photos: list[Path], n: int,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Cold first query (fresh stages: includes model loading) and ``n`` warm queries over ``photos``."""
    if not photos:
        raise ValueError("no query photos to benchmark")
    blobs = [read_image_bytes(p, settings.images) for p in photos]
    engine = Engine(settings, build_stages(settings))
    try:
        t0 = time.perf_counter()
        cold = engine.search(blobs[0], k=10)
        cold_total = (time.perf_counter() - t0) * 1000
        per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
        totals = []
        for i in range(n):
            t0 = time.perf_counter()
            result = engine.search(blobs[(i + 1) % len(blobs)], k=10)
            totals.append((time.perf_counter() - t0) * 1000)
            for stage, ms in result.timings.items():
                per_stage.setdefault(stage, []).append(ms)
            if progress:
                progress(i + 1, n)
    finally:
        engine.close()
    return {"cold": {**cold.timings, "total": cold_total}, "warm": {s: _pct(v) for s, v in per_stage.items() if v},
            "end_to_end": _pct(totals), "queries": n, "photos": len(photos),
            "parallel_ocr": settings.ocr.enabled and settings.ocr.parallel}


def bench_indexing(settings: Settings, catalog: Path, limit: int | None = None,
                   progress: Callable[[int, int], None] | None = None, workers: tuple[int, ...] = ()) -> dict:
    """Index (a part of) a catalogue through ``index_catalog`` (what ``skulens index`` and imports run)
    into a throw-away data directory (empty feature cache), once per worker count in ``workers``
    (default: the settings' ``ingest.workers``), back to back."""
    entries = read_catalog(catalog).entries
    entries = entries[:limit] if limit else entries
    counts = workers or (settings.ingest.workers,)
    stages = build_stages(settings)
    stages.warmup()
    runs = []
    for n in counts:
        run_settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"workers": n})})
        runs.append(_index_run(run_settings, stages, entries, progress))
    # the headline: the first run with the settings' worker count (the default), else the first
    head = next((r for r in runs if r["workers"] == settings.ingest.workers), runs[0])
    return {**head, "runs": runs}


def _index_run(settings: Settings, stages, entries: list, progress: Callable[[int, int], None] | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="skulens-bench-"))
    engine = Engine(settings.model_copy(update={"data": tmp}), stages)
    per_stage: dict[str, list[float]] = {}
    analyse = engine.analyse

    def timed(*args, **kwargs):  # each analysis's stage timings (the cache is empty: every image is analysed)
        image, analysis, sha = analyse(*args, **kwargs)
        for stage, ms in analysis.timings.items():
            per_stage.setdefault(stage, []).append(ms)
        return image, analysis, sha

    engine.analyse = timed  # type: ignore[method-assign]
    done = 0

    def step(_sku: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, len(entries))

    try:
        t0 = time.perf_counter()
        report = index_catalog(engine, CatalogSource(entries), step)
        elapsed = time.perf_counter() - t0
        images = engine.store.count()[1]
    finally:
        engine.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"images": images, "seconds": elapsed, "images_per_s": images / elapsed if elapsed else 0.0,
            "workers": settings.ingest.workers, "skipped": len(report.skipped),
            "per_stage_ms": {s: float(np.mean(v)) for s, v in per_stage.items()}}


def bench_markdown(query: dict | None, index: dict | None) -> tuple[str, str]:
    """Markdown bodies for the query-speed and indexing-speed sections."""
    q = ""
    if query:
        q = (f"{query['queries']} warm queries over {query['photos']} photos (catalogue in the data directory), "
             "plus one cold query on fresh stages (model loading included). "
             f"{'OCR runs in a thread beside background, colour, embedding and keypoints, so the stages add up to more than the end-to-end time; ' if query.get('parallel_ocr') else ''}"
             "`rank` includes the geometric verification of the best candidates.\n\n"
             "| stage | cold first call ms | warm p50 ms | warm p95 ms |\n|---|---|---|---|\n")
        for stage in [*STAGES, *(s for s in query["warm"] if s not in STAGES)]:
            if stage in query["warm"]:
                w = query["warm"][stage]
                cold = query["cold"].get(stage)
                cold_cell = "–" if cold is None else f"{cold:.0f}"  # e.g. background: the box carried a mask
                q += f"| {stage} | {cold_cell} | {w['p50']:.1f} | {w['p95']:.1f} |\n"
        e = query["end_to_end"]
        q += f"| **end to end** | {query['cold']['total']:.0f} | {e['p50']:.0f} | {e['p95']:.0f} |\n"
    i = ""
    if index:
        i = (f"{index['images']} catalogue images indexed in {index['seconds']:.1f} s: "
             f"**{index['images_per_s']:.2f} images/s** (decode, analysis, database and index writes, "
             f"starting from an empty feature cache, models warm; {index.get('workers', 1)} ingest workers).\n\n")
        runs = index.get("runs", [])
        if len(runs) > 1:
            i += ("The same images indexed again with other worker counts, back to back (each into an empty data "
                  "directory and cache):\n\n| ingest workers | images | seconds | images/s |\n|---|---|---|---|\n")
            i += "".join(f"| {r['workers']} | {r['images']} | {r['seconds']:.1f} | {r['images_per_s']:.2f} |\n"
                         for r in runs)
            i += f"\nStage times of the headline run ({index['workers']} workers; with more than one they overlap):\n\n"
        i += "| stage | mean ms per image |\n|---|---|\n"
        i += "".join(f"| {s} | {ms:.1f} |\n" for s, ms in index["per_stage_ms"].items())
    return q, i
