"""Detector training data: judging teacher masks, cut-outs, backgrounds, composites, the data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.settings import ImageLimits
from core.types import Box, Mask
from training.detector_data import compose, cut_out, judge_mask, painted_out, shuffled_tiles, synthetic_background
from training.detector_dataset import build_dataset, split_of

RNG = np.random.default_rng(7)


def rect_mask(h=200, w=300, box=(100, 50, 200, 150), value=1.0) -> Mask:
    a = np.zeros((h, w), np.float32)
    x1, y1, x2, y2 = box
    a[y1:y2, x1:x2] = value
    return Mask(a)


def test_a_clean_single_product_mask_is_credible_and_gives_its_box():
    j = judge_mask(rect_mask())
    assert j.credible and (j.box.x1, j.box.y1, j.box.x2, j.box.y2, j.box.label) == (100, 50, 200, 150, "product")


@pytest.mark.parametrize("mask,code", [
    (rect_mask(box=(0, 0, 300, 200)), "cover"),  # everything is foreground
    (rect_mask(box=(140, 90, 150, 100)), "cover"),  # a speck
    (Mask(np.maximum(rect_mask(box=(10, 10, 120, 190)).alpha, rect_mask(box=(180, 10, 290, 190)).alpha)), "pieces"),
    (rect_mask(value=0.6), "unsure"),
    (rect_mask(box=(0, 0, 300, 120)), "edges"),  # cut by the top, left and right edges
])
def test_masks_the_teacher_gets_wrong_are_turned_down(mask, code):
    j = judge_mask(mask)
    assert not j.credible and j.code == code and j.box is None


def test_cut_out_painted_out_and_tiles():
    img = np.full((200, 300, 3), 240, np.uint8)
    img[50:150, 100:200] = (200, 30, 30)
    mask = rect_mask()
    cut = cut_out(img, mask, judge_mask(mask).box, "x")
    assert cut.rgb.shape == (100, 100, 3) and cut.alpha.min() == 1.0
    bg = painted_out(img, mask)
    assert bg.shape == img.shape and np.abs(bg[100, 150].astype(int) - 240).max() < 30  # the red square is gone
    tiles = shuffled_tiles(img, RNG)
    assert tiles.shape[2] == 3 and abs(float(tiles.mean()) - float(img.mean())) < 10


def test_composite_boxes_are_exact_and_hidden_products_lose_theirs():
    square = cut_out(np.full((50, 50, 3), 200, np.uint8), Mask(np.ones((50, 50), np.float32)), Box(0, 0, 50, 50), "s")
    bg = synthetic_background(256, RNG)
    for _ in range(10):
        comp = compose(bg, [square], 256, np.random.default_rng(int(RNG.integers(1 << 30))))
        (box,) = comp.boxes
        visible = comp.masks[0] >= 0.5
        ys, xs = np.nonzero(visible)
        assert (box.x1, box.y1, box.x2, box.y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert 0 <= box.x1 < box.x2 <= 256 and 0 <= box.y1 < box.y2 <= 256
    # the same product pasted twice at the same place and size: the first is hidden, one box remains
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    one = compose(bg, [square], 256, rng_a)
    two = compose(bg, [square, square], 256, rng_b)
    assert len(one.boxes) == 1 and len(two.boxes) in (1, 2)
    assert all(m.shape == (256, 256) for m in two.masks)


def test_split_is_stable_and_near_the_share():
    paths = [f"/photos/{i}.jpg" for i in range(2000)]
    val = [p for p in paths if split_of(p, 0.15) == "val"]
    assert 0.12 < len(val) / len(paths) < 0.18
    assert val == [p for p in paths if split_of(p, 0.15) == "val"]


class _KnownMasks:
    """A stand-in teacher (this tests the data set code, not the teacher): the product is the
    non-white part of the image, or nothing credible for 'bad' images."""

    def remove(self, image: np.ndarray) -> Mask:
        if image[0, 0, 0] == 10:  # a 'bad' photo: the teacher keeps fragments
            a = np.zeros(image.shape[:2], np.float32)
            a[::8, ::8] = 1.0
            return Mask(a)
        return Mask((image.min(axis=2) < 200).astype(np.float32))


def _photos(folder: Path, n: int, bad: bool) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        img = np.full((120, 160, 3), 250, np.uint8)
        if bad:
            img[0, 0] = 10
        x = 20 + 7 * i
        img[30:90, x:x + 50] = (30 + 20 * i, 120, 200 - 10 * i)
        Image.fromarray(img).save(folder / f"p{i}.png")
    return folder


def test_the_data_set_trusts_the_teacher_per_source(tmp_path):
    good = _photos(tmp_path / "catalogue", 8, bad=False)
    shelf = _photos(tmp_path / "shelf", 6, bad=True)
    (shelf / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "ds"
    summary = build_dataset([good, shelf], _KnownMasks(), ImageLimits(), out, composites=10, image_size=128, seed=1)
    by_folder = {Path(s.folder).name: s for s in summary.sources}
    assert by_folder["catalogue"].trusted and by_folder["catalogue"].credible == 8
    assert not by_folder["shelf"].trusted and by_folder["shelf"].unreadable == 1
    pseudo = sorted(p.name for p in (out / "images").rglob("*.jpg") if not p.name.startswith("composite"))
    assert pseudo and all(name.startswith("catalogue-") for name in pseudo)  # nothing from the untrusted shelf
    assert summary.images["train"]["composite"] + summary.images["val"]["composite"] == 10
    for label in (out / "labels").rglob("*.txt"):
        for line in label.read_text().splitlines():
            cls, *values = line.split()  # a product's outline (segmentation format), or its box
            assert cls == "0" and (len(values) == 4 or (len(values) >= 6 and len(values) % 2 == 0))
            assert all(0 <= float(v) <= 1 for v in values)
    assert "names:\n  0: product" in (out / "data.yaml").read_text()
    assert (out / "summary.json").is_file()


@pytest.mark.slow
def test_one_epoch_on_a_handful_of_generated_images_gives_weights_our_detector_loads(tmp_path):
    """The training command's path end to end, tiny: a data set, one epoch, the checkpoint loads
    in the detection stage and predicts (boxes from an untrained model may be empty)."""
    from core.settings import DetectorSettings, ModelSettings
    from detectors.yolo import YoloDetector
    from training.detector import TrainSettings, train_detector

    good = _photos(tmp_path / "catalogue", 8, bad=False)
    summary = build_dataset([good], _KnownMasks(), ImageLimits(), tmp_path / "ds", composites=12, image_size=96, seed=2)
    assert summary.images["train"]["composite"] > 0
    result = train_detector(tmp_path / "ds" / "data.yaml", tmp_path / "run",
                            TrainSettings(epochs=1, image_size=64, batch=4))
    assert result.weights.is_file() and result.card.is_file() and result.metrics.get("epochs") == 1
    detector = YoloDetector(DetectorSettings(weights=result.weights), ModelSettings())
    boxes = detector.detect(np.asarray(Image.open(good / "p0.png").convert("RGB")))
    assert detector._image_size == 64  # the size it was trained at
    assert isinstance(boxes, list) and all(0 <= b.x1 < b.x2 <= 160 for b in boxes)


def test_label_outlines_give_back_the_products_box(tmp_path):
    from evaluation.detector_eval import read_labels
    from training.detector_dataset import _write, outline

    alpha = np.zeros((100, 160), np.float32)
    alpha[20:70, 30:90] = 1.0
    poly = outline(alpha)
    assert poly is not None and len(poly) >= 4
    for sub in ("images/val", "labels/val"):
        (tmp_path / sub).mkdir(parents=True)
    box = Box(30, 20, 90, 70, 1.0, "product")
    _write(np.zeros((100, 160, 3), np.uint8), (box,), (alpha,), tmp_path, "val", "x")
    (back,) = read_labels(tmp_path / "labels" / "val" / "x.txt", 160, 100)
    assert back.iou(box) > 0.95
    assert outline(np.zeros((10, 10), np.float32)) is None


def test_no_trusted_folder_is_a_clear_error_and_a_rerun_replaces_old_files(tmp_path):
    from core.errors import InvalidInputError

    shelf = _photos(tmp_path / "shelf", 4, bad=True)
    out = tmp_path / "ds"
    (out / "images" / "train").mkdir(parents=True)
    (out / "images" / "train" / "stale.jpg").write_bytes(b"old")
    with pytest.raises(InvalidInputError, match="no folder gave products the teacher can be trusted with"):
        build_dataset([shelf], _KnownMasks(), ImageLimits(), out, composites=4, image_size=96)
    assert not (out / "images" / "train" / "stale.jpg").exists()
    with pytest.raises(InvalidInputError, match="expected at least one photo folder"):
        build_dataset([], _KnownMasks(), ImageLimits(), out)
