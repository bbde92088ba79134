"""``skulens index`` and ``skulens products``: filling the catalogue and keeping it up."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from service.cli import common
from service.cli.common import err, out

products_app = typer.Typer(help="Catalogue upkeep: list, show, add, remove products.", no_args_is_help=True)


def index(catalog: Annotated[Path, typer.Argument(help="folder of <sku>.jpg (+ .txt/.json), folder of <sku>/ folders, or a CSV manifest")]) -> None:
    """Index a catalogue; re-running it updates changed SKUs only."""
    from pipeline.catalog_source import read_catalog
    from pipeline.indexing import index_catalog

    source = read_catalog(catalog)
    engine = common.engine()
    try:
        bar, update = common.progress_bar()  # with rate and time left; plain lines every 10 s without a terminal
        done = [0]

        def step(_sku: str) -> None:
            done[0] += 1
            update("indexing products", done[0], len(source.entries))

        with bar:
            report = index_catalog(engine, source, step)
        products, images, vectors = engine.store.count()
    finally:
        engine.close()
    err.print(f"indexed {len(report.indexed)}, unchanged {len(report.unchanged)}, skipped {len(report.skipped)} "
              f"in {report.seconds:.1f} s; catalogue: {products} products, {images} images, {vectors} vectors")
    for item in report.skipped:
        err.print(f"  skipped {item.item}: {item.reason}", markup=False)


@products_app.command("list")
def products_list(
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List products (sorted by SKU)."""
    from pipeline.store import open_store

    store = open_store(common.settings())
    rows = store.list_products(offset, limit)
    counts = {p.sku: len(store.images(p.sku)) for p in rows}  # this page only
    store.close()
    if as_json:
        sys.stdout.write(json.dumps([{**p.to_json(), "images": counts.get(p.sku, 0)} for p in rows], indent=2) + "\n")
        return
    table = Table("sku", "title", "brand", "images")
    for p in rows:
        table.add_row(p.sku, p.title[:50], p.brand, str(counts.get(p.sku, 0)))
    out.print(table)


@products_app.command("show")
def products_show(sku: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One product with its images (palette, OCR words, tags)."""
    from pipeline.files import FileStore
    from pipeline.store import open_store
    from service.render import product_json

    store = open_store(common.settings())
    try:
        doc = product_json(store.get_product(sku), store.images(sku), FileStore.of(common.settings()).root)
    finally:
        store.close()
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


@products_app.command("remove")
def products_remove(sku: str) -> None:
    """Remove a product, its images and vectors (no rebuild)."""
    engine = common.engine()
    try:
        engine.remove_product(sku)
    finally:
        engine.close()
    err.print(f"removed {sku}")


@products_app.command("add")
def products_add(
    sku: str,
    images: Annotated[list[Path], typer.Argument(help="one or more image files")],
    title: Annotated[Optional[str], typer.Option()] = None,
    brand: Annotated[Optional[str], typer.Option()] = None,
    category: Annotated[Optional[str], typer.Option()] = None,
    tags: Annotated[Optional[str], typer.Option(help="separated by ';'")] = None,
    price: Annotated[Optional[float], typer.Option(min=0)] = None,
    description: Annotated[Optional[str], typer.Option()] = None,
) -> None:
    """Add a product (or add images to an existing one; given fields replace stored ones)."""
    from core.catalog import merge_product
    from core.errors import NotFoundError
    from pipeline.catalog_source import make_product
    from pipeline.images import read_image_bytes

    settings = common.settings()
    blobs = [(p.name, read_image_bytes(p, settings.images)) for p in images]
    engine = common.engine()
    try:
        try:
            stored = engine.store.get_product(sku)
        except NotFoundError:
            stored = make_product(sku, {})
        given = {"title": title, "brand": brand, "category": category, "tags": tags, "price": price,
                 "description": description}
        product = merge_product(stored, {k: v for k, v in given.items() if v is not None})
        result = engine.add_product(product, blobs)
    finally:
        engine.close()
    err.print(f"{sku}: added {len(result.image_ids)} image(s)")
