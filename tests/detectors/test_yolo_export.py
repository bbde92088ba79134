"""The detector's ONNX form: exported once into the model cache, run by onnxruntime with the boxes
and masks torch gives, never used when it was made from other weights or for another size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelNotFoundError, SkulensError
from core.settings import DetectorSettings, ModelSettings
from detectors.yolo import YoloDetector
from detectors.yolo_export import current_export, export_detector, onnx_path
from pipeline.build import SHIPPED_DETECTOR
from tests.conftest import product_image


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[ModelSettings, Path]:
    models = ModelSettings(cache_dir=tmp_path_factory.mktemp("models"), device="cpu")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cwd"))  # nothing ultralytics writes lands in the repo
        path = export_detector(SHIPPED_DETECTOR, models)
    return models, path


def _detector(models: ModelSettings, runtime: str, weights: Path = SHIPPED_DETECTOR) -> YoloDetector:
    return YoloDetector(DetectorSettings(weights=weights, runtime=runtime), models)  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_export_lands_in_the_model_cache_with_its_sidecar(exported) -> None:
    models, path = exported
    assert path == onnx_path(SHIPPED_DETECTOR, models) and path.parent == models.cache_dir
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["input_size"] == 320 and meta["task"] == "segment"  # the size the card's training used
    assert not list(SHIPPED_DETECTOR.parent.glob("*.onnx")), "the source tree gets no file"
    assert [p.name for p in models.cache_dir.iterdir()] and not [p for p in models.cache_dir.iterdir() if p.is_dir()]
    before = path.stat().st_mtime_ns
    assert export_detector(SHIPPED_DETECTOR, models) == path and path.stat().st_mtime_ns == before  # current: kept


@pytest.mark.slow
def test_onnxruntime_finds_the_boxes_and_masks_torch_finds(exported) -> None:
    models, _ = exported
    onnx, torch = _detector(models, "auto"), _detector(models, "torch")
    assert onnx.runtime == "onnx" and torch.runtime == "torch"
    assert onnx.name != torch.name  # features cached from one are not taken for the other's
    size = 320
    image = product_image((200, 20, 20), "APPLE", "ellipse", size=size)
    a, b = onnx.detect(image), torch.detect(image)
    assert a and len(a) == len(b)
    for x, y in zip(a, b):
        assert np.abs(np.subtract((x.x1, x.y1, x.x2, x.y2), (y.x1, y.y1, y.x2, y.y2))).max() < 3
        assert abs(x.score - y.score) < 0.05
        assert x.mask is not None and y.mask is not None and x.mask.shape == y.mask.shape
        agree = (x.mask.binary(0.5) == y.mask.binary(0.5)).mean()
        assert agree > 0.97
    assert onnx.own_masks


@pytest.mark.slow
def test_an_export_of_other_weights_or_another_size_is_not_used(exported, tmp_path: Path) -> None:
    models, path = exported
    assert current_export(SHIPPED_DETECTOR, models, 320) is not None
    assert current_export(SHIPPED_DETECTOR, models, 640) is None  # made for 320 px
    other = tmp_path / SHIPPED_DETECTOR.name
    shutil.copy2(SHIPPED_DETECTOR, other)
    with other.open("ab") as fh:
        fh.write(b"\0")  # other weights under the same name
    assert current_export(other, models, None) is None
    assert _detector(models, "auto", other).runtime == "torch"
    with pytest.raises(ModelNotFoundError, match="models fetch"):
        _detector(models, "onnx", other).detect(np.zeros((64, 64, 3), np.uint8))


def test_without_an_export_auto_runs_torch_and_onnx_asks_for_one(tmp_path: Path) -> None:
    models = ModelSettings(cache_dir=tmp_path, device="cpu")
    assert _detector(models, "auto").runtime == "torch"
    with pytest.raises(ModelNotFoundError, match="skulens models fetch"):
        _ = _detector(models, "onnx").runtime


def test_only_a_pt_file_is_exported(tmp_path: Path) -> None:
    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"x")
    with pytest.raises(SkulensError, match=r"\.pt"):
        export_detector(weights, ModelSettings(cache_dir=tmp_path))
