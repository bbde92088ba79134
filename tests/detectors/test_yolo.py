"""YOLO detector: the Results -> Box adapter on real ultralytics Results, and an untrained model run offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ultralytics.engine.results import Results

from core.errors import ModelNotFoundError, SkulensError
from core.protocols import Detector
from core.settings import DetectorSettings, ModelSettings, Settings
from core.types import Box
from detectors.mask import MaskDetector
from detectors.yolo import YoloDetector, boxes_from_results
from pipeline.build import build_stages
from tests.conftest import product_image

W, H = 200, 100
NAMES = {0: "product", 1: "bottle"}
EXACT = DetectorSettings(expand=0.0, min_area_fraction=0.01, max_boxes=10)


def results(rows: list[list[float]], masks: torch.Tensor | None = None) -> Results:
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return Results(np.zeros((H, W, 3), np.uint8), path="x", names=NAMES, boxes=boxes, masks=masks)


def coords(box: Box) -> tuple[float, float, float, float]:
    return (box.x1, box.y1, box.x2, box.y2)


def test_sorted_by_confidence_with_labels_from_names() -> None:
    rows = [[10, 10, 50, 50, 0.5, 0], [20, 20, 80, 60, 0.9, 1], [100, 10, 150, 90, 0.7, 0]]
    boxes = boxes_from_results(results(rows), EXACT, W, H)
    assert [b.score for b in boxes] == pytest.approx([0.9, 0.7, 0.5])
    assert [b.label for b in boxes] == ["bottle", "product", "product"]
    assert coords(boxes[0]) == pytest.approx((20, 20, 80, 60))
    assert all(b.mask is None for b in boxes)


def test_boxes_are_clipped_to_the_image() -> None:
    [box] = boxes_from_results(results([[-20, -10, 250, 120, 0.8, 0]]), EXACT, W, H)
    assert coords(box) == pytest.approx((0, 0, W, H))


def test_boxes_are_expanded_by_the_setting() -> None:
    settings = EXACT.model_copy(update={"expand": 0.1})
    inner, edge = boxes_from_results(results([[50, 20, 150, 80, 0.9, 0], [0, 0, 40, 30, 0.8, 0]]), settings, W, H)
    assert coords(inner) == pytest.approx((40, 14, 160, 86))
    assert coords(edge) == pytest.approx((0, 0, 44, 33))


def test_min_area_fraction_drops_tiny_boxes_even_when_confident() -> None:
    rows = [[0, 0, 10, 10, 0.99, 0], [30, 30, 90, 90, 0.4, 1]]  # 100 px < 1 % of 20000 px
    boxes = boxes_from_results(results(rows), EXACT, W, H)
    assert [b.label for b in boxes] == ["bottle"]
    # a dropped box does not use up one of the max_boxes places
    only = boxes_from_results(results(rows), EXACT.model_copy(update={"max_boxes": 1}), W, H)
    assert [b.label for b in only] == ["bottle"]


def test_max_boxes_keeps_the_most_confident() -> None:
    rows = [[i * 30, 10, i * 30 + 25, 60, 0.1 + i * 0.15, 0] for i in range(5)]
    boxes = boxes_from_results(results(rows), EXACT.model_copy(update={"max_boxes": 2}), W, H)
    assert [b.score for b in boxes] == pytest.approx([0.7, 0.55])


def test_no_boxes() -> None:
    assert boxes_from_results(results([]), EXACT, W, H) == []
    empty = Results(np.zeros((H, W, 3), np.uint8), path="x", names=NAMES)
    assert boxes_from_results(empty, EXACT, W, H) == []


def test_masks_are_resized_and_cropped_to_each_box() -> None:
    rows = [[10, 10, 50, 50, 0.5, 0], [60.5, 20.2, 150, 90.7, 0.9, 1]]
    masks = torch.stack([torch.ones((32, 64)), torch.zeros((32, 64))])  # model resolution, not the image's
    settings = EXACT.model_copy(update={"expand": 0.05})
    first, second = boxes_from_results(results(rows, masks), settings, W, H)
    for box in (first, second):
        x1, y1, x2, y2 = box.as_int()
        assert box.mask is not None and box.mask.shape == (y2 - y1, x2 - x1)
    assert float(first.mask.alpha.max()) == 0.0  # the 0.9 box is row 1: the zero mask
    assert float(second.mask.alpha.min()) == 1.0


# --- the real ultralytics model (untrained, built offline) -----------------------------


@pytest.fixture(scope="module")
def yolo_weights(tmp_path_factory) -> dict[str, Path]:
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("yolo")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)  # whatever ultralytics writes next to itself lands here, not in the repo
        for name in ("yolov8n", "yolov8n-seg"):
            YOLO(f"{name}.yaml").save(folder / f"{name}.pt")
            out[name] = folder / f"{name}.pt"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov8n", "yolov8n-seg"])
def test_untrained_yolo_detects_boxes_inside_the_image(yolo_weights, name: str, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = DetectorSettings(weights=yolo_weights[name], confidence=0.0001, max_boxes=50, min_area_fraction=0.0)
    detector = YoloDetector(settings, ModelSettings(device="cpu"))
    assert isinstance(detector, Detector)
    image = product_image((30, 60, 200), "ARLA", "box", size=240)[:, :200]
    boxes = detector.detect(image)
    assert isinstance(boxes, list) and len(boxes) <= 50
    for box in boxes:
        assert isinstance(box, Box)
        assert 0 <= box.x1 < box.x2 <= 200 and 0 <= box.y1 < box.y2 <= 240
        if name.endswith("-seg"):
            x1, y1, x2, y2 = box.as_int()
            assert box.mask is not None and box.mask.shape == (y2 - y1, x2 - x1)
    assert list(tmp_path.iterdir()) == []


def test_missing_weights_file(tmp_path: Path) -> None:
    detector = YoloDetector(DetectorSettings(weights=tmp_path / "nope.pt"), ModelSettings())
    with pytest.raises(ModelNotFoundError, match="nope.pt"):
        detector.detect(np.zeros((32, 32, 3), np.uint8))


def test_no_weights_setting() -> None:
    with pytest.raises(ModelNotFoundError, match="SKULENS_DETECTOR__WEIGHTS"):
        YoloDetector(DetectorSettings(weights=None), ModelSettings())


@pytest.mark.slow
def test_garbage_weights_file_is_a_skulens_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch checkpoint" * 10)
    detector = YoloDetector(DetectorSettings(weights=garbage), ModelSettings(device="cpu"))
    with pytest.raises(SkulensError, match="cannot load YOLO weights"):
        detector.warmup()


@pytest.mark.parametrize(("backend", "weights", "expected"), [
    ("auto", "y.pt", YoloDetector), ("auto", None, MaskDetector), ("mask", "y.pt", MaskDetector),
    ("yolo", "y.pt", YoloDetector), ("none", "y.pt", type(None)),
])
def test_build_stages_picks_the_detector(settings: Settings, tmp_path: Path, backend, weights, expected,
                                        monkeypatch) -> None:
    import pipeline.build as build

    monkeypatch.setattr(build, "SHIPPED_DETECTOR", tmp_path / "not-shipped.pt")  # (the shipped default: below)
    det = DetectorSettings(backend=backend, weights=tmp_path / weights if weights else None)
    stages = build_stages(settings.model_copy(update={"detector": det}))
    assert type(stages.detector) is expected
    if expected is MaskDetector:
        assert stages.detector.remover is not None


def test_the_name_changes_when_the_weights_file_does(tmp_path: Path) -> None:
    """Feature caches key on the detector's name: new weights under the same path must not reuse them."""
    import os

    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    det = YoloDetector(DetectorSettings(weights=weights), ModelSettings())
    first = det.name
    weights.write_bytes(b"other bytes")
    os.utime(weights, ns=(1, 2))
    assert det.name != first and det.name.startswith("yolo:")


def test_the_shipped_detector_is_the_default_and_named_weights_override_it(settings: Settings, tmp_path: Path,
                                                                           monkeypatch) -> None:
    import pipeline.build as build

    shipped = tmp_path / "shipped.pt"
    monkeypatch.setattr(build, "SHIPPED_DETECTOR", shipped)
    assert type(build_stages(settings).detector) is MaskDetector  # nothing shipped: the mask fallback
    shipped.write_bytes(b"weights")
    det = build_stages(settings).detector
    assert type(det) is YoloDetector and det.settings.weights == shipped
    mine = tmp_path / "mine.pt"
    own = build_stages(settings.model_copy(update={"detector": DetectorSettings(weights=mine)})).detector
    assert own.settings.weights == mine
    masked = build_stages(settings.model_copy(update={"detector": DetectorSettings(backend="mask")})).detector
    assert type(masked) is MaskDetector


@pytest.mark.slow
def test_untrained_weights_run_at_640_unless_told(yolo_weights) -> None:
    """(Trained weights run at their training size: tests/detectors/test_training_data.py.)"""
    det = YoloDetector(DetectorSettings(weights=yolo_weights["yolov8n"]), ModelSettings())
    det.detect(np.zeros((64, 64, 3), np.uint8))
    assert det._image_size == 640
    fixed = YoloDetector(DetectorSettings(weights=yolo_weights["yolov8n"], image_size=96), ModelSettings())
    fixed.detect(np.zeros((64, 64, 3), np.uint8))
    assert fixed._image_size == 96


@pytest.mark.slow
def test_detection_leaves_torch_its_threads_and_says_whether_it_segments(yolo_weights) -> None:
    """ultralytics' first CPU prediction sets torch to one thread fewer than the cores, for the
    whole process (the embedder too); the detector gives them back."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        seg = YoloDetector(DetectorSettings(weights=yolo_weights["yolov8n-seg"]), ModelSettings(device="cpu"))
        seg.detect(np.zeros((64, 64, 3), np.uint8))
        assert torch.get_num_threads() == 2
        assert seg.own_masks
        assert not YoloDetector(DetectorSettings(weights=yolo_weights["yolov8n"]), ModelSettings()).own_masks
    finally:
        torch.set_num_threads(before)


def test_masks_are_read_through_the_letterbox_pads() -> None:
    """A 200x100 photo runs as 64x32 content centred in a 64x48 input (8 px pads above and below):
    the box's mask must come from the content, not from a stretch of the padded frame."""
    mask = torch.zeros((1, 48, 64))
    mask[0, 8 + 8:8 + 24, 16:48] = 1.0  # the photo's pixels x 50..150, y 25..75
    (box,) = boxes_from_results(results([[25, 0, 175, 100, 0.9, 0]], mask), EXACT, W, H)
    alpha = box.mask.alpha
    assert alpha.shape == (100, 150)
    assert alpha[30:70, 30:120].min() > 0.9  # inside: x 55..145, y 30..70
    assert alpha[:20].max() < 0.1 and alpha[80:].max() < 0.1 and alpha[:, :20].max() < 0.1
