"""``skulens dedup``, ``dedup-eval`` and ``bench-dedup``: near-duplicate images and listings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from core.errors import InvalidInputError
from service.cli import common
from service.cli.common import err, eval_stages, out, progress_bar


def _with_thresholds(threshold: float | None, phash_distance: int | None):
    settings = common.settings()
    d = settings.dedup
    update = {k: v for k, v in (("visual_min_cosine", threshold), ("phash_max_distance", phash_distance))
              if v is not None}
    return settings.model_copy(update={"dedup": d.model_copy(update=update)})


def dedup(
    image: Annotated[Optional[Path], typer.Option("--image", help="is this photo already in the catalogue, and as which SKU?")] = None,
    folder: Annotated[Optional[Path], typer.Option("--folder", help="look in this folder of image files instead of the catalogue")] = None,
    threshold: Annotated[Optional[float], typer.Option(min=0, max=1, help="whole-image embedding cosine that makes a copy (default: settings dedup.visual_min_cosine)")] = None,
    phash_distance: Annotated[Optional[int], typer.Option(min=0, max=11, help="pHash Hamming distance that makes a copy (default: settings dedup.phash_max_distance)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the report as JSON here ('-' for stdout)")] = None,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="write the report with thumbnails as HTML here")] = None,
    full: Annotated[bool, typer.Option("--full", help="look at every catalogue image again (default: only the images added since the last report, kept in <data>/duplicates.sqlite3)")] = False,
) -> None:
    """Find near-duplicate images, and the SKUs that share them, across the catalogue in the data directory.

    Layers, cheapest first: the same bytes (exact), perceptual hashes (phash), the embedding index (visual), and ORB keypoints matched under one transform for the other embedding neighbours (keypoints). Colour variants of one picture are not copies.
    """
    if image is not None and folder is not None:
        raise InvalidInputError("give --image or --folder, not both")
    report, root = _find_duplicates(_with_thresholds(threshold, phash_distance), image, folder, full)
    if json_out is not None:
        _write_json(report, json_out)
    if html_out is not None:
        _write_html(report, html_out, image, root)
    if json_out is None or str(json_out) != "-":
        _print_summary(report, image is not None)


def _find_duplicates(settings, image: Path | None, folder: Path | None, full: bool = False) -> tuple[dict, Path]:
    """The report (as JSON) for the photo ``image``, the ``folder``, or else the catalogue; and the
    folder its image files are relative to."""
    from pipeline.build import build_stages
    from pipeline.dedup import Deduplicator
    from pipeline.engine import Engine
    from pipeline.images import read_image_bytes

    engine = Engine(settings, build_stages(settings))
    try:
        finder = Deduplicator(engine)
        if image is not None:
            report = finder.photo(read_image_bytes(image, settings.images), image.name).to_json()
            root = engine.files.root
        else:
            bar, update = progress_bar()
            with bar:
                report = (finder.folder(folder, update) if folder is not None else finder.catalogue(update, full)).to_json()
            root = folder if folder is not None else engine.files.root
    finally:
        engine.close()
    return report, root


def _write_html(report: dict, html_out: Path, image: Path | None, root: Path) -> None:
    from service.dedup_html import render_report

    def resolve(im: dict) -> Path:
        return image if (image is not None and im["sku"] is None) else root / im["file"]
    title = f"Near-duplicates of {image.name}" if image is not None else f"Near-duplicates in {root}"
    html_out.write_text(render_report(report, resolve, title), encoding="utf-8")
    err.print(f"wrote {html_out}")


def _write_json(report: dict, path: Path) -> None:
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if str(path) == "-":
        print(text)
    else:
        path.write_text(text + "\n", encoding="utf-8")
        err.print(f"wrote {path}")


def _print_summary(report: dict, photo: bool) -> None:
    groups = report["groups"]
    if photo:
        _print_photo_summary(groups)
        return
    table = Table("group", "images", "skus or files", "layers", "best", "worst")
    for n, g in enumerate(groups, 1):
        scores = [p["score"] for p in g["pairs"]]
        layers = ",".join(sorted({p["layer"] for p in g["pairs"]}))
        names = g["skus"] or [im["file"] for im in g["images"]]  # a folder's images have no SKU: name the files
        table.add_row(str(n), str(len(g["images"])), ", ".join(names[:4]) + (" ..." if len(names) > 4 else ""),
                      layers, f"{max(scores):.3f}", f"{min(scores):.3f}")
    out.print(table)
    out.print(f"{len(groups)} group(s); {len(report['skipped'])} skipped", highlight=False)
    for s in report["skipped"]:
        out.print(f"  skipped {s['item']}: {s['reason']}", markup=False, highlight=False)


def _print_photo_summary(groups: list[dict]) -> None:
    if not groups:
        out.print("no near-duplicate in the catalogue: this photo is new")
        return
    table = Table("sku", "image", "layer", "score", title="the photo duplicates")
    by_ref = {im["image_id"]: im for im in groups[0]["images"] if im["image_id"] is not None}
    for p in groups[0]["pairs"]:
        im = by_ref[p["b"]]
        table.add_row(im["sku"], str(im["image_id"]), p["layer"], f"{p['score']:.3f}")
    out.print(table)


def dedup_eval(
    which: Annotated[str, typer.Argument(help="'grocery' (transformed copies of the photos and catalogue) or 'ukbench' (ukbench-dups)")],
    dataset: Annotated[Path, typer.Argument(help="the data set folder holding manifest.csv")],
    split: Annotated[str, typer.Option(help="grocery: whose photos are copied; train and val each take half the "
                                            "catalogue's coarse classes (thresholds were chosen on train)")] = "val",
    seed: Annotated[int, typer.Option(help="seed of the copies")] = 0,
    limit: Annotated[Optional[int], typer.Option(min=1, help="grocery: about this many photos (every k-th, all SKUs kept)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write every number here")] = None,
    benchmarks: Annotated[Optional[Path], typer.Option(help="update this BENCHMARKS.md section")] = None,
) -> None:
    """Measure near-duplicate detection: precision and recall per layer and combined."""
    from evaluation import dedup_eval as de
    from evaluation.benchmarks_md import update_section

    which = which.lower()
    if which not in ("grocery", "ukbench"):
        raise InvalidInputError(f"expected 'grocery' or 'ukbench', got {which!r}")
    res = _run_dedup_eval(which, dataset, split, seed, limit)
    if json_out is not None:
        _write_json(res, json_out)
    md = de.copies_markdown(res) if which == "grocery" else de.ukbench_markdown(res)
    out.print(md, markup=False, highlight=False)
    if benchmarks is not None:
        title = (f"Near-duplicates: transformed grocery copies ({split})" if which == "grocery"
                 else "Near-duplicates: ukbench-dups")
        update_section(benchmarks, f"dedup-{which}", title, md)
        err.print(f"updated {benchmarks}")


def _run_dedup_eval(which: str, dataset: Path, split: str, seed: int, limit: int | None) -> dict:
    from evaluation import dedup_eval as de
    from pipeline.engine import Engine

    settings = common.settings()
    engine = Engine(settings, eval_stages(settings))  # masks persist in <data>/eval for re-runs
    try:
        bar, update = progress_bar()
        with bar:
            if which == "grocery":
                work = engine.data / "dedup-eval" / f"grocery-{split}-{seed}"
                return de.grocery_copies(engine, dataset, split, work, seed, limit, update)
            return de.ukbench(engine, dataset, update)
    finally:
        engine.close()


def bench_dedup(
    photos: Annotated[Path, typer.Option(help="a folder of real photos to time the per-image stages on")],
    sizes: Annotated[str, typer.Option(help="comma-separated catalogue sizes for the synthetic scale runs")] = "10000,100000",
    sample: Annotated[int, typer.Option(min=2, help="real photos timed")] = 100,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write every number here")] = None,
    benchmarks: Annotated[Optional[Path], typer.Option(help="update this BENCHMARKS.md section")] = None,
) -> None:
    """Time near-duplicate search at scale (synthetic signatures) and its per-image stages (real photos)."""
    from evaluation import bench_dedup as db
    from evaluation.benchmarks_md import update_section
    from pipeline.images import IMAGE_SUFFIXES

    try:
        ns = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError as exc:
        raise InvalidInputError(f"--sizes: expected comma-separated integers, got {sizes!r}") from exc
    files = sorted(p for p in Path(photos).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:sample]
    if len(files) < 2:
        raise InvalidInputError(f"{photos}: expected at least 2 photos")
    settings = common.settings()
    engine = common.engine()
    try:
        costs = db.unit_costs(engine, files)
    finally:
        engine.close()
    rows = []
    for n in ns:
        err.print(f"scale run: {n:,} images…")
        rows.append(db.scale_row(n, engine.stages.embedder.dim, settings.dedup))
    md = db.scale_markdown(rows, costs, settings.dedup)
    out.print(md, markup=False, highlight=False)
    if json_out is not None:
        _write_json({"unit_costs": costs, "scale": rows}, json_out)
    if benchmarks is not None:
        update_section(benchmarks, "dedup-scale", "Near-duplicates: time at 10k and 100k images", md)
        err.print(f"updated {benchmarks}")
