"""Commands for deployments past one machine: ``skulens migrate`` (docs/deployment.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from service.cli import common
from service.cli.common import out, progress_bar


def migrate(
    store_url: Annotated[Optional[str], typer.Option(
        help="the PostgreSQL database to move the catalogue into (default: SKULENS_STORE__URL); it must hold "
             "no catalogue yet")] = None,
    index_uri: Annotated[Optional[str], typer.Option(
        help="a Milvus server to move the vectors into (default: SKULENS_INDEX__URI; none: each process keeps "
             "a FAISS index built from the database)")] = None,
    collection: Annotated[Optional[str], typer.Option(help="the Milvus collection (default: SKULENS_INDEX__COLLECTION)")] = None,
    files_root: Annotated[Optional[Path], typer.Option(
        help="copy the image files into this folder, e.g. the shared mount every node sees (default: "
             "SKULENS_FILES__ROOT; none: they stay where they are)")] = None,
) -> None:
    """Move the data directory's catalogue into PostgreSQL (and Milvus), every product, image, vector,
    cached analysis and tuned weight accounted for. Serve it afterwards with the same settings
    (SKULENS_STORE__URL, SKULENS_INDEX__URI, SKULENS_FILES__ROOT)."""
    from pipeline.migrate import migrate as run_migrate
    from pipeline.store_postgres import redacted

    settings = common.settings()
    target = settings.model_copy(update={
        "store": settings.store.model_copy(update={"url": store_url or settings.store.url}),
        "index": settings.index.model_copy(update={"uri": index_uri or settings.index.uri,
                                                   "collection": collection or settings.index.collection}),
        "files": settings.files.model_copy(update={"root": files_root or settings.files.root})})
    bar, update = progress_bar()
    with bar:
        report = run_migrate(settings, target, progress=update)
    for table, (before, after) in report.counts.items():
        out.print(f"{table:10} {before:>10,} -> {after:>10,}", highlight=False)
    if report.index is not None:
        out.print(f"{'milvus':10} {report.index[0]:>10,} -> {report.index[1]:>10,} vectors "
                  f"({target.index.collection} at {target.index.uri})", highlight=False)
    if report.files is not None:
        out.print(f"{'files':10} {report.files[0]:>10,} -> {report.files[1]:>10,} ({target.files.root})", highlight=False)
    where = redacted(target.store.url or "")
    if not report.complete:
        common.err.print(f"migrate: the counts differ (above): {where} is incomplete", highlight=False)
        raise typer.Exit(1)
    out.print(f"moved {settings.data} into {where}: every row accounted for", highlight=False)


def worker(
    name: Annotated[Optional[str], typer.Option(help="how this worker is named in jobs and logs (default host:pid)")] = None,
) -> None:
    """Run the imports queued on a PostgreSQL catalogue (SKULENS_STORE__URL), part by part, until
    stopped (Ctrl-C or SIGTERM: the part in hand finishes). Run one per core pair, on any machine that
    reaches the database, the vector index and the shared image folder (SKULENS_FILES__ROOT)."""
    import logging

    from pipeline.build import build_stages
    from pipeline.worker import run_worker

    settings = common.settings()
    logging.getLogger("pipeline").setLevel(min(logging.getLogger().getEffectiveLevel(), logging.INFO))
    run_worker(settings, build_stages(settings), name)


def bench_deploy(
    postgres: Annotated[str, typer.Option(help="a PostgreSQL server URL whose user may create databases, e.g. "
                                               "postgresql://skulens@127.0.0.1:5432/postgres")],
    milvus: Annotated[str, typer.Option(help="a Milvus server, e.g. http://127.0.0.1:19530")],
    photos: Annotated[Path, typer.Option(help="a folder of real photos (searched recursively): the replicas' writes "
                                              "and the workers' import")],
    writes: Annotated[int, typer.Option(min=0, help="products written through replica A (0: skip the replicas)")] = 50,
    images: Annotated[int, typer.Option(min=0, help="photos the workers import (0: skip the workers)")] = 60,
    workers: Annotated[str, typer.Option(help="worker counts to run, comma-separated")] = "1,2",
    threads: Annotated[str, typer.Option(help="threads per worker to run, comma-separated (0: as configured)")] = "0,1",
    part_rows: Annotated[int, typer.Option(min=1, help="manifest rows per queued part")] = 5,
    pin: Annotated[str, typer.Option(help="run the workers sharing the cores (no), each on a core of its own "
                                          "(yes), or both, comma-separated")] = "no",
    migrate_data: Annotated[Optional[list[Path]], typer.Option("--migrate", help="a data directory to migrate "
                                                                "(repeatable)")] = None,
    parity: Annotated[Optional[list[str]], typer.Option(help="two `skulens eval --json` reports of one protocol, "
                                                          "embedded then PostgreSQL + Milvus, as EMBEDDED.json,"
                                                          "OTHER.json: compared query by query (repeatable)")] = None,
    workdir: Annotated[Optional[Path], typer.Option(help="where the processes' data go (default: a temporary folder)")] = None,
    benchmarks: Annotated[Optional[Path], typer.Option(help="the BENCHMARKS.md to update")] = None,
) -> None:
    """Replicas, workers and migrate against real PostgreSQL and Milvus servers (evaluation/bench_deploy.py)."""
    import tempfile

    from core.errors import SkulensError
    from evaluation import bench_deploy as bd
    from evaluation.benchmarks_md import update_section
    from pipeline.catalog_source import IMAGE_SUFFIXES

    pairs = [tuple(x.split(",")) for x in parity or []]
    if any(len(p) != 2 for p in pairs):
        raise SkulensError("--parity takes two reports, EMBEDDED.json,OTHER.json")
    quality = [bd.parity(Path(a), Path(b)) for a, b in pairs]
    pool = sorted(p for p in Path(photos).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not pool:
        raise SkulensError(f"no photos in {photos}")
    picked = [pool[i] for i in np.linspace(0, len(pool) - 1, min(images, len(pool))).astype(int)] if images else []
    servers = bd.Servers(postgres, milvus, Path(workdir or tempfile.mkdtemp(prefix="skulens-bench-deploy-")))
    vis = bd.replicas(servers, pool, writes) if writes else None
    if vis is not None:
        out.print(f"replicas: seen through B in p50 {np.percentile(vis.visible_ms, 50):.0f} ms, "
                  f"p95 {np.percentile(vis.visible_ms, 95):.0f} ms", highlight=False)
    runs = []
    for pinned in (p.strip() == "yes" for p in pin.split(",")) if images else ():
        for t in (int(x) for x in threads.split(",")):
            for n in (int(x) for x in workers.split(",")):
                run = bd.workers(servers, picked, n, t or None, part_rows, pinned)
                out.print(f"workers {n}, threads {t or 'default'}, {'one core each' if pinned else 'shared cores'}: "
                          f"{run.rate:.2f} images/s ({run.state})", highlight=False)
                runs.append(run)
    moved = bd.migrations(servers, list(migrate_data or []))
    for m in moved:
        out.print(f"migrate {m.data}: {m.seconds:.1f} s, complete: {m.complete}", highlight=False)
    sections = []
    if vis is not None or runs or moved:
        sections.append(("deploy", "Past one machine: PostgreSQL + Milvus, replicas, workers, migrate",
                         bd.markdown(vis, runs, moved)))
    if quality:
        sections.append(("deploy-quality", "Past one machine: quality on PostgreSQL + Milvus",
                         bd.parity_markdown(quality)))
    for key, title, body in sections:
        if benchmarks is not None:
            update_section(benchmarks, key, title, body)
        else:
            out.print(body)
