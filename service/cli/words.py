"""``skulens words``: words and pictures in one space: learn the catalogue's word map, forget it,
and suggest tags for a product from its pictures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from service.cli import common
from service.cli.common import err, out, progress_bar

app = typer.Typer(help="Words and pictures in one space: learn the catalogue's word map, suggest tags.",
                  no_args_is_help=True)


@app.command("train")
def words_train() -> None:
    """Learn where this catalogue's pictures fall among words from its own pictures and product texts
    (titles, categories, tags, descriptions), and keep the map with the catalogue: typed words then
    find products by their pictures through it, mixed with ImageNet's class names (ConSE) by
    words.mix. Seconds on a CPU; run it again after the catalogue grew or changed much."""
    from training.words import train_word_map

    engine = common.engine()
    try:
        with err.status("learning the word map..."):
            projection = train_word_map(engine)
            engine.use_word_map(projection)
    finally:
        engine.close()
    fit = projection.fit
    out.print(f"word map learnt from {projection.pairs} pictures of {fit['products']} products in {fit['seconds']} s "
              f"(penalty {projection.alpha}; held-out products found by their own words: mAP {fit['cv_map']:.3f} "
              f"over {fit['folds']} folds); kept in {engine.data}", highlight=False)


@app.command("forget")
def words_forget() -> None:
    """Forget the catalogue's word map: pictures are placed by ConSE (ImageNet's class names) again."""
    engine = common.engine()
    try:
        engine.use_word_map(None)
    finally:
        engine.close()
    out.print("word map forgotten: pictures are placed by ConSE", highlight=False)


@app.command("suggest")
def words_suggest(
    sku: str,
    k: Annotated[int, typer.Option(min=1, max=50, help="how many words")] = 8,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tags to consider for a product, from its pictures: their colours' names and the catalogue's
    words nearest them (words of its title and tags left out); the JSON of GET
    /v1/products/{sku}/suggested-tags."""
    from service.render import suggestions_json

    engine = common.engine(read_only=True)
    try:
        found = suggestions_json(engine, sku, k)
    finally:
        engine.close()
    if as_json:
        out.print_json(json.dumps(found))
        return
    words = [f"{c} (colour)" for c in found["colours"]] + [f"{w['word']} {w['cosine']:.2f}" for w in found["words"]]
    out.print(f"{sku} ({found['source']}): " + (", ".join(words) or "nothing to suggest"), highlight=False)


def bench_words(
    datasets: Annotated[Path, typer.Argument(help="the folder holding caltech101/, clothing/ and grocery/")],
    only: Annotated[str, typer.Option(help="data sets to measure, comma-separated")] = "caltech101,clothing,grocery",
    benchmarks: Annotated[Optional[Path], typer.Option(help="the BENCHMARKS.md to update (section words)")] = None,
    as_json: Annotated[Optional[Path], typer.Option("--json", help="also write the figures as JSON")] = None,
) -> None:
    """Typed words against pictures: class names and paraphrases against pictures without titles
    (Caltech-101, clothing, grocery), full-text search against the fused ranking with titles, and the
    costs. Throw-away catalogues go under --data's words/ folder."""
    from evaluation.bench_words import markdown, run
    from evaluation.benchmarks_md import update_section
    from pipeline.build import build_stages

    settings = common.settings()
    wanted = tuple(s.strip() for s in only.split(",") if s.strip())
    unknown = set(wanted) - {"caltech101", "clothing", "grocery"}
    if unknown:
        raise typer.BadParameter(f"unknown data sets {sorted(unknown)}; expected caltech101, clothing, grocery",
                                 param_hint="--only")
    bar, update = progress_bar()
    with bar:
        report = run(datasets, settings, build_stages(settings), wanted, progress=update)
    text = markdown(report, settings)
    out.print(text, highlight=False, markup=False)
    if benchmarks is not None:
        update_section(benchmarks, "words", "Words and pictures in one space", text)
    if as_json is not None:
        as_json.write_text(json.dumps({k: repr(v) for k, v in report.items()}, indent=1))
