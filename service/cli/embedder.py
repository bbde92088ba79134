"""``skulens embedder`` (train, export, list, bench, show) and ``skulens reindex``: a shop's own embedder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from core.errors import InvalidInputError
from core.naming import NATIVE_INPUT_SIZE
from pipeline.build import IMAGENET
from service.cli import common
from service.cli.common import err, out, progress_bar

log = logging.getLogger(__name__)

app = typer.Typer(help="Fine-tune the embedder on the catalogue, export it to ONNX, list trained ones.",
                  no_args_is_help=True)


def _trained(embedder: str | None):
    """The trained embedder an --embedder option names (a folder), ImageNet's for 'imagenet',
    else the newest one trained in the data directory."""
    from core.naming import TrainedEmbedder
    from pipeline.build import RECORDED, named_embedder
    from pipeline.embedder_files import list_trained

    named = named_embedder(embedder)
    if named != RECORDED:
        return named
    data = common.settings().data
    usable = [t for t in list_trained(data) if isinstance(t, TrainedEmbedder)]
    if not usable:
        raise InvalidInputError(f"no trained embedder in {data}/embedders: run `skulens embedder train`, "
                                f"or pass --embedder {IMAGENET}")
    return usable[-1]


@app.command("train")
def train(
    epochs: Annotated[int, typer.Option(min=1)] = 15,
    hours: Annotated[Optional[float], typer.Option(
        min=0.01, help="stop before an epoch that would pass this many hours (judged by the mean epoch so far; "
                       "one epoch always runs)")] = None,
    skus_per_batch: Annotated[int, typer.Option(min=2, help="SKUs in each batch")] = 8,
    images_per_sku: Annotated[int, typer.Option(min=2, help="images of each of those SKUs in a batch")] = 4,
    learning_rate: Annotated[float, typer.Option(min=0)] = 1e-4,
    train_from_block: Annotated[int, typer.Option(min=0, max=21, help="blocks before this one stay frozen (of 21)")] = 7,
    keep_tags: Annotated[float, typer.Option(min=0, help="weight of the term that keeps the ImageNet visual tags")] = 1.0,
    loss: Annotated[str, typer.Option(help="metric-learning loss: 'proxy-anchor' (one learnt proxy per SKU) or "
                                            "'multi-similarity' (pairs mined in each batch)")] = "proxy-anchor",
    holdout: Annotated[float, typer.Option(
        min=0, max=0.49, help="share of each SKU's photos held out to pick the best epoch (with --holdout-by "
                              "visits: the least a held-out visit holds)")] = 0.1,
    holdout_by: Annotated[str, typer.Option(help="'order': the last --holdout share of each SKU's photos; 'visits': "
                                                  "one whole shop visit per SKU (its photos clustered by ImageNet "
                                                  "embedding), an honest estimate for a shopper's photo from another "
                                                  "day, at the price of those photos' training")] = "order",
    device: Annotated[str, typer.Option(help="'auto' (CUDA when present), 'cpu' or 'cuda'")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    export: Annotated[bool, typer.Option(help="also export the result to ONNX, float and int8 (what the 'auto' and "
                                          "'onnx-int8' runtimes use)")] = True,
    input_size: Annotated[int, typer.Option(
        min=128, max=640, help="side in pixels of the training views, the held-out check and the export; the "
                              "embedder then runs at it unless told otherwise")] = NATIVE_INPUT_SIZE,
) -> None:
    """Fine-tune the embedder on the catalogue in the data directory: every SKU is a group (its
    catalogue picture plus any shop photos).

    The model lands in <data>/embedders/v<N>/ with its card (settings, data, metrics per epoch,
    version, sha256). The catalogue keeps its vectors until `skulens reindex` re-embeds it.
    """
    from training.embedder import EmbedderTrainSettings

    settings = common.settings()
    train_settings = EmbedderTrainSettings(
        epochs=epochs, hours=hours, skus_per_batch=skus_per_batch, images_per_sku=images_per_sku,
        learning_rate=learning_rate, train_from_block=train_from_block, keep_tags=keep_tags, loss=loss,
        holdout=holdout, holdout_by=holdout_by, image_size=input_size, device=device, seed=seed)
    trained = _train(settings, train_settings, holdout, holdout_by)
    m = trained.card["metrics"]
    out.print(f"{trained.name}: {trained.folder}", highlight=False)
    d = trained.card["data"]
    out.print(f"held-out R@1 {m['held_out_r1_before']} -> {m['held_out_r1']} (best epoch {m['best_epoch']} of "
              f"{m['epochs_run']}; {d['held_out_images']} photos held out by {d['held_out_by']}), "
              f"{m['seconds_per_epoch']} s per epoch", highlight=False)
    if export:
        from pipeline.embedder_files import calibration_images
        from pipeline.exports import export_embedder

        export_embedder(trained, settings.models, calibration_images(settings), input_size)
    out.print(f"next: `skulens --data {settings.data} reindex` re-embeds the catalogue with it", highlight=False)


def _train(settings, train_settings, holdout: float, holdout_by: str):
    """Train on the catalogue in the data directory, holding out ``holdout`` of each SKU's photos (by
    ``holdout_by``) to pick the best epoch; the new trained embedder."""
    from pipeline.build import imagenet_embedder
    from pipeline.embedder_files import embedders_dir, next_version
    from training.embedder import train_embedder, visit_vectors
    from training.embedder_data import load_catalogue, source_summary, split_holdout

    engine = _open_engine(settings)
    bar, update = progress_bar()
    try:
        with bar:
            skus, items = load_catalogue(engine, update)
            by_visit = holdout_by == "visits" and holdout > 0
            vectors = visit_vectors([it.image for it in items], imagenet_embedder(settings),
                                    update) if by_visit else None
            train_items, held = split_holdout(items, holdout, vectors)
            log.info("holding out %d photos of %d SKUs (by %s) to pick the best epoch", len(held),
                     len({it.label for it in held}), holdout_by)
            folder = embedders_dir(settings.data) / f"v{next_version(settings.data)}"
            return train_embedder(train_items, held, folder, settings.models, train_settings,
                                  source_summary(settings.data, skus, train_items, held, holdout_by), update)
    finally:
        engine.close()

InputSize = Annotated[Optional[int], typer.Option(
    min=128, max=640, help="input side in pixels (SKULENS_EMBEDDER__INPUT_SIZE); default: the size the catalogue's "
                           "vectors were made at by this embedder, else the size it was trained at (260 px for "
                           "ImageNet's)")]


def _sized(settings, input_size: int | None):
    """The settings with ``--input-size`` applied (unchanged without one)."""
    if input_size is None:
        return settings
    return settings.model_copy(update={"embedder": settings.embedder.model_copy(update={"input_size": input_size})})


def _open_engine(settings, trained=None, reembedding: bool = False):
    from pipeline.build import RECORDED, build_stages
    from pipeline.engine import Engine

    stages = build_stages(settings, trained=trained if reembedding else RECORDED)
    return Engine(settings, stages, reembedding=reembedding)


@app.command("export")
def export_cmd(
    embedder: Annotated[Optional[str], typer.Option(help=f"a trained embedder's folder, or '{IMAGENET}'; default: the newest trained one")] = None,
    int8: Annotated[bool, typer.Option(help="also write the int8 model, calibrated on the catalogue's images")] = False,
    input_size: InputSize = None,
) -> None:
    """Export an embedder to ONNX (beside its weights), for `SKULENS_EMBEDDER__RUNTIME=onnx` (and 'auto');
    `--int8` also writes the statically quantised model (`SKULENS_EMBEDDER__RUNTIME=onnx-int8`). A
    model quantised again is named anew (by its checksum): a catalogue of the old one's vectors then
    asks for `skulens reindex`. An ONNX file is made for one input size; each size has its own."""
    from core.naming import embedder_name, float_model_name, int8_name, sized_name
    from pipeline.build import embedder_input_size, recorded_embedder
    from pipeline.embedder_files import calibration_images
    from pipeline.exports import export_embedder, onnx_path

    settings = _sized(common.settings(), input_size)
    trained = _trained(embedder)
    size = embedder_input_size(settings, trained)
    calibration = calibration_images(settings) if int8 else None
    for path in export_embedder(trained, settings.models, calibration, size):
        out.print(f"wrote {path}", highlight=False)
    recorded = recorded_embedder(settings) or ""
    base = sized_name(embedder_name(trained), size)
    if int8 and recorded != base and float_model_name(recorded) == base:
        now = int8_name(base, onnx_path(trained, settings.models, True, size))
        if recorded != now:
            out.print(f"the catalogue's vectors were made by the int8 model this replaced ({recorded}; now {now}): "
                      f"re-embed it with `skulens --data {settings.data} reindex`", highlight=False)


@app.command("list")
def list_cmd() -> None:
    """Trained embedders in the data directory, and which one the catalogue's vectors came from."""
    from core.naming import TrainedEmbedder
    from pipeline.embedder_files import list_trained
    from pipeline.store import EMBEDDER_KEY, catalogue_meta

    settings = common.settings()
    recorded = catalogue_meta(settings, EMBEDDER_KEY) or "(no catalogue)"
    table = Table("name", "folder", "created", "held-out R@1", "epochs", "s/epoch")
    for t in list_trained(settings.data):
        if isinstance(t, TrainedEmbedder):
            m, by = t.card["metrics"], t.card["data"].get("held_out_by", "order")  # cards before it: order
            table.add_row(t.name, str(t.folder), t.card["created"],
                          f"{m['held_out_r1_before']} -> {m['held_out_r1']} ({by})",
                          str(m["epochs_run"]), str(m["seconds_per_epoch"]))
        else:
            table.add_row("(unusable)", str(t[0]), "", t[1], "", "")
    out.print(table)
    out.print(f"catalogue vectors made by: {recorded}", highlight=False)


def reindex(
    embedder: Annotated[Optional[str], typer.Option(help=f"a trained embedder's folder, or '{IMAGENET}'; default: the newest one trained in the data directory")] = None,
    benchmarks: Annotated[Optional[Path], typer.Option(help="write the re-embedding speed to this BENCHMARKS.md")] = None,
    input_size: InputSize = None,
) -> None:
    """Re-embed the catalogue with another embedder, at another input size (`--input-size`), or in the
    catalogue regions the settings now name (`SKULENS_FUSION__INDEX_REGIONS`); boxes, colours and
    words are kept, the keypoints of the verify signal made anew; one transaction. Searches then follow the catalogue's embedder and size. At a new
    input size, the ONNX forms the embedder has at the size it was trained at (260 px unless `embedder
    train --input-size` said otherwise) are made for it first (the int8 one calibrated on the
    catalogue's images)."""
    from evaluation.benchmarks_md import update_section
    from pipeline.build import embedder_input_size
    from pipeline.embedder_files import calibration_images
    from pipeline.exports import export_for_size
    from pipeline.reembed import reembed, reembed_markdown

    settings = _sized(common.settings(), input_size)
    trained = _trained(embedder)
    with err.status("exporting the embedder to ONNX for this input size..."):
        size = embedder_input_size(settings, trained)
        made = export_for_size(trained, settings.models, settings.embedder.runtime, size,
                               lambda: calibration_images(settings))
    for path in made:
        err.print(f"exported {path}", highlight=False)
    engine = _open_engine(settings, trained, reembedding=True)
    bar, update = progress_bar()
    try:
        with bar:
            summary = reembed(engine, update)
    finally:
        engine.close()
    err.print(f"re-embedded {summary['images']} images ({summary['vectors']} vectors) with {summary['embedder']} "
              f"in {summary['seconds']} s ({summary['images_per_s']} images/s)", highlight=False)
    if benchmarks:
        update_section(benchmarks, "speed-reindex", "Speed: re-embedding a catalogue (reindex)",
                       reembed_markdown(summary, settings))


@app.command("bench")
def bench_cmd(
    dataset: Annotated[Path, typer.Argument(help="the grocery data set folder (manifest.csv): catalogue pictures and query photos")],
    split: Annotated[str, typer.Option(help="which photos are the queries")] = "val",
    embedder: Annotated[Optional[str], typer.Option(help=f"a trained embedder's folder, or '{IMAGENET}' (default)")] = IMAGENET,
    runtimes: Annotated[str, typer.Option(help="comma-separated among torch, onnx, onnx-int8 and onnx-int8-dynamic "
                                                "(onnxruntime's dynamic quantisation, for comparison)")] = "torch,onnx,onnx-int8,onnx-int8-dynamic",
    batch: Annotated[int, typer.Option(min=1, help="photos per call for the throughput figure")] = 32,
    benchmarks: Annotated[Optional[Path], typer.Option(help="update the embedder section of a BENCHMARKS.md")] = None,
    input_size: InputSize = None,
    variant: Annotated[Optional[str], typer.Option(help="name a non-default run (e.g. '320 px'): its BENCHMARKS.md "
                                                   "section sits beside the default one")] = None,
) -> None:
    """Speed (batch 1 and batched) and embedding-only R@1 of each runtime; exports the ONNX forms it lacks."""
    from evaluation.bench_embedder import COMPARED, bench_embedder, embed_bench_markdown
    from evaluation.benchmarks_md import update_section, with_variant

    settings = _sized(common.settings(), input_size)
    wanted = tuple(r.strip() for r in runtimes.split(",") if r.strip())
    if not wanted or set(wanted) - set(COMPARED):
        raise InvalidInputError(f"expected runtimes among {', '.join(COMPARED)}, got {runtimes!r}")
    trained = _trained(embedder)
    if any(r.startswith("onnx") for r in wanted):
        _ensure_onnx(settings, trained, int8="onnx-int8" in wanted)
    bar, update = progress_bar()
    with bar:
        result = bench_embedder(settings, trained, dataset, split, wanted, batch=batch, progress=update)
    text = embed_bench_markdown(result)
    out.print(text, highlight=False, markup=False)
    if benchmarks:
        update_section(benchmarks, *with_variant("speed-embedder", "Speed: embedder runtimes", variant), text)


def _ensure_onnx(settings, trained, int8: bool) -> None:
    """Export the ONNX forms (the float one; the int8 one too with ``int8``) unless current ones are there."""
    from pipeline.build import embedder_input_size
    from pipeline.embedder_files import calibration_images
    from pipeline.exports import export_embedder, onnx_ready

    size = embedder_input_size(settings, trained)
    ready = all(onnx_ready(trained, settings.models, q, size) for q in ([False, True] if int8 else [False]))
    if not ready:
        calibration = calibration_images(settings) if int8 else None
        for path in export_embedder(trained, settings.models, calibration, size):
            err.print(f"exported {path}", highlight=False)


@app.command("show")
def show_cmd(
    embedder: Annotated[Optional[str], typer.Option(help="a trained embedder's folder; default: the newest trained one")] = None,
    benchmarks: Annotated[Optional[Path], typer.Option(help="write its training figures to a BENCHMARKS.md section")] = None,
    variant: Annotated[Optional[str], typer.Option(help="name a non-default training (e.g. 'visit holdout'): its "
                                                   "BENCHMARKS.md section sits beside the default one")] = None,
) -> None:
    """A trained embedder's card: data, settings, held-out R@1 and time of every epoch."""
    from evaluation.benchmarks_md import update_section, with_variant
    from pipeline.embedder_files import training_markdown

    trained = _trained(embedder)
    if trained is None:
        raise InvalidInputError("ImageNet's embedder has no training card; name a trained embedder's folder")
    text = training_markdown(trained)
    out.print(text, highlight=False, markup=False)
    if benchmarks:
        update_section(benchmarks, *with_variant("embedder-training", "Embedder training", variant), text)
