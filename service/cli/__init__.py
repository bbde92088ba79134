"""The ``skulens`` command line: mirrors the library one to one.

Errors are one line on stderr and exit code 1, never a traceback (``-v`` logs it).  Each command
group lives in its own module; this one holds the root app and registers every command on it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from core.errors import SkulensError
from core.settings import Settings
from service.cli import catalogue, dedup, deploy, detector, embedder, measure, models, scale, search, words
from service.cli.common import err, state

log = logging.getLogger(__name__)
app = typer.Typer(help="skulens: visual product search for shops (photo in, ranked SKUs out).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _main(
    data: Annotated[Optional[Path], typer.Option("--data", help="data directory (env SKULENS_DATA; default ./skulens-data)")] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="more logging (-vv for debug)")] = 0,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    # every module logs under its own name (``pipeline.engine``, ``features.ocr_tesseract``...): the root
    # logger's level reaches them all
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if data is not None:
        settings = settings.model_copy(update={"data": data})
    state.settings = settings


# The order here is the order of `skulens --help`.
app.command("index")(catalogue.index)
app.command("search")(search.search)
app.command("eval")(measure.evaluate)
app.command("gallery-csv")(measure.gallery_csv)
app.command("demo-csv")(measure.demo_csv)
app.command("tune")(measure.tune)
app.command("bench")(measure.bench)
app.command("bench-service")(measure.bench_service)
app.command("bench-scale")(scale.bench_scale)
app.command("serve")(search.serve)
app.command("dedup")(dedup.dedup)
app.command("dedup-eval")(dedup.dedup_eval)
app.command("bench-dedup")(dedup.bench_dedup)
app.command("reindex")(embedder.reindex)
app.command("migrate")(deploy.migrate)
app.command("worker")(deploy.worker)
app.command("bench-deploy")(deploy.bench_deploy)
app.command("bench-words")(words.bench_words)
app.add_typer(models.app, name="models")
app.add_typer(words.app, name="words")
app.add_typer(catalogue.products_app, name="products")
app.add_typer(detector.app, name="detector")
app.add_typer(embedder.app, name="embedder")


def main() -> None:
    """Console-script entry point: SkulensError -> one line on stderr, exit 1."""
    try:
        app()
    except SkulensError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        log.debug("details", exc_info=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug, not a user error: still one line, the traceback with -v
        err.print(f"internal error: {type(exc).__name__}: {exc} (run with -v to log the traceback)",
                  markup=False, highlight=False)
        log.info("traceback", exc_info=True)
        sys.exit(1)
