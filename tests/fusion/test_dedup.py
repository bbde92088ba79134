"""Near-duplicate layers and grouping, on made-up signatures (no images, no models)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.settings import DedupSettings
from core.types import ImageHashes, Verification
from fusion.dedup import (
    DedupItem,
    Pair,
    PairChecks,
    UnionFind,
    colour_agrees,
    find_pairs,
    group_pairs,
    hash_codes,
    visual_candidates,
)

RNG = np.random.default_rng(0)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def flip_bits(h: int, n: int, start: int = 0) -> int:
    for bit in range(start, start + n):
        h ^= 1 << bit
    return h


def item(sha: str, phash: int, dhash: int = 0, vector=None, variants=(), hues=(), chroma=0.0) -> DedupItem:
    return DedupItem(sha, ImageHashes(phash, dhash, tuple(variants), tuple(hues), chroma), vector)


RED = (1.0,) + (0.0,) * 11
GREEN = (0.0,) * 4 + (1.0,) + (0.0,) * 7
MOSTLY_RED = (0.8, 0.2) + (0.0,) * 10


def far_hash() -> int:
    return int(RNG.integers(0, 2**63)) * 2 + 1


def test_exact_layer_pairs_the_same_bytes():
    items = [item("s1", far_hash()), item("s2", far_hash()), item("s1", far_hash())]
    pairs = find_pairs(items, DedupSettings())
    assert pairs == [Pair(0, 2, "exact", 1.0)]


@pytest.mark.parametrize("distance,found", [(0, True), (5, True), (8, True), (9, False), (30, False)])
def test_phash_layer_uses_the_radius(distance, found):
    h = far_hash()
    items = [item("a", h), item("b", flip_bits(h, distance))]
    pairs = find_pairs(items, DedupSettings(phash_max_distance=8))
    assert bool(pairs) == found
    if found:
        assert pairs[0].layer == "phash" and pairs[0].score == pytest.approx(1 - distance / 64)


def test_phash_radius_search_finds_every_pair_within_eleven_bits():
    """Multi-index hashing is exact up to 11 flipped bits wherever they fall."""
    h = far_hash()
    for start in (0, 10, 27, 53):
        items = [item("a", h), item("b", flip_bits(h, 11, start))]
        assert find_pairs(items, DedupSettings(phash_max_distance=11)), start


def test_a_contradicted_phash_or_visual_match_is_dropped_and_not_looked_at_again():
    """Look-alike variants: close signatures, but the pixels differ once laid over each other."""
    h, v = far_hash(), unit(RNG.normal(size=32))
    items = [item("a", h), item("b", flip_bits(h, 4)),  # phash pair
             item("c", far_hash(), vector=v), item("d", far_hash(), vector=v)]  # visual pair
    asked = []

    def verify(a, b):
        asked.append((a, b))
        return Verification(60, 0.5, differing=0.4 if (a, b) == (0, 1) else 0.0)

    checks = PairChecks(verify, lambda v: True, lambda v: v.differing is not None and v.differing > 0.1)
    assert [(p.a, p.b, p.layer) for p in find_pairs(items, DedupSettings(), checks)] == [(2, 3, "visual")]
    assert asked.count((0, 1)) == 1  # not re-examined by the keypoints layer
    contra_all = PairChecks(lambda a, b: Verification(60, 0.5, differing=0.5), lambda v: True, lambda v: True)
    assert find_pairs(items, DedupSettings(), contra_all) == []


def test_an_upright_phash_match_the_keypoints_cannot_place_is_compared_frame_to_frame():
    h, mirrored = far_hash(), far_hash()
    items = [item("a", h), item("b", flip_bits(h, 2)),  # upright
             item("c", far_hash(), variants=(mirrored,)), item("d", mirrored)]  # mirror image
    framed = []

    def frames_differ(a, b):
        framed.append((a, b))
        return True

    checks = PairChecks(lambda a, b: Verification(3, 0.01), lambda v: False, lambda v: False, frames_differ)
    assert [(p.a, p.b) for p in find_pairs(items, DedupSettings(), checks)] == [(2, 3)]
    assert framed == [(0, 1)]  # a mirrored match is not compared as it stands


def test_upright_phash_match_needs_the_dhash_to_agree():
    h = far_hash()
    items = [item("a", h, dhash=0), item("b", h, dhash=2**40 - 1)]  # 40 dHash bits apart
    assert not find_pairs(items, DedupSettings(dhash_max_distance=16))


def test_a_mirrored_copy_matches_through_its_variant():
    h, mirrored = far_hash(), far_hash()
    items = [item("a", h, variants=(mirrored,)), item("b", mirrored)]
    pairs = find_pairs(items, DedupSettings())
    assert [(p.a, p.b, p.layer) for p in pairs] == [(0, 1, "phash")]


def test_visual_layer_keeps_close_neighbours_and_verifies_the_middle_band():
    base = unit(RNG.normal(size=64))
    close = unit(base + 0.01 * RNG.normal(size=64))  # cosine ~0.997
    middle = unit(base + 0.125 * RNG.normal(size=64))  # cosine ~0.7
    other = unit(RNG.normal(size=64))  # cosine ~0
    items = [item(f"s{i}", far_hash(), vector=v) for i, v in enumerate([base, close, middle, other])]
    asked = []

    def verify(a, b):
        asked.append((a, b))
        return Verification(100, 0.5 if b == 2 else 0.0)

    cfg = DedupSettings(visual_min_cosine=0.97, candidate_min_cosine=0.5)
    pairs = find_pairs(items, cfg, PairChecks(verify, lambda v: v.ratio >= 0.3))
    layers = {(p.a, p.b): p.layer for p in pairs}
    assert layers[(0, 1)] == "visual"
    assert layers[(0, 2)] == "keypoints" and (1, 2) in layers
    assert all(3 not in pair for pair in layers) and all(3 not in pair for pair in asked)
    assert (0, 1) in asked and layers[(0, 1)] == "visual"  # a copy by the embedding, checked only for contradictions


def test_pairs_found_by_a_cheaper_layer_keep_that_layer():
    v = unit(RNG.normal(size=32))
    items = [item("same", 5, vector=v), item("same", 5, vector=v)]
    assert [p.layer for p in find_pairs(items, DedupSettings())] == ["exact"]


def test_candidates_are_bounded_by_the_neighbour_count():
    base = unit(RNG.normal(size=16))
    vecs = [unit(base + 0.01 * RNG.normal(size=16)) for _ in range(30)]
    items = [item(f"s{i}", far_hash(), vector=v) for i, v in enumerate(vecs)]
    cands = visual_candidates(items, DedupSettings(neighbours=3, candidate_min_cosine=0.0))
    assert len(cands) <= 30 * 3
    assert all(a < b for a, b, _ in cands)


def test_items_without_a_vector_skip_the_visual_layer():
    items = [item("a", far_hash()), item("b", far_hash())]
    assert visual_candidates(items, DedupSettings()) == []


def test_settings_beyond_the_exhaustive_radius_are_refused():
    with pytest.raises(ValueError):
        find_pairs([], DedupSettings().model_copy(update={"phash_max_distance": 12}))  # (skips validation)


def test_hash_codes_are_eight_bytes_per_hash():
    codes = hash_codes([1, 2**64 - 1])
    assert codes.shape == (2, 8) and codes.dtype == np.uint8
    assert codes[1].tolist() == [255] * 8


def test_groups_are_connected_components():
    pairs = [Pair(0, 1, "exact", 1.0), Pair(1, 4, "phash", 0.9), Pair(2, 3, "visual", 0.98)]
    groups = group_pairs(6, pairs)
    assert [g[0] for g in groups] == [[0, 1, 4], [2, 3]]
    assert groups[0][1] == pairs[:2]


@hsettings(max_examples=60, deadline=None)
@given(st.integers(2, 30), st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=60))
def test_union_find_matches_a_naive_closure(n, edges):
    edges = [(a % n, b % n) for a, b in edges if a % n != b % n]
    uf = UnionFind(n)
    for a, b in edges:
        uf.union(a, b)
    label = list(range(n))  # naive: relabel until stable
    changed = True
    while changed:
        changed = False
        for a, b in edges:
            m = min(label[a], label[b])
            if label[a] != m or label[b] != m:
                label[a] = label[b] = m
                changed = True
    for a in range(n):
        for b in range(n):
            assert (uf.find(a) == uf.find(b)) == (label[a] == label[b])


@pytest.mark.parametrize("a,b,agree", [
    ((RED, 0.6), (RED, 0.6), True),
    ((RED, 0.6), (MOSTLY_RED, 0.5), True),
    ((RED, 0.6), (GREEN, 0.6), False),  # the same picture in another colour: a variant
    ((RED, 0.02), (GREEN, 0.03), True),  # nearly grey: hue is not compared
    ((RED, 0.9), (GREEN, 0.0), False),  # coloured vs grey
])
def test_colour_separates_variants_from_copies(a, b, agree):
    ha, hb = ImageHashes(1, 1, (), a[0], a[1]), ImageHashes(1, 1, (), b[0], b[1])
    assert colour_agrees(ha, hb, DedupSettings()) == agree


def test_a_hash_match_in_other_colours_is_not_a_pair():
    h = far_hash()
    items = [item("a", h, hues=RED, chroma=0.5), item("b", h, hues=GREEN, chroma=0.5)]
    assert find_pairs(items, DedupSettings()) == []


def test_the_centre_view_brings_candidates_the_whole_image_misses():
    """A new background moves the whole image's embedding; the centre view still finds the pair."""
    full_a, full_b = unit(RNG.normal(size=32)), unit(RNG.normal(size=32))  # unrelated as wholes
    centre = unit(RNG.normal(size=32))
    items = [DedupItem("a", ImageHashes(far_hash(), 0), full_a, centre),
             DedupItem("b", ImageHashes(far_hash(), 0), full_b, unit(centre + 0.01 * RNG.normal(size=32)))]
    cands = visual_candidates(items, DedupSettings())
    assert [(a, b) for a, b, _ in cands] == [(0, 1)]
    assert cands[0][2] == pytest.approx(float(full_a @ full_b))  # the whole-image cosine is reported
    pairs = find_pairs(items, DedupSettings(), PairChecks(lambda a, b: Verification(200, 0.6), lambda v: v.ratio >= 0.3))
    assert [p.layer for p in pairs] == ["keypoints"]


def test_a_run_over_new_items_finds_the_whole_runs_pairs_that_touch_them():
    from evaluation.bench_dedup import synthetic_items

    items = synthetic_items(600, 32, seed=3)
    settings = DedupSettings()
    whole = {(p.a, p.b, p.layer) for p in find_pairs(items, settings)}
    fresh = list(range(500, 600)) + [7, 250]
    part = {(p.a, p.b, p.layer) for p in find_pairs(items, settings, fresh=fresh)}
    touching = {t for t in whole if t[0] in fresh or t[1] in fresh}
    assert touching and touching <= part  # every pair a whole run finds with a new member
    assert all(a in fresh or b in fresh for a, b, _ in part)  # and only pairs with one
