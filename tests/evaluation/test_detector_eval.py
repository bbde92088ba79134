"""Detector metrics: matching at IoU 0.5, average precision, YOLO label reading."""

from __future__ import annotations

import numpy as np
import pytest

from core.types import Box, Mask
from evaluation.detector_eval import (
    average_precision,
    box_mask_iou,
    detector_markdown,
    match,
    read_labels,
    read_polygon_mask,
    teacher_agreement,
)


def box(x1, y1, x2, y2, score=1.0) -> Box:
    return Box(x1, y1, x2, y2, score, "product")


def test_matching_is_greedy_by_score_and_one_to_one():
    truth = [box(0, 0, 10, 10), box(20, 20, 30, 30)]
    pred = [box(0, 0, 10, 10, 0.9), box(1, 1, 10, 10, 0.8), box(20, 20, 30, 31, 0.7), box(50, 50, 60, 60, 0.95)]
    assert match(pred, truth) == [(0.95, False), (0.9, True), (0.8, False), (0.7, True)]


def test_average_precision_of_perfect_ranked_and_empty_detections():
    assert average_precision([(0.9, True), (0.8, True)], 2) == pytest.approx(1.0)
    assert average_precision([(0.9, False), (0.8, True)], 1) == pytest.approx(0.5)
    assert average_precision([(0.9, True)], 2) == pytest.approx(0.5)  # half the boxes never found
    assert average_precision([], 3) == 0.0 and average_precision([(0.5, False)], 0) == 0.0


def test_yolo_labels_become_pixel_boxes(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("0 0.5 0.5 0.5 0.25\nbad line\n")
    (b,) = read_labels(f, 200, 100)
    assert (b.x1, b.y1, b.x2, b.y2) == (50, 37.5, 150, 62.5)
    assert read_labels(tmp_path / "missing.txt", 10, 10) == []


def test_markdown_has_every_number():
    md = detector_markdown({"weights": "w.pt", "image_size": 320,
                            "composites": {"images": 5, "boxes": 9, "ap50": 0.81, "recall50": 0.9},
                            "teacher": {"photos": 7, "mean_iou": 0.7, "iou_at_least_0.5": 0.85, "no_box": 0.0},
                            "speed": {"photos": 7, "p50_ms": 30.1, "p95_ms": 41.0}, "card": {}})
    assert "| 0.81 |" in md and "| 0.9 |" in md and "30.1 / 41.0 ms" in md and "| 0.85 |" in md


def test_polygon_labels_become_boxes_and_filled_outlines(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("0 0.25 0.2 0.75 0.2 0.75 0.6 0.25 0.6\n")
    (b,) = read_labels(f, 200, 100)
    assert (b.x1, b.y1, b.x2, b.y2) == pytest.approx((50, 20, 150, 60))
    outline = read_polygon_mask(f, 200, 100)
    assert outline.shape == (100, 200) and abs(outline.sum() - 100 * 40) < 300
    (tmp_path / "box.txt").write_text("0 0.5 0.5 0.5 0.25\n")
    assert read_polygon_mask(tmp_path / "box.txt", 200, 100) is None


def test_box_mask_iou_places_the_mask_in_the_photo():
    truth = np.zeros((100, 200), bool)
    truth[20:60, 50:150] = True
    full = Box(50, 20, 150, 60, 0.9, "product", Mask(np.ones((40, 100), np.float32)))
    assert box_mask_iou(full, truth) == pytest.approx(1.0)
    left = np.zeros((40, 100), np.float32)
    left[:, :50] = 1.0
    assert box_mask_iou(Box(50, 20, 150, 60, 0.9, "product", Mask(left)), truth) == pytest.approx(0.5)
    assert box_mask_iou(Box(50, 20, 150, 60, 0.9, "product"), truth) is None


def test_teacher_agreement_scores_boxes_and_masks(tmp_path):
    from PIL import Image

    for d in ("images/val", "labels/val"):
        (tmp_path / d).mkdir(parents=True)
    for name in ("photo-a", "photo-b"):
        Image.new("RGB", (200, 100)).save(tmp_path / "images" / "val" / f"{name}.jpg")
        (tmp_path / "labels" / "val" / f"{name}.txt").write_text("0 0.25 0.2 0.75 0.2 0.75 0.6 0.25 0.6\n")
    hit = Box(50, 20, 150, 60, 0.9, "product", Mask(np.ones((40, 100), np.float32)))
    calls = iter([[hit], []])  # found in the first photo, nothing in the second
    res = teacher_agreement(lambda image: next(calls), tmp_path)
    assert res["photos"] == 2 and res["no_box"] == 0.5
    assert res["mean_iou"] == pytest.approx(0.5, abs=0.02) and res["mean_mask_iou"] == pytest.approx(0.5, abs=0.02)
