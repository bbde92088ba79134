"""The detector's ONNX form: ultralytics' export of a ``.pt`` file, kept in the model cache.

onnxruntime runs the shipped YOLOv8n-seg at 320 px somewhat faster than torch on a 2-core CPU
(p50 147 ms against 170 ms, interleaved on 40 grocery photos; detection is the query path's
largest stage but OCR).  The export is made once, by ``skulens models fetch``, never
when a detector is built; its ``.json`` sidecar names the checksum of the ``.pt`` file it came
from and the input size it was made for, so an export of older weights is never used.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from core.errors import SkulensError
from core.models import read_sidecar, sha256_file
from core.settings import ModelSettings
from detectors.yolo import quiet_ultralytics

log = logging.getLogger(__name__)


def onnx_path(weights: Path, models: ModelSettings, source_sha256: str | None = None) -> Path:
    """Where the export of ``weights`` lives: the model cache, named by the weights' name and checksum."""
    digest = source_sha256 or sha256_file(weights)
    return Path(models.cache_dir).expanduser() / f"{Path(weights).stem}-{digest[:8]}.onnx"


def current_export(weights: Path, models: ModelSettings, size: int | None,
                   source_sha256: str | None = None) -> tuple[Path, dict] | None:
    """The export of these very weights for ``size``-pixel inputs (None: the size they were exported
    at, their training size) and its sidecar, else None."""
    digest = source_sha256 or sha256_file(weights)
    path = onnx_path(weights, models, digest)
    meta = read_sidecar(path)
    if meta is None or meta.get("source_sha256") != digest or (size is not None and meta.get("input_size") != size):
        return None
    return path, meta


def export_detector(weights: Path, models: ModelSettings, size: int | None = None) -> Path:
    """Export ``weights`` (an ultralytics ``.pt``) to ONNX for ``size``-pixel inputs (default: the
    size it was trained at, else 640) unless a current export is there; the export's path."""
    weights = Path(weights).expanduser()
    if weights.suffix != ".pt":
        raise SkulensError(f"only an ultralytics .pt file can be exported to ONNX, not {weights.name}")
    digest = sha256_file(weights)
    found = current_export(weights, models, size, digest)
    if found is not None:
        return found[0]
    from ultralytics import YOLO

    model = YOLO(str(weights))
    trained = (getattr(model, "overrides", None) or {}).get("imgsz")
    size = size or (trained if isinstance(trained, int) else 640)
    dest = onnx_path(weights, models, digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # ultralytics writes the export beside the .pt file: work on a copy, so that the shipped
    # weights' folder (in the source tree) gets no file
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        copy = Path(tmp) / weights.name
        shutil.copy2(weights, copy)
        with quiet_ultralytics(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notices about its TorchScript-based exporter
            made = Path(YOLO(str(copy)).export(format="onnx", imgsz=size, dynamic=False, simplify=True,
                                               device="cpu", verbose=False))
        os.replace(made, dest)
    dest.with_suffix(".json").write_text(json.dumps(
        {"source_sha256": digest, "input_size": size, "task": model.task, "precision": "float32"}, indent=2))
    log.info("exported %s", dest)
    return dest
