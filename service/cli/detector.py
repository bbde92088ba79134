"""``skulens detector``: make training data from photo folders and train our product detector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from core.errors import InvalidInputError
from service.cli import common
from service.cli.common import eval_stages, out, progress_bar

app = typer.Typer(help="Train the product detector (ultralytics YOLO) from photo folders.", no_args_is_help=True)


@app.command("train")
def train(
    photos: Annotated[Optional[list[Path]], typer.Argument(help="photo folders (each one source: the teacher is checked per folder)")] = None,
    work: Annotated[Path, typer.Option(help="where the data set and the training run go")] = Path("detector-work"),
    dataset: Annotated[Optional[Path], typer.Option(help="train on this data set (its data.yaml) instead of making one from PHOTOS")] = None,
    composites: Annotated[int, typer.Option(min=0, help="composite images to make (train and val together)")] = 3000,
    per_source: Annotated[Optional[int], typer.Option(min=1, help="read at most about this many photos per folder")] = None,
    min_trust: Annotated[float, typer.Option(min=0, max=1, help="share of credible teacher masks a folder needs before its photos are used")] = 0.5,
    val_share: Annotated[float, typer.Option(min=0.01, max=0.5, help="share of photos (and composites) held out for validation")] = 0.15,
    data_only: Annotated[bool, typer.Option("--data-only", help="make the data set and stop")] = False,
    model: Annotated[str, typer.Option(help="ultralytics architecture file (from the package) or a .pt to start from")] = "yolov8n.yaml",
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    imgsz: Annotated[int, typer.Option(min=32, help="training input size")] = 320,
    batch: Annotated[int, typer.Option(min=1)] = 16,
    hours: Annotated[Optional[float], typer.Option(min=0.01, help="stop training after this many hours")] = None,
    device: Annotated[str, typer.Option(help="'cpu', or a CUDA device such as '0'")] = "cpu",
    seed: Annotated[int, typer.Option(help="seed of the data set and of training")] = 0,
) -> None:
    """Make a detector training set from PHOTOS (teacher pseudo-labels where the teacher is credible, plus copy-paste composites with exact boxes) and train a YOLO model on it.

    The weights land in WORK/detector.pt with a card (WORK/detector.json); point
    SKULENS_DETECTOR__WEIGHTS at them, or copy them over the shipped ones.
    """
    from training.detector import TrainSettings, train_detector

    settings = TrainSettings(model=model, epochs=epochs, image_size=imgsz, batch=batch, device=device, seed=seed,
                             hours=hours)
    if dataset is None:
        if not photos:
            raise InvalidInputError("give photo folders to make a data set from, or --dataset DATA_YAML")
        dataset = _make_dataset(photos, work / "data", composites, per_source, min_trust, val_share, seed)
    elif photos:
        raise InvalidInputError("give either photo folders or --dataset, not both")
    if data_only:
        return
    result = train_detector(dataset, work, settings)
    out.print(f"weights: {result.weights}  card: {result.card}", highlight=False)
    out.print("on the held-out val split: " + ", ".join(f"{k} {v}" for k, v in result.metrics.items()), highlight=False)


def _make_dataset(photos: list[Path], root: Path, composites: int, per_source: int | None, min_trust: float,
                  val_share: float, seed: int) -> Path:
    from training.detector_dataset import build_dataset

    for folder in photos:
        if not folder.is_dir():
            raise InvalidInputError(f"not a folder: {folder}")
    settings = common.settings()
    stages = eval_stages(settings)  # teacher masks persist in <data>/eval, so a second run is cheap
    if stages.remover is None:
        raise InvalidInputError("the detector's training data needs the background-removal stage (the teacher); "
                                "run `skulens models fetch` and enable background removal")
    bar, update = progress_bar()
    with bar:
        summary = build_dataset(photos, stages.remover, settings.images, root, composites, seed=seed,
                                val_share=val_share, min_trust=min_trust, per_source=per_source, progress=update)
    for src in summary.sources:
        out.print(f"{src.folder}: {src.credible} of {src.images} teacher masks credible "
                  f"({src.credible_share:.0%}) -> {'used' if src.trusted else 'not trusted: backgrounds only'}",
                  highlight=False)
    out.print(json.dumps({"images": summary.images, "boxes": summary.boxes}), highlight=False)
    return root / "data.yaml"


@app.command("eval")
def evaluate(
    weights: Annotated[Path, typer.Argument(help="the trained weights (WORK/detector.pt)")],
    dataset: Annotated[Path, typer.Argument(help="the data set folder it was trained from (WORK/data)")],
    imgsz: Annotated[int, typer.Option(min=32, help="input size to detect at")] = 320,
    limit: Annotated[Optional[int], typer.Option(min=1, help="at most this many images of each kind")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write every number here")] = None,
    benchmarks: Annotated[Optional[Path], typer.Option(help="update the detector section of this BENCHMARKS.md")] = None,
) -> None:
    """Measure a trained detector on the held-out (val) part of its data set: AP and recall at IoU 0.5 on composites, IoU with the teacher on real photos, and detection time per photo on this machine."""
    from evaluation import detector_eval as de
    from evaluation.benchmarks_md import update_section

    if not (dataset / "images" / "val").is_dir():
        raise InvalidInputError(f"no val images in {dataset} (expected the folder `skulens detector train` made)")
    res = _measure(weights, dataset, imgsz, limit)
    if json_out:
        json_out.write_text(json.dumps(res, indent=2))
    md = de.detector_markdown(res)
    out.print(md, highlight=False, markup=False)
    if benchmarks:
        update_section(benchmarks, "detector", "Product detector: held-out composites, teacher agreement, speed", md)
        out.print(f"updated {benchmarks}", highlight=False)


def _measure(weights: Path, dataset: Path, imgsz: int, limit: int | None) -> dict:
    """Every number of ``detector eval``: composites scored at a low confidence, the teacher agreement
    and the speed as the pipeline runs the detector, and the weights' card."""
    from PIL import Image

    from evaluation import detector_eval as de
    from pipeline.build import make_yolo_detector

    settings = common.settings()
    base = settings.detector.model_copy(update={"weights": weights, "image_size": imgsz})
    scoring = make_yolo_detector(base.model_copy(update={"confidence": 0.01, "max_boxes": 100,
                                                         "min_area_fraction": 0.0, "expand": 0.0}), settings.models)
    product = make_yolo_detector(base.model_copy(update={"expand": 0.0}), settings.models)  # as the pipeline runs it
    bar, update = progress_bar()
    with bar:
        comp = de.composite_scores(scoring.detect, dataset, limit, update)
        teacher = de.teacher_agreement(product.detect, dataset, limit, update)
    photos = (de._images(dataset, composites=False) or de._images(dataset, composites=True))[: min(limit or 100, 100)]
    speed = de.detection_speed(product.detect, [np.asarray(Image.open(p).convert("RGB")) for p in photos])
    card_file = weights.with_suffix(".json")
    card = json.loads(card_file.read_text()) if card_file.is_file() else {}
    return {"weights": str(weights), "image_size": imgsz, "composites": comp, "teacher": teacher, "speed": speed,
            "card": card}
