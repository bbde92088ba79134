"""Exporting an embedder to ONNX: its float form for an input size, and its int8 form calibrated on
the catalogue's images; the ``.json`` sidecars (:mod:`features.embed_onnx`) keep stale exports out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.naming import NATIVE_INPUT_SIZE as INPUT_SIZE
from core.naming import trained_input_size
from features.embed_efficientnet import (
    embedding_module,
    load_network,
    onnx_file,
    preprocess,
    source_sha256,
)
from features.embed_onnx import (
    check_calibration,
    export,
    onnx_sidecar_ok,
    quantize_int8,
)


def export_embedder(trained, models, calibration: list[np.ndarray] | None = None,
                    size: int = INPUT_SIZE) -> list[Path]:
    """Export an embedder (ImageNet's when ``trained`` is None) for ``size``-pixel inputs to ONNX;
    with ``calibration`` images, also its int8 form."""
    if calibration is not None:
        check_calibration(calibration)  # before anything is rewritten
    source = source_sha256(trained)
    fp32 = export(embedding_module(load_network(trained, models)), size, onnx_file(trained, models, size=size), source)
    paths = [fp32]
    if calibration is not None:
        batches = [preprocess([image], size) for image in calibration]
        paths.append(quantize_int8(fp32, onnx_file(trained, models, int8=True, size=size), source, batches, size))
    return paths


def ensure_exported(trained, models, size: int = INPUT_SIZE) -> Path | None:
    """Export the embedder to ONNX unless a current export is there; the new file's path, else None."""
    if onnx_sidecar_ok(onnx_file(trained, models, size=size), source_sha256(trained), size):
        return None
    return export_embedder(trained, models, size=size)[0]


def export_for_size(trained, models, runtime: str, size: int, calibration) -> list[Path]:
    """Before an embedder first runs at ``size`` pixels (``reindex --input-size``): make the ONNX forms
    it has at the size it was trained at, so the runtime stays as fast as before; the int8 one is
    calibrated on ``calibration()`` (the catalogue's images).  The paths written ([] when nothing was
    missing, or the runtime is torch)."""
    def ready(int8: bool, at: int) -> bool:
        return onnx_sidecar_ok(onnx_file(trained, models, int8, at), source_sha256(trained), at)

    own = trained_input_size(trained)
    if size == own or runtime == "torch":
        return []
    int8 = runtime == "onnx-int8" or (runtime == "auto" and ready(True, own))
    floats = int8 or runtime == "onnx" or ready(False, own)
    if not floats or (ready(False, size) and (not int8 or ready(True, size))):
        return []
    images = calibration() if int8 else None
    return export_embedder(trained, models, images or None, size)
