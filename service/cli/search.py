"""``skulens search`` and ``skulens serve``: searching the catalogue, from the shell or over HTTP."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from core.types import SIGNALS
from service.cli import common
from service.cli.common import err, out

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def search(
    image: Annotated[Optional[Path], typer.Argument(help="query photo (optional with --text)")] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="typed words to match too")] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="number of SKUs")] = 10,
    all_objects: Annotated[bool, typer.Option("--all-objects", help="one result group per detected object")] = False,
    weights: Annotated[Optional[str], typer.Option(help="e.g. embedding=0.6,text=0.2,verify=0.2 (signals left out keep their defaults)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object (a list with --all-objects)")] = False,
) -> None:
    """Search the catalogue by photo and/or text."""
    from pipeline.images import read_image_bytes
    from service.render import result_json

    settings = common.settings()
    data = read_image_bytes(image, settings.images) if image is not None else None
    engine = common.engine(read_only=True)  # beside `skulens serve` on the same data directory too
    try:
        result = engine.search(data, text, k, weights, all_objects, name=image.name if image else "query")
        doc = result_json(result, engine, all_objects)
    finally:
        engine.close()
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    groups = doc if isinstance(doc, list) else [doc]
    for i, group in enumerate(groups):
        _print_group(group, i if all_objects else None)


def _print_group(group: dict, index: int | None) -> None:
    q = group["query"]
    head = f"object {index}: box {q.get('box')}" if index is not None else "query"
    words = ", ".join(w["word"] for w in q.get("ocr", [])) or "-"
    tags = ", ".join(t["label"] for t in q.get("tags", [])[:3]) or "-"
    out.print(f"[bold]{head}[/bold]  words: {words}  tags: {tags}  colours: {' '.join(q.get('palette', {}).get('hex', []))}",
              highlight=False)
    table = Table("#", "sku", "score", *SIGNALS, "title")
    for rank, r in enumerate(group["results"], 1):
        s = r["signals"]
        table.add_row(str(rank), r["sku"], f"{r['score']:.3f}", *(f"{s.get(n, 0.0):.3f}" for n in SIGNALS),
                      r["title"][:40])
    out.print(table)
    for note in group.get("notes", []):
        out.print(f"note: {note}", highlight=False)
    if group.get("close") is False:
        out.print("no close match: the best score is under fusion.close_match", highlight=False)
    t = q.get("timings_ms", {})
    out.print("timings (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()), highlight=False)


def serve(
    host: Annotated[Optional[str], typer.Option(help="bind address (default 127.0.0.1; 0.0.0.0 when API keys are set)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default 8000, env SKULENS_SERVICE__PORT)")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="data directory (same as the global --data)")] = None,
) -> None:
    """Start the HTTP service: the API under /v1, the shopper page at /, the merchant page at /merchant."""
    import uvicorn

    from core.errors import InvalidInputError
    from service.app import create_app

    settings = common.settings()
    if data is not None:
        settings = settings.model_copy(update={"data": data})
    keys = bool(settings.api_read_keys or settings.api_write_keys)
    host = host or settings.service.host or ("0.0.0.0" if keys else "127.0.0.1")
    port = port or settings.service.port
    if not keys and host not in _LOOPBACK:
        raise InvalidInputError(f"refusing to listen on {host} without API keys: set SKULENS_API_READ_KEYS and "
                                "SKULENS_API_WRITE_KEYS (comma-separated), or serve on 127.0.0.1")
    if not keys:
        err.print("no API keys set (SKULENS_API_READ_KEYS / SKULENS_API_WRITE_KEYS): anyone on this machine may "
                  f"search and change the catalogue, so skulens listens on {host} only")
    err.print(f"skulens: data {settings.data}; open http://{'localhost' if host in _LOOPBACK else host}:{port}/")
    level = logging.getLogger().getEffectiveLevel()
    logging.getLogger("service").setLevel(min(level, logging.INFO))  # the service's start-up lines, even without -v
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info" if level <= logging.INFO else "warning")
