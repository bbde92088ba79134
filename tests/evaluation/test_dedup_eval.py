"""Scoring near-duplicate reports against known copies (no models: made-up reports)."""

from __future__ import annotations

import pytest

from evaluation.dedup_eval import Member, catalogue_half, copies_markdown, score_copies, ukbench_markdown
from fusion.dedup import Pair
from pipeline.dedup import DedupImage, DedupReport

FILES = ["00000-original.jpg", "00000-crop.jpg", "00000-jpeg.jpg",
         "00001-original.jpg", "00001-crop.jpg",
         "00002-original.jpg"]
MEMBERS = {
    FILES[0]: Member(0, "milk", "original"), FILES[1]: Member(0, "milk", "crop"), FILES[2]: Member(0, "milk", "jpeg"),
    FILES[3]: Member(1, "milk", "original"), FILES[4]: Member(1, "milk", "crop"),
    FILES[5]: Member(2, "oats", "original"),
}


def report(groups) -> DedupReport:
    return DedupReport([DedupImage(None, None, f) for f in FILES], groups)


def test_perfect_groups_score_one():
    r = report([([0, 1, 2], [Pair(0, 1, "phash", 0.9), Pair(0, 2, "exact", 1.0)]),
                ([3, 4], [Pair(3, 4, "keypoints", 0.5)])])
    s = score_copies(r, MEMBERS)
    assert s["positives"] == 3
    assert s["combined"]["precision"] == 1.0 and s["combined"]["recall"] == 1.0
    layers = {row["layer"]: row for row in s["layers"]}
    assert layers["exact"]["recall"] == pytest.approx(1 / 3, abs=1e-4) and layers["phash"]["cumulative_recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert layers["keypoints"]["cumulative_recall"] == 1.0 and layers["visual"]["precision"] is None


def test_a_group_across_skus_costs_precision_and_same_sku_photos_are_counted_apart():
    r = report([([0, 1, 3, 5], [Pair(0, 1, "phash", 0.9), Pair(0, 3, "visual", 0.98), Pair(3, 5, "keypoints", 0.4)])])
    s = score_copies(r, MEMBERS)
    g = s["combined"]["pairs_in_groups"]
    # 4 images -> 6 pairs: (0,1) same image; (0,3), (1,3) same SKU other photo; (x,5) three across SKUs
    assert g == {"same_image": 1, "other_sku": 3, "same_sku_other_photo": 2}
    assert s["combined"]["precision"] == pytest.approx(1 / 4, abs=1e-4)
    assert s["combined"]["recall"] == pytest.approx(1 / 3, abs=1e-4)  # only 00000-crop reached its original
    assert s["combined"]["same_sku_photo_pairs_linked"] == 1 and s["combined"]["same_sku_photo_pairs"] == 1
    layers = {row["layer"]: row for row in s["layers"]}
    assert layers["keypoints"]["precision"] == 0.0


def test_markdown_renders_every_number():
    r = report([([0, 1], [Pair(0, 1, "phash", 0.9)])])
    s = score_copies(r, MEMBERS)
    s.update({"split": "val", "images": 6, "copies_made": {"crop": 2, "jpeg": 1}, "skipped": [],
              "seconds": {"make_copies": 1.0, "dedup": 2.0}})
    md = copies_markdown(s)
    assert "| phash | 1 | 1.000 | 0.333 | 0.333 |" in md and "| crop | 0.500 |" in md
    assert "Target: precision >= 0.99 (met), recall >= 0.95 (not met)" in md
    uk = ukbench_markdown({"copies": 5, "grouped_with_original": 5, "groups_mixing_originals": 0,
                           "skipped": [{"item": "x.jpg", "reason": "not an image"}], "layers": {"exact": 2}})
    assert "5 of 5" in uk and "`x.jpg` (not an image)" in uk


def test_train_and_val_split_the_catalogue_by_coarse_class():
    rows = [{"split": "catalog", "class_name": n, "coarse_class": c}
            for n, c in [("a1", "Apple"), ("a2", "Apple"), ("j1", "Juice"), ("j2", "Juice"), ("m1", "Milk")]]
    rows.append({"split": "train", "class_name": "a1", "coarse_class": "Apple"})
    train = {r["class_name"] for r in catalogue_half(rows, "train")}
    val = {r["class_name"] for r in catalogue_half(rows, "val")}
    assert train == {"a1", "a2", "m1"} and val == {"j1", "j2"}  # look-alikes stay on one side
    assert {r["class_name"] for r in catalogue_half(rows, "test")} == train | val
