"""The near-duplicate scale benchmark on a small synthetic catalogue (real FAISS, no images)."""

from __future__ import annotations

import numpy as np

from core.settings import DedupSettings
from evaluation.bench_dedup import scale_markdown, scale_row, synthetic_items
from fusion.dedup import find_pairs, group_pairs


def test_synthetic_families_are_found_by_the_index_layers():
    items = synthetic_items(400, 64, seed=1)
    assert len(items) == 400 and all(abs(np.linalg.norm(it.vector) - 1) < 1e-5 for it in items)
    groups = group_pairs(len(items), find_pairs(items, DedupSettings()))
    families = [{items[i].sha256.split("-")[0] for i in members} for members, _ in groups]
    assert all(len(f) == 1 for f in families)  # never two families in one group
    assert len(groups) >= 90  # 100 families; a copy may be missed without keypoint checks


def test_scale_row_and_markdown():
    row = scale_row(2000, 32, DedupSettings())
    assert row["images"] == 2000 and row["pairs"] > 0 and row["pair_checks_needed"] >= 0
    assert row["new_images"] == 20 and 0 < row["new_pair_checks_needed"] < row["pair_checks_needed"]
    costs = {"images": 10, "decode_ms": 2.0, "hash_ms": 1.0, "embed_ms": 30.0, "keypoints_ms": 10.0, "check_ms": 3.0,
             "copy_check_ms": 5.0}
    md = scale_markdown([row], costs, DedupSettings())
    assert "| 2,000 |" in md and f"| {row['new_pair_checks_needed']:,} |" in md and "one pair check 3.0 ms for two different photos, 5.0 ms for a copy" in md
