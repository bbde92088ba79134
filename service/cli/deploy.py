"""Commands for deployments past one machine: ``skulens migrate`` (docs/deployment.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

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
