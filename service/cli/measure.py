"""Measurement: ``skulens eval``, ``gallery-csv``, ``tune``, ``bench`` and ``bench-service``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from core.errors import SkulensError
from service.cli import common
from service.cli.common import err, eval_stages, out, progress_bar


def evaluate(
    protocol: Annotated[str, typer.Argument(help="G1, G2 (grocery), C1 (Caltech-101) or K1 (clothing)")],
    dataset: Annotated[Path, typer.Argument(help="the data set folder holding manifest.csv")],
    split: Annotated[str, typer.Option(help="which photos are queries (G1/G2); a split column filter (C1/K1)")] = "val",
    limit: Annotated[Optional[int], typer.Option(min=1, help="a stratified sample of N queries")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write all metrics and per-query ranks here")] = None,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="write an error analysis here: one self-contained "
                                                     "HTML page (metrics, the ablation as a chart, the worst queries "
                                                     "as pictures, the SKUs most often confused)")] = None,
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

    settings = common.settings()
    bar, update = progress_bar()
    with bar:
        report = run_eval(protocol, dataset, settings, eval_stages(settings, embedder), split, limit, ablate, seed,
                          update)
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))
    if html_out:
        _write_eval_html(report, dataset, split, limit, seed, html_out)
    if benchmarks:
        key, title = with_variant(f"quality-{report['protocol']}", f"Quality: {report['protocol']} ({report['split']})",
                                  variant)
        update_section(benchmarks, key, title, report_markdown(report))
    _print_report(report)


def _write_eval_html(report: dict, dataset: Path, split: str, limit: int | None, seed: int, out_html: Path) -> None:
    from evaluation.protocols import load_protocol
    from service.eval_html import render_eval_report

    gallery = load_protocol(report["protocol"], dataset, split, limit, seed).gallery
    pictures = {product.sku: Path(paths[0]) for product, paths in gallery if paths}
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(render_eval_report(report, pictures), encoding="utf-8")
    err.print(f"wrote {out_html}")


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


def demo_csv(
    dataset: Annotated[Path, typer.Argument(help="the grocery data set folder holding manifest.csv")],
    out_csv: Annotated[Path, typer.Argument(metavar="OUT", help="the catalogue CSV to write")],
) -> None:
    """Write the demo shop: the grocery catalogue's 81 products with a category (department), a brand
    (packaged products) and a made-up price each, as a catalogue CSV for `skulens index` (`make run` uses it)."""
    from evaluation.demo_catalogue import write_demo_csv

    rows = write_demo_csv(dataset, out_csv)
    out.print(f"{out_csv}: {rows} products (demo categories, brands and made-up prices)", highlight=False)


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
    from pipeline.store import catalogue_name

    check_tune_args(protocol, split)
    settings = common.settings()
    bar, update = progress_bar()
    with bar:
        record = run_tune(dataset, settings, eval_stages(settings, embedder), split, limit, progress=update,
                          protocol=protocol)
    k = record.get("sku_images", 1)
    images = f", each SKU by the mean of its {k} best images" if k > 1 else ""
    out.print(f"tuned {record['protocol']} weights {record['weights']}{images} on {record['queries']} {split} queries "
              f"(train fit: recall@1 {record['fit']['recall@1']:.3f}, mrr {record['fit']['mrr']:.3f}); "
              f"saved in {catalogue_name(settings)}", highlight=False)


def bench(
    photos: Annotated[Optional[Path], typer.Option(help="folder of query photos (searched recursively)")] = None,
    queries: Annotated[int, typer.Option(min=1, help="warm queries to time")] = 100,
    catalog: Annotated[Optional[Path], typer.Option(help="catalogue to time indexing on (a throw-away copy)")] = None,
    index_limit: Annotated[Optional[int], typer.Option(min=1, help="index only the first N catalogue entries")] = None,
    index_workers: Annotated[str, typer.Option(help="ingest worker counts to index with, back to back, comma-separated "
                                                    "(default: the settings' ingest.workers)")] = "",
    vectors: Annotated[str, typer.Option(help="vector-index sizes, comma-separated; '' to skip")] = "10000,100000,1000000",
    vector_budget_s: Annotated[float, typer.Option(help="skip index builds that would take longer than this")] = 900.0,
    vector_data: Annotated[Optional[list[Path]], typer.Option(
        help="image folders whose embeddings (with Fashion-MNIST's) make the vector benchmark's database, "
             "grown between real neighbours past their count; without it, random unit vectors")] = None,
    vector_queries: Annotated[Optional[Path], typer.Option(
        help="with --vector-data: real query photos, kept out of the database")] = None,
    fashion_mnist: Annotated[bool, typer.Option(help="with --vector-data: add Fashion-MNIST's 70,000 photos "
                                                     "(Debian's dataset-fashion-mnist)")] = True,
    vector_methods: Annotated[str, typer.Option(help="vector-index methods to compare, comma-separated")] =
    "numpy,flat,ivf,hnsw,annoy,ivf-sq8,ivf-sq4,pca256-ivf-sq8,ivf-pq",
    benchmarks: Annotated[Path, typer.Option(help="the BENCHMARKS.md to update")] = Path("BENCHMARKS.md"),
) -> None:
    """Speed: per-stage and end-to-end query latency, indexing throughput, vector indexes side by side."""
    from evaluation.bench_pipeline import bench_indexing, bench_markdown, bench_queries
    from evaluation.benchmarks_md import update_section

    settings = common.settings()
    bar, update = progress_bar()
    with bar:
        if photos:
            found = sorted(p for p in photos.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
            result = bench_queries(settings, found, queries, lambda d, t: update("queries", d, t))
            update_section(benchmarks, "speed-query", "Speed: query path", bench_markdown(result, None)[0])
        if catalog:
            counts = tuple(int(x) for x in index_workers.split(",") if x.strip())
            if any(n < 1 for n in counts):
                raise SkulensError(f"expected worker counts of at least 1, got {index_workers!r}")
            result = bench_indexing(settings, catalog, index_limit, lambda d, t: update("indexing", d, t), counts)
            update_section(benchmarks, "speed-index", "Speed: indexing", bench_markdown(None, result)[1])
        sizes = [int(x) for x in vectors.split(",") if x.strip()]
        methods = [m.strip() for m in vector_methods.split(",") if m.strip()]
        from evaluation.bench_index import METHODS

        if sizes and (not methods or set(methods) - set(METHODS)):
            raise SkulensError(f"--vector-methods: expected some of {', '.join(METHODS)}, got {vector_methods!r}")
        if sizes and vector_data:
            if vector_queries is None:
                raise SkulensError("--vector-data needs --vector-queries: real photos to search with")
            _bench_real_vectors(settings, sizes, vector_data, vector_queries, fashion_mnist, vector_budget_s,
                                benchmarks, update, methods)
        elif sizes:
            _bench_vectors(sizes, vector_budget_s, benchmarks, methods)
    err.print(f"updated {benchmarks}")


def _bench_vectors(sizes: list[int], vector_budget_s: float, benchmarks: Path, methods: list[str]) -> None:
    """The vector indexes alone, at each of ``sizes``, into their BENCHMARKS.md section."""
    from evaluation.bench_index import bench_vector_indexes, rows_to_markdown
    from evaluation.benchmarks_md import update_section

    rows = bench_vector_indexes(sizes, progress=lambda msg: err.print(msg, highlight=False),
                                time_budget_s=vector_budget_s, methods=methods)
    note = ("Single queries (batch 1). Recall@10 against exact search on structureless random vectors is "
            "the worst case for approximate indexes; `dup@1` (a noisy copy of a stored vector finds it "
            "first) is closer to what product look-ups see. skulens uses exact search up to 50,000 "
            "vectors and IVF beyond.\n\n")
    update_section(benchmarks, "speed-vectors", "Speed: vector index alone (random unit vectors, d=1280)",
                   note + rows_to_markdown(rows))


def _bench_real_vectors(settings, sizes: list[int], folders: list[Path], queries: Path, with_fashion_mnist: bool,
                        vector_budget_s: float, benchmarks: Path, update, methods: list[str]) -> None:
    """The vector indexes on real embeddings grown to each of ``sizes`` (evaluation.real_vectors)."""
    from evaluation.bench_index import bench_vector_indexes, rows_to_markdown
    from evaluation.benchmarks_md import update_section
    from evaluation.real_vectors import grow, real_sets
    from pipeline.build import build_stages
    from pipeline.database import FeatureCache

    embedder = build_stages(settings).embedder
    cache = FeatureCache(settings.data / "eval" / "vectors.sqlite3")
    real, asked = real_sets(folders, [queries], embedder, cache, with_fashion_mnist, update)
    rows = bench_vector_indexes(sizes, progress=lambda msg: err.print(msg, highlight=False),
                                time_budget_s=vector_budget_s, data=lambda n: (grow(real, n), asked), methods=methods)
    sources = ", ".join(f"`{f}`" for f in folders) + (" and Fashion-MNIST's 60,000 train images" if with_fashion_mnist
                                                       else "")
    note = (f"Single queries (batch 1) on **real embeddings** ({embedder.name}, whole image): {len(real):,} "
            f"real vectors of the product photos under {sources}; a size above that is filled by "
            "interpolating between real neighbours (evaluation/real_vectors.py), a size below is a random "
            f"subset. {len(asked)} real query photos kept out of the database (`{queries}`"
            + (" and 100 Fashion-MNIST test images" if with_fashion_mnist else "") + "). Recall@10 is against "
            "exact search over the same vectors.\n\n")
    update_section(benchmarks, "speed-vectors-real", "Speed: vector index alone (real embeddings)",
                   note + rows_to_markdown(rows))


def bench_service(
    photos: Annotated[Path, typer.Option(help="a folder of query photos (searched recursively)")],
    catalog: Annotated[Path, typer.Option(help="a folder of catalogue images, imported through the API")],
    searches: Annotated[int, typer.Option(min=1, help="photo searches in the load run")] = 500,
    clients: Annotated[int, typer.Option(min=1, help="concurrent search clients")] = 8,
    kill_after: Annotated[float, typer.Option(help="seconds into the bulk import at which the server is killed")] = 20.0,
    load: Annotated[bool, typer.Option(help="run the load part")] = True,
    kill: Annotated[bool, typer.Option(help="run the kill-and-restart part")] = True,
    workdir: Annotated[Optional[Path], typer.Option(help="where the servers' data go (default: a temporary folder)")] = None,
    import_beside: Annotated[Optional[Path], typer.Option(help="a folder of other images imported as new products by a job that runs during the load (at most the 1,000 one import takes, spread over the folder)")] = None,
    benchmarks: Annotated[Optional[Path], typer.Option(help="the BENCHMARKS.md to update")] = None,
) -> None:
    """Load and kill runs against a real `skulens serve` on loopback (a fresh data directory, API keys set)."""
    import tempfile

    from evaluation.benchmarks_md import update_section
    from evaluation.loadtest import load_markdown
    from pipeline.catalog_source import IMAGE_SUFFIXES

    query_photos = sorted(p for p in Path(photos).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    cat_images = sorted(p for p in Path(catalog).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not query_photos or not cat_images:
        raise SkulensError(f"need photos in {photos} and catalogue images in {catalog}")
    root = Path(workdir or tempfile.mkdtemp(prefix="skulens-bench-service-"))
    load_result = kill_result = None
    if load:
        beside = None
        if import_beside is not None:
            beside = sorted(p for p in Path(import_beside).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not beside:
                raise SkulensError(f"no images in {import_beside}")
            most = common.settings().service.max_files * 50  # what one POST /v1/import takes
            beside = beside[::max(1, -(-len(beside) // most))][:most]
        load_result = _load_run(root / "load", cat_images, query_photos, searches, clients, beside)
    if kill:
        kill_result = _kill_run(root / "kill", cat_images, query_photos, kill_after)
    if benchmarks:
        update_section(benchmarks, "service-load", "Service: load and kill (loopback)",
                       load_markdown(load_result, kill_result, len(cat_images)))
        err.print(f"updated {benchmarks}")
    if (load_result and load_result.server_errors) or (kill_result and not kill_result.ok):
        raise SkulensError("the service run failed (5xx responses, or lost writes); see above")


def _load_run(data: Path, cat_images: list[Path], query_photos: list[Path], searches: int, clients: int,
              beside: list[Path] | None = None):
    """Import the catalogue into a fresh server, then time ``searches`` photo searches from ``clients``
    (with an import job of ``beside`` running at the same time)."""
    from evaluation.loadtest import import_catalog, new_server, run_load

    server = new_server(data)
    server.start()
    try:
        report = import_catalog(server, [(p.stem, p) for p in cat_images])
        err.print(f"imported {report['counts']['indexed']} products; {searches} searches from {clients} clients...")
        result = run_load(server, query_photos, searches, clients, cat_images[0],
                          [(f"BESIDE-{i:05d}", p) for i, p in enumerate(beside)] if beside else None)
    finally:
        server.stop()
    err.print(f"load: {result.searches / result.seconds:.2f} searches/s, p50 "
              f"{result.percentile(50):.0f} ms, p95 {result.percentile(95):.0f} ms, "
              f"p99 {result.percentile(99):.0f} ms, 5xx {result.server_errors}"
              + (f"; import beside: {result.beside_done} of {result.beside_rows} rows ({result.beside_state})"
                 if result.beside_rows else ""))
    return result


def _kill_run(data: Path, cat_images: list[Path], query_photos: list[Path], kill_after: float):
    """Kill a fresh server ``kill_after`` seconds into a bulk import, restart it, and count what survived."""
    from evaluation.loadtest import new_server, run_kill

    server = new_server(data)
    server.start()
    try:
        result = run_kill(server, [(f"IMP-{p.stem}", p) for p in cat_images], cat_images[-1],
                          query_photos[0], kill_after)
    finally:
        server.stop()
    err.print(f"kill: {result.acknowledged} acknowledged writes, {len(result.missing)} missing; "
              f"DB {result.db_vectors} vectors, index {result.index_vectors}; search "
              f"{result.search_status}" + (" (the import had finished before the kill)"
                                           if result.import_done_before_kill else ""))
    return result
