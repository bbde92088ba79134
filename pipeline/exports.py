"""The ONNX forms of an embedder and of the detector, as the edges (the CLI) ask for them: where they
live, whether they are current, and making them.  The work is :mod:`features.embed_export`'s and
:mod:`detectors.yolo_export`'s; each is imported only when called, so importing this module loads
no model runtime."""

from __future__ import annotations

from pathlib import Path

from core.naming import NATIVE_INPUT_SIZE, TrainedEmbedder
from core.settings import ModelSettings


def onnx_path(trained: TrainedEmbedder | None, models: ModelSettings, int8: bool = False,
              size: int = NATIVE_INPUT_SIZE) -> Path:
    """Where the ONNX form of an embedder (ImageNet's when ``trained`` is None) for ``size``-pixel
    inputs lives: beside the trained weights, or in the model cache."""
    from features.embed_efficientnet import onnx_file

    return onnx_file(trained, models, int8, size)


def onnx_ready(trained: TrainedEmbedder | None, models: ModelSettings, int8: bool, size: int) -> bool:
    """Whether the (float, or int8) ONNX form for ``size``-pixel inputs is there and was exported from
    the embedder's current weights."""
    from features.embed_efficientnet import onnx_file, source_sha256
    from features.embed_onnx import onnx_sidecar_ok

    return onnx_sidecar_ok(onnx_file(trained, models, int8, size), source_sha256(trained), size)


def export_embedder(trained: TrainedEmbedder | None, models: ModelSettings, calibration: list | None = None,
                    size: int = NATIVE_INPUT_SIZE) -> list[Path]:
    """Export an embedder for ``size``-pixel inputs to ONNX; with ``calibration`` images, also its
    int8 form.  The paths written."""
    from features.embed_export import export_embedder as export

    return export(trained, models, calibration, size)


def ensure_exported(trained: TrainedEmbedder | None, models: ModelSettings,
                    size: int = NATIVE_INPUT_SIZE) -> Path | None:
    """Export the embedder to ONNX unless a current export is there; the new file's path, else None."""
    from features.embed_export import ensure_exported as ensure

    return ensure(trained, models, size)


def export_for_size(trained: TrainedEmbedder | None, models: ModelSettings, runtime: str, size: int,
                    calibration) -> list[Path]:
    """Before an embedder first runs at ``size`` pixels: the ONNX forms it has at the size it was
    trained at, made for ``size`` (the int8 one calibrated on ``calibration()``).  The paths written."""
    from features.embed_export import export_for_size as export

    return export(trained, models, runtime, size, calibration)


def detector_export(weights: Path, models: ModelSettings) -> Path:
    """Where the ONNX form of the detector's ``weights`` lives (the model cache)."""
    from detectors.yolo_export import onnx_path as path

    return path(weights, models)


def export_detector(weights: Path, models: ModelSettings, size: int | None = None) -> Path:
    """Export the detector's ``weights`` to ONNX unless a current export is there; its path."""
    from detectors.yolo_export import export_detector as export

    return export(weights, models, size)
