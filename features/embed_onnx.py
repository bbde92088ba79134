"""The embedder's ONNX form: export from torch, static int8 quantisation, onnxruntime sessions.

Each ``.onnx`` file has a ``.json`` sidecar naming the checksum of the torch weights it came
from, so a stale export (weights retrained since) is never used.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from core.errors import InvalidInputError, MissingDependencyError
from core.models import read_sidecar, sha256_file
from core.naming import NATIVE_INPUT_SIZE as INPUT_SIZE

log = logging.getLogger(__name__)

OPSET = 17


def export(module, size: int, dest: Path, source_sha256: str) -> Path:
    """Write ``module`` (``x -> (vector, probs)``) as ONNX with a dynamic batch axis."""
    import torch

    try:
        import onnx  # noqa: F401 - torch's exporter needs it
    except ImportError as exc:
        raise MissingDependencyError("exporting to ONNX needs the onnx package: `pip install onnx`") from exc
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    x = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and shape notices
        torch.onnx.export(module.cpu().eval(), (x,), str(tmp), input_names=["image"],
                          output_names=["vector", "probs"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"image": {0: "n"}, "vector": {0: "n"}, "probs": {0: "n"}})
    os.replace(tmp, dest)
    _write_sidecar(dest, source_sha256, "float32", size)
    log.info("exported %s", dest)
    return dest


def quantize_int8(src: Path, dest: Path, source_sha256: str, calibration: list[np.ndarray],
                  size: int = INPUT_SIZE) -> Path:
    """Static int8 quantisation of an exported model: 8-bit weights per output channel, uint8
    activations with ranges measured on ``calibration`` (catalogue images already preprocessed for
    ``size``-pixel inputs, one (1, 3, size, size) batch each; QDQ format, onnxruntime's quantiser).
    EfficientNet-Lite was designed to survive this (ReLU6, no squeeze-excitation).  The weights are
    signed (int8) where the CPU has VNNI; on x86 CPUs without it (AVX2 alone) onnxruntime's
    uint8 x int8 kernels saturate, so the weights are unsigned there (:func:`weights_unsigned`)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    check_calibration(calibration)
    unsigned = weights_unsigned()

    class _Images(CalibrationDataReader):
        def __init__(self) -> None:
            self._left = iter(calibration)

        def get_next(self):
            image = next(self._left, None)
            return None if image is None else {"image": image}

    dest = Path(dest)
    prepared, tmp = dest.with_name(dest.name + ".pre"), dest.with_name(dest.name + ".part")
    try:
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(tmp), _Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QUInt8 if unsigned else QuantType.QInt8)
        os.replace(tmp, dest)
    finally:
        prepared.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    weights = "uint8 per-channel weights (no VNNI on this CPU)" if unsigned else "per-channel weights"
    _write_sidecar(dest, source_sha256, f"int8 static ({weights}; activations calibrated on "
                                        f"{len(calibration)} catalogue images)", size, sha256=sha256_file(dest))
    log.info("quantised %s", dest)
    return dest


def weights_unsigned(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether int8 models made here should hold unsigned weights: on an x86 CPU without VNNI
    instructions, onnxruntime's uint8-activation x int8-weight kernels can saturate (measured here on
    an AVX2-only CPU: int8 embeddings at cosine 0.88 from the float ones, 0.9+ with uint8 weights)."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "").split()
    except OSError:
        return False  # not Linux: onnxruntime's defaults
    return "avx2" in flags and not {"avx512_vnni", "avx_vnni"} & set(flags)


def quantize_dynamic_int8(src: Path, dest: Path) -> Path:
    """onnxruntime's dynamic quantisation of an exported model: int8 weights, activations quantised
    on every call.  Not a runtime here (it is slower than float on this network and loses quality);
    ``embedder bench`` measures it for comparison."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    dest = Path(dest)
    prepared = dest.with_name(dest.name + ".pre")
    try:
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(dest), weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)
    return dest


def check_calibration(calibration: list[np.ndarray]) -> None:
    if not calibration:
        raise InvalidInputError("int8 quantisation measures activation ranges on catalogue images; there are none: "
                                "index a catalogue first")


def _write_sidecar(onnx: Path, source_sha256: str, precision: str, size: int, **extra) -> None:
    onnx.with_suffix(".json").write_text(json.dumps(
        {"source_sha256": source_sha256, "opset": OPSET, "precision": precision, "input_size": size, **extra},
        indent=2))


def open_session(path: Path, device: str, threads: int = 0):
    """An onnxruntime session on the GPU when the device is CUDA and the runtime has it, else the CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            log.warning("onnxruntime has no CUDA provider here; the embedder runs on the CPU")
    return ort.InferenceSession(str(path), opts, providers=providers)


def onnx_sidecar_ok(onnx: Path, source_sha256: str, size: int = INPUT_SIZE) -> bool:
    """Whether ``onnx`` was exported from the weights with this checksum for ``size``-pixel inputs
    (its ``.json`` sidecar says so; sidecars from before the input size was recorded are 260 px)."""
    found = read_sidecar(onnx)
    if found is None:
        return False
    return found.get("source_sha256") == source_sha256 and found.get("input_size", INPUT_SIZE) == size
