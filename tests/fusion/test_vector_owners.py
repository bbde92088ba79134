"""The vector-owner table: lookups, each SKU's ids, removal and compaction, ids out of order."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.vector_owners import VectorOwners


def table() -> VectorOwners:
    owners = VectorOwners()
    owners.extend([10, 11, 12, 20, 21], [1, 1, 1, 2, 2], ["a", "a", "a", "b", "b"],
                  ["full", "crop", "centre70", "full", "crop"])
    return owners


def test_lookup_by_id_and_by_sku():
    owners = table()
    assert len(owners) == 5
    assert owners.get(11) == (1, "a", "crop") and owners[20] == (2, "b", "full")
    assert owners.get(13) is None and owners.get(0) is None and owners.get(99) is None
    with pytest.raises(KeyError):
        owners[13]
    assert owners.of_sku("a").tolist() == [10, 11, 12] and owners.of_sku("zzz").tolist() == []
    held, images, skus, regions = owners.lookup(np.asarray([21, 5, 10]))
    assert held.tolist() == [True, False, True] and images[held].tolist() == [2, 1]
    assert [owners.sku_names[c] for c in skus[held]] == ["b", "a"]
    assert set(owners.region_codes(["full", "nope"]).tolist()) == {owners.region_names.index("full")}


def test_removal_forgets_the_vectors_and_empties_a_sku():
    owners = table()
    gone = owners.remove(np.asarray([11, 20, 21, 999]))
    assert sorted(gone) == [(1, "a", "crop"), (2, "b", "crop"), (2, "b", "full")]
    assert len(owners) == 2 and owners.get(11) is None and owners.get(10) == (1, "a", "full")
    assert owners.of_sku("a").tolist() == [10, 12] and "b" not in owners.skus()
    owners.extend([30], [3], ["b"], ["full"])  # a SKU can come back
    assert owners.of_sku("b").tolist() == [30] and owners.get(30) == (3, "b", "full")


def test_many_removals_compact_the_arrays_and_keep_the_rest():
    owners = VectorOwners()
    n = 5000
    owners.extend(np.arange(n), np.arange(n) // 2, [f"s{i // 10}" for i in range(n)], ["full"] * n)
    owners.remove(np.arange(0, 4000))
    assert len(owners) == 1000 and owners._n == 1000  # compacted
    assert owners.get(4500) == (2250, "s450", "full") and owners.get(3999) is None
    assert owners.of_sku("s499").tolist() == list(range(4990, 5000))


def test_ids_out_of_order_are_kept_sorted():
    owners = table()
    owners.extend([15, 5], [9, 8], ["c", "c"], ["full", "crop"])
    assert owners.get(15) == (9, "c", "full") and owners.get(5) == (8, "c", "crop")
    assert owners.get(12) == (1, "a", "centre70") and owners.of_sku("c").tolist() == [5, 15]
    with pytest.raises(ValueError, match="one image, SKU and region per id"):
        owners.extend([40, 41], [1], ["a"], ["full"])


def test_owners_from_columns_are_those_extend_makes():
    made = table()
    made.extend([30, 31], [3, 3], ["a", "c"], ["full", "crop"])
    names, regions = ["c", "a", "b"], ["crop", "full", "centre70"]
    loaded = VectorOwners.from_columns(np.asarray([10, 11, 12, 20, 21, 30, 31]), np.asarray([1, 1, 1, 2, 2, 3, 3]),
                                       np.asarray([1, 1, 1, 2, 2, 1, 0]), names, np.asarray([1, 0, 2, 1, 0, 1, 0]),
                                       regions)
    for vid in (10, 11, 12, 20, 21, 30, 31, 13):
        assert loaded.get(vid) == made.get(vid)
    assert sorted(loaded.skus()) == sorted(made.skus())
    for sku in ("a", "b", "c"):
        assert loaded.of_sku(sku).tolist() == made.of_sku(sku).tolist()
    loaded.remove(np.asarray([11, 31]))  # and it changes as any other
    loaded.extend([40], [4], ["d"], ["full"])
    assert loaded.of_sku("a").tolist() == [10, 12, 30] and "c" not in loaded.skus() and loaded.get(40) == (4, "d", "full")
