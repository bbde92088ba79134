"""The embedder's ONNX form: export from torch, dynamic int8 quantisation, onnxruntime sessions.

Each ``.onnx`` file has a ``.json`` sidecar naming the checksum of the torch weights it came
from, so a stale export (weights retrained since) is never used.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from pipeline.errors import MissingDependencyError

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
    _write_sidecar(dest, source_sha256, "float32")
    log.info("exported %s", dest)
    return dest


def quantize_int8(src: Path, dest: Path, source_sha256: str) -> Path:
    """Dynamic int8 quantisation of an exported model (weights int8, activations quantised per run)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = Path(dest).with_name(Path(dest).name + ".part")
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QUInt8)
    os.replace(tmp, dest)
    _write_sidecar(Path(dest), source_sha256, "int8 dynamic")
    log.info("quantised %s", dest)
    return Path(dest)


def _write_sidecar(onnx: Path, source_sha256: str, precision: str) -> None:
    onnx.with_suffix(".json").write_text(json.dumps(
        {"source_sha256": source_sha256, "opset": OPSET, "precision": precision}, indent=2))


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


def export_embedder(trained, models, int8: bool = False) -> list[Path]:
    """Export an embedder (ImageNet's when ``trained`` is None) to ONNX, and quantise it with ``int8``."""
    from features.embed_efficientnet import INPUT_SIZE, embedding_module, load_network, onnx_file, source_sha256

    source = source_sha256(trained)
    fp32 = export(embedding_module(load_network(trained, models)), INPUT_SIZE, onnx_file(trained, models), source)
    paths = [fp32]
    if int8:
        paths.append(quantize_int8(fp32, onnx_file(trained, models, int8=True), source))
    return paths


def ensure_exported(trained, models) -> Path | None:
    """Export the embedder to ONNX unless a current export is there; the new file's path, else None."""
    from features.embed_efficientnet import onnx_file, source_sha256
    from pipeline.embedder_files import onnx_sidecar_ok

    if onnx_sidecar_ok(onnx_file(trained, models), source_sha256(trained)):
        return None
    return export_embedder(trained, models)[0]
