"""Trains an ultralytics YOLO product detector on a data set from :mod:`training.detector_dataset`.

The model starts from an architecture file that ships inside the ultralytics package
(``yolov8n.yaml`` and friends), so nothing is downloaded: no registry we can reach ships YOLO
weights.  Plots (which fetch a font) and AMP checks (which fetch weights) are off.  The result is
the best checkpoint, copied to ``out``, with a JSON card: data, settings, seed, metrics, licence.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import InvalidInputError, SkulensError

log = logging.getLogger(__name__)

LICENCE = ("AGPL-3.0 (trained with ultralytics, whose licence covers models it trains); training images: "
           "see the data set summary")


@dataclass(frozen=True)
class TrainSettings:
    model: str = "yolov8n.yaml"  # an architecture file from the ultralytics package, or a .pt to fine-tune
    epochs: int = 30
    image_size: int = 320
    batch: int = 16
    device: str = "cpu"
    seed: int = 0
    patience: int = 10
    hours: float | None = None  # stop after this long (ultralytics' ``time``), whatever the epochs

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.image_size < 32 or self.batch < 1:
            raise InvalidInputError(f"expected epochs >= 1, image size >= 32 and batch >= 1, got {self}")


@dataclass(frozen=True)
class TrainResult:
    weights: Path
    card: Path
    metrics: dict[str, float]
    seconds: float


def train_detector(data_yaml: Path, out: Path, settings: TrainSettings = TrainSettings()) -> TrainResult:
    """Train, then copy the best checkpoint to ``out/detector.pt`` and write ``out/detector.json``."""
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise InvalidInputError(f"no data set description at {data_yaml} (run the data step first)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from ultralytics import YOLO

    _use_every_core()
    t0 = time.perf_counter()
    model = YOLO(settings.model)
    try:
        model.train(data=str(data_yaml), epochs=settings.epochs, imgsz=settings.image_size, batch=settings.batch,
                    device=settings.device, seed=settings.seed, deterministic=True, patience=settings.patience,
                    **({"time": settings.hours} if settings.hours else {}),
                    plots=False, amp=False, workers=0, project=str(out / "runs"), name="train", exist_ok=True,
                    verbose=False)
    except Exception as exc:  # ultralytics raises many kinds; say which step failed
        raise SkulensError(f"detector training failed: {exc}") from exc
    seconds = time.perf_counter() - t0
    run = out / "runs" / "train"
    best = run / "weights" / "best.pt"
    if not best.is_file():
        best = run / "weights" / "last.pt"
    if not best.is_file():
        raise SkulensError(f"training finished without a checkpoint in {run / 'weights'}")
    weights = out / "detector.pt"
    shutil.copyfile(best, weights)
    metrics = last_metrics(run / "results.csv")
    card = out / "detector.json"
    card.write_text(json.dumps({
        "weights": weights.name, "trained": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(seconds, 1), "machine": f"{platform.machine()}, device {settings.device}",
        "data": str(data_yaml), "settings": asdict(settings), "metrics_on_val": metrics,
        "licence": LICENCE,
    }, indent=2))
    log.info("detector trained in %.0f s: %s", seconds, metrics)
    return TrainResult(weights, card, metrics, seconds)


def _use_every_core() -> None:
    """ultralytics trains on CPU with one thread fewer than the cores (one of two on a 2-core machine);
    with ``workers=0`` the data loading shares the main thread, so let torch use them all."""
    import os

    from ultralytics.utils import torch_utils

    torch_utils.NUM_THREADS = max(1, os.cpu_count() or 1)


def last_metrics(results_csv: Path) -> dict[str, float]:
    """mAP@0.5, mAP@0.5:0.95, precision and recall of the last epoch in ultralytics' results.csv, on
    the val split (composites and real photos), and the masks' mAPs for a segmentation model."""
    if not results_csv.is_file():
        return {}
    with results_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    row = {k.strip(): v for k, v in rows[-1].items()}
    keys = {"metrics/mAP50(B)": "map50", "metrics/mAP50-95(B)": "map50_95", "metrics/precision(B)": "precision",
            "metrics/recall(B)": "recall", "metrics/mAP50(M)": "mask_map50", "metrics/mAP50-95(M)": "mask_map50_95",
            "epoch": "epochs"}
    return {name: round(float(row[k]), 4) for k, name in keys.items() if row.get(k) not in (None, "")}
