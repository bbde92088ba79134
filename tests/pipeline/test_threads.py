"""``models.threads`` holds every model of a process to that many CPU threads (several workers or
replicas on one machine share its cores instead of each spinning a pool per core). Checked in a
process of its own: the setting is process-wide, and pytest's process keeps its own threads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import torch, cv2
from core.settings import ModelSettings, Settings
from pipeline.build import build_stages
from tests.conftest import product_image

torch.set_num_threads(2)
stages = build_stages(Settings(models=ModelSettings(threads=int(sys.argv[1]))))
image = product_image((200, 20, 20), "APPLE", "ellipse", size=320)
boxes = stages.detector.detect(image)
mask = stages.remover.remove(image)
words = stages.reader.read(image)
vectors, tags = stages.embedder.embed([image])
yolo = stages.detector._model.predictor.model.backend.session
ocr = stages.reader._engine
json.dump({
    "torch": torch.get_num_threads(), "cv2": cv2.getNumThreads(),
    "yolo": yolo.get_session_options().intra_op_num_threads,
    "isnet": stages.remover._session.inner_session.get_session_options().intra_op_num_threads,
    "ocr": [s.session.session.get_session_options().intra_op_num_threads for s in (ocr.text_det, ocr.text_rec)],
    "embedder_runtime": stages.embedder.runtime,
    "boxes": len(boxes), "mask": float(mask.alpha.mean()), "vectors": list(vectors.shape),
}, sys.stdout)
"""


def probe(threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(threads)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.mark.slow
def test_one_thread_holds_every_model_of_the_process() -> None:
    held = probe(1)
    assert held["torch"] == 1 and held["cv2"] == 1
    assert held["yolo"] == 1, "the detector's onnxruntime session"
    assert held["isnet"] == 1 and held["ocr"] == [1, 1]
    assert held["boxes"] >= 1 and 0.05 < held["mask"] < 0.95 and held["vectors"][0] == 1  # and the models still work


@pytest.mark.slow
def test_by_default_each_onnxruntime_session_takes_half_the_cores() -> None:
    """A process analyses two images at once; torch is left as it was."""
    import os

    half = max(1, len(os.sched_getaffinity(0)) // 2)
    held = probe(0)
    assert held["yolo"] == held["isnet"] == half and held["ocr"] == [half, half]
    assert held["torch"] == 2
    assert held["boxes"] >= 1 and held["vectors"][0] == 1


def test_onnx_threads_is_the_setting_else_half_the_cores() -> None:
    import os

    from core.devices import onnx_threads

    assert onnx_threads(3) == 3
    assert onnx_threads(0) == max(1, len(os.sched_getaffinity(0)) // 2)
