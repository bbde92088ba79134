"""Fusion ranker: weight parsing, query tokens, tag overlap, candidates from a real FAISS index, fused scores."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidInputError
from core.results import Candidate
from core.settings import IndexSettings
from core.types import SIGNALS, Box, LocalFeatures, ObjectFeatures, OcrText, Palette, Tags
from fusion.faiss_index import FaissIndex
from fusion.image_signals import ImageInfo
from fusion.ranker import (
    CatalogView,
    FusionRanker,
    gather_candidates,
    merchant_words,
    parse_weights,
    query_tokens,
    tag_similarity,
    verify_top,
)
from fusion.text import TextScorer, tokenize

DEFAULTS = {"embedding": 0.7, "colour": 0.1, "tags": 0.1, "text": 0.1}
DIM = 8
RED, BLUE, GREEN = [53.0, 80.0, 67.0], [32.0, 79.0, -108.0], [88.0, -86.0, 83.0]


# -- parse_weights -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    (None, DEFAULTS),
    ("", DEFAULTS),
    ("embedding=0.5,text=0.3", {**DEFAULTS, "embedding": 0.5, "text": 0.3}),
    (" Embedding = 0.5 , ", {**DEFAULTS, "embedding": 0.5}),
    ("color=0.2", {**DEFAULTS, "colour": 0.2}),
    ({"tags": 0, "text": "1"}, {**DEFAULTS, "tags": 0.0, "text": 1.0}),
])
def test_parse_weights(spec, expected) -> None:
    assert parse_weights(spec, DEFAULTS) == pytest.approx(expected)


@pytest.mark.parametrize(("spec", "message"), [
    ("shape=0.5", "unknown signal 'shape'"),
    ("text=abc", "must be a number"),
    ("text=", "must be a number"),
    ("text=-0.1", ">= 0"),
    ("text=nan", "finite"),
    ("text=inf", "finite"),
    ({"colour": float("nan")}, "finite"),
    ("embedding=0,colour=0,tags=0,text=0", "at least one weight must be positive"),
    ("embedding", "name=value"),
])
def test_parse_weights_rejects(spec, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_weights(spec, DEFAULTS)


# -- query_tokens and tag_similarity ---------------------------------------------------------------------------------

def test_query_tokens_weights_and_normalisation() -> None:
    tokens = dict(query_tokens(["MJÖLK", "Arla", "mjolk"], [0.4, 0.6, 0.9], "Café arla"))
    assert tokens == pytest.approx({"mjolk": 0.9, "arla": 1.0, "cafe": 1.0})
    assert query_tokens([], [], None) == []


def _tags(**scores: float) -> Tags:
    return Tags(tuple(scores), np.asarray(list(scores.values()), np.float32))


@pytest.mark.parametrize(("query", "image", "merchant", "expected"), [
    (_tags(mug=0.8, cup=0.2), _tags(mug=0.8, cup=0.2), frozenset(), 1.0),
    (_tags(mug=0.8), _tags(bottle=0.9), frozenset(), 0.0),
    (Tags.empty(), _tags(mug=1.0), frozenset({"mug"}), 0.0),
    (_tags(coffee_mug=0.6, bottle=0.2), Tags.empty(), merchant_words(["Coffee"]), 0.75 * 0.5),
    (_tags(mug=0.5, cup=0.5), _tags(mug=1.0), frozenset(), 0.5),
])
def test_tag_similarity(query: Tags, image: Tags, merchant: frozenset, expected: float) -> None:
    assert tag_similarity(query, image, merchant, 0.5) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=4), st.lists(st.floats(0, 1), min_size=1, max_size=4),
       st.floats(0, 3))
def test_tag_similarity_in_unit_interval(q: list[float], i: list[float], merchant_weight: float) -> None:
    labels = ["mug", "cup", "bottle", "jar"]
    sim = tag_similarity(Tags(tuple(labels[: len(q)]), q), Tags(tuple(labels[: len(i)]), i),
                         frozenset({"cup"}), merchant_weight)
    assert 0.0 <= sim <= 1.0


# -- a tiny catalogue over a real FAISS index ------------------------------------------------------------------------

def _unit(*pairs: tuple[int, float]) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    for i, x in pairs:
        v[i] = x
    return v / np.linalg.norm(v)


def _palette(lab: list[float]) -> Palette:
    return Palette(np.asarray([lab], np.float32), np.ones(1, np.float32))


# sku -> (title, [(image id, vector, palette colour, tag)])
CATALOGUE = {
    "red-mug": ("Red ceramic mug", [(1, _unit((0, 1)), RED, "mug"), (2, _unit((0, 1), (1, 1)), RED, "mug")]),
    "blue-cup": ("Blue espresso cup", [(3, _unit((2, 1)), BLUE, "cup")]),
    "oat-drink": ("Oatly oat drink", [(4, _unit((3, 1)), GREEN, "bottle"), (5, _unit((4, 1)), GREEN, "bottle")]),
}


def _view(fts=None) -> CatalogView:
    index = FaissIndex(DIM, IndexSettings(use_gpu="never"), "flat")
    view = CatalogView(index, fts=fts)
    for sku, (title, images) in CATALOGUE.items():
        view.titles[sku] = title
        view.sku_tokens[sku] = frozenset(tokenize(title))
        for image_id, vec, lab, tag in images:
            vid = image_id * 10
            index.add(np.asarray([vid]), vec[None])
            view.vector_owner.extend([vid], [image_id], [sku], ["full"])
            view.images.put(image_id, ImageInfo(sku, _palette(lab), _tags(**{tag: 1.0})))
    df: dict[str, int] = {}
    for toks in view.sku_tokens.values():
        for t in toks:
            df[t] = df.get(t, 0) + 1
    view.text_scorer = TextScorer(df, len(view.sku_tokens), scale=2.0)
    return view


def _query(vectors: dict[str, np.ndarray], lab=RED, tag: str = "mug") -> ObjectFeatures:
    return ObjectFeatures(Box.full(10, 10), vectors, _palette(lab), OcrText.empty(), _tags(**{tag: 1.0}))


RANKER = FusionRanker(colour_scale=20.0, merchant_tag_weight=0.5)


def _rank(view, query, text: str | None = None, weights=DEFAULTS, k: int = 10):
    tokens = query_tokens((), (), text)
    return RANKER.rank(view, query, tokens, gather_candidates(view, query, tokens, 10, 10), weights, k)


def test_rank_puts_the_identical_vector_first_and_fuses_a_weighted_mean() -> None:
    view = _view()
    weights = {"embedding": 0.5, "colour": 0.2, "tags": 0.2, "text": 0.1}
    matches = _rank(view, _query({"full": _unit((0, 1))}), "mug", weights)
    assert matches[0].sku == "red-mug" and {m.sku for m in matches} == set(CATALOGUE)
    top = matches[0]
    assert top.image_id == 1 and top.title == "Red ceramic mug"
    assert top.signals["embedding"] == pytest.approx(1.0, abs=1e-4)
    assert top.signals["colour"] == pytest.approx(1.0) and top.signals["tags"] == pytest.approx(1.0)
    for m in matches:
        assert set(m.signals) == set(SIGNALS) and all(0.0 <= v <= 1.0 for v in m.signals.values())
        expected = sum(weights.get(s, 0.0) * m.signals[s] for s in SIGNALS) / sum(weights.values())
        assert m.signals["verify"] == 0.0  # no verifier: nothing checked
        assert m.score == pytest.approx(expected, abs=1e-3)
    two = _rank(view, _query({"full": _unit((0, 1))}), k=2)
    assert len(two) == 2 and two[0].sku == "red-mug"


def test_per_query_weights_change_the_order() -> None:
    view = _view()
    query = _query({"full": _unit((0, 1))})
    assert _rank(view, query, "oatly drink")[0].sku == "red-mug"
    text_only = {"embedding": 0.0, "colour": 0.0, "tags": 0.0, "text": 1.0}
    first = _rank(view, query, "oatly drink", text_only)[0]
    assert first.sku == "oat-drink" and first.score == pytest.approx(first.signals["text"], abs=1e-4)


def test_text_only_search_ignores_image_weights() -> None:
    view = _view(fts=lambda expr, n: [(sku, 1.0) for sku in CATALOGUE][:n])
    heavy = _rank(view, None, "oatly drink", {"embedding": 9.0, "colour": 9.0, "tags": 0.1, "text": 0.1})
    light = _rank(view, None, "oatly drink", {"embedding": 0.0, "colour": 0.0, "tags": 0.1, "text": 0.1})
    assert [(m.sku, m.score) for m in heavy] == [(m.sku, m.score) for m in light]
    assert heavy[0].sku == "oat-drink" and heavy[0].signals["embedding"] == 0.0
    # without a photo there are no visual tags either, so the score is the text signal itself
    assert heavy[0].score == pytest.approx(heavy[0].signals["text"], abs=1e-4) and heavy[0].score > 0.5


def test_gather_candidates_keeps_the_best_image_per_sku() -> None:
    found = gather_candidates(_view(), _query({"full": _unit((0, 1), (1, 1))}), [], 10, 10)
    assert found["red-mug"].image_id == 2 and found["red-mug"].embedding == pytest.approx(1.0, abs=1e-6)
    assert found["blue-cup"].embedding == 0.0


def test_gather_candidates_adds_text_hits_with_their_exact_similarity() -> None:
    calls = []
    view = _view(fts=lambda expr, n: calls.append((expr, n)) or [("oat-drink", 3.0), ("red-mug", 1.0)])
    q_full, q_crop = _unit((0, 1), (3, 0.5), (4, 0.2)), _unit((0, 1), (4, 0.6))
    tokens = query_tokens((), (), "oatly")
    found = gather_candidates(view, _query({"full": q_full, "crop": q_crop}), tokens, 1, 5)
    assert calls == [(["oatly"], 5)]
    assert set(found) == {"red-mug", "oat-drink"}
    stored = np.stack([CATALOGUE["oat-drink"][1][0][1], CATALOGUE["oat-drink"][1][1][1]])
    sims = stored @ np.stack([q_full, q_crop]).T
    assert found["oat-drink"].embedding == pytest.approx(float(sims.max()), abs=1e-6)
    assert found["oat-drink"].image_id == 5  # e4 against the crop beats e3 against the full view
    assert found["red-mug"].image_id == 1


def test_mean_pooling_averages_each_query_regions_best_match() -> None:
    """Two query views: a SKU matching only one view scores the mean of (best, 0) under 'mean'."""
    q_full, q_crop = _unit((0, 1)), _unit((3, 1))
    query = _query({"full": q_full, "crop": q_crop})
    by_max = gather_candidates(_view(), query, [], 10, 10, pooling="max")
    by_mean = gather_candidates(_view(), query, [], 10, 10, pooling="mean")
    # red-mug: full matches image 1 exactly (1.0), crop matches nothing (0.0)
    assert by_max["red-mug"].embedding == pytest.approx(1.0, abs=1e-6)
    assert by_mean["red-mug"].embedding == pytest.approx(0.5, abs=1e-6)
    # oat-drink: crop matches image 4 exactly, full matches neither image
    assert by_mean["oat-drink"].embedding == pytest.approx(0.5, abs=1e-6) and by_mean["oat-drink"].image_id == 4
    # one query region: both poolings agree
    single = _query({"full": _unit((0, 1), (1, 1))})
    assert gather_candidates(_view(), single, [], 10, 10, pooling="mean")["red-mug"].embedding == \
        pytest.approx(gather_candidates(_view(), single, [], 10, 10, pooling="max")["red-mug"].embedding)


def test_sku_images_average_a_skus_best_images_each_by_its_best_vector() -> None:
    from fusion.ranker import top_images_mean

    # rows: vectors; columns: query regions. Image 7 has two vectors, images 8 and 9 one each.
    sims = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.3, 0.0]])
    owners = [7, 7, 8, 9]
    assert top_images_mean(sims, owners, 1) == pytest.approx([0.9, 0.8])
    assert top_images_mean(sims, owners, 2) == pytest.approx([(0.9 + 0.5) / 2, (0.8 + 0.5) / 2])
    assert top_images_mean(sims, owners, 5) == pytest.approx([(0.9 + 0.5 + 0.3) / 3, (0.8 + 0.5 + 0.0) / 3])


def test_sku_images_let_a_skus_photos_outvote_one_look_alike() -> None:
    """oat-drink has two images near the query, red-mug one exact match and one far image:
    the best image alone prefers red-mug, the mean of the two best prefers oat-drink."""
    query = _query({"full": _unit((0, 1), (3, 0.9), (4, 0.9))})
    best = gather_candidates(_view(), query, [], 10, 10, pooling="mean")
    two = gather_candidates(_view(), query, [], 10, 10, pooling="mean", sku_images=2)
    assert best["red-mug"].embedding > best["oat-drink"].embedding
    assert two["oat-drink"].embedding > two["red-mug"].embedding
    q = query.vectors["full"]
    red = [float(v @ q) for _, v, _, _ in CATALOGUE["red-mug"][1]]
    assert two["red-mug"].embedding == pytest.approx(max(np.mean(red), 0.0), abs=1e-5)
    assert two["red-mug"].image_id == 1  # the best image is still the one shown and compared for colour
    # a SKU with a single image averages what it has
    assert two["blue-cup"].embedding == pytest.approx(best["blue-cup"].embedding, abs=1e-6)
    with pytest.raises(InvalidInputError, match="sku_images"):
        gather_candidates(_view(), query, [], 10, 10, pooling="mean", sku_images=0)


# -- fused score is monotone in each signal --------------------------------------------------------------------------

WORDS = ("alpha", "bravo", "charlie", "delta")


def _pair_view(knobs: list[dict]) -> tuple[CatalogView, dict[str, Candidate]]:
    """Two SKUs 'a' and 'b' whose four signals follow their knobs: embedding, colour distance, tag share, words."""
    view = CatalogView(FaissIndex(DIM, IndexSettings(use_gpu="never"), "flat"),
                       text_scorer=TextScorer({w: 1 for w in WORDS}, 10, scale=3.0))
    cands = {}
    for image_id, (sku, k) in enumerate(zip("ab", knobs), start=1):
        p = k["tag"]
        view.images.put(image_id, ImageInfo(sku, _palette([50.0 + k["dist"], 0.0, 0.0]),
                                            Tags(("mug", "zz"), [p, 1.0 - p])))
        view.sku_tokens[sku] = frozenset(WORDS[: k["words"]])
        cands[sku] = Candidate(sku, image_id, k["emb"])
    return view, cands


KNOBS = st.fixed_dictionaries({"emb": st.floats(0, 1), "dist": st.floats(0, 60), "tag": st.floats(0, 1),
                               "words": st.integers(0, len(WORDS))})
WEIGHTS = st.fixed_dictionaries({s: st.floats(0, 5) for s in SIGNALS}).filter(lambda w: sum(w.values()) > 0)


@settings(max_examples=200, deadline=None)
@given(KNOBS, st.sampled_from(("embedding", "colour", "tags", "text")), st.floats(0, 1), WEIGHTS)
def test_fused_score_is_monotone_in_each_signal(base: dict, signal: str, step: float, weights: dict) -> None:
    raised = dict(base)
    if signal == "embedding":
        raised["emb"] = base["emb"] + (1 - base["emb"]) * step
    elif signal == "colour":
        raised["dist"] = base["dist"] * (1 - step)
    elif signal == "tags":
        raised["tag"] = min(1.0, base["tag"] + (1 - base["tag"]) * step)
    else:
        raised["words"] = base["words"] + round((len(WORDS) - base["words"]) * step)
    view, cands = _pair_view([base, raised])
    query = _query({"full": _unit((0, 1))}, lab=[50.0, 0.0, 0.0])
    matches = {m.sku: m for m in RANKER.rank(view, query, [(w, 1.0) for w in WORDS], cands, weights, 2)}
    a, b = matches["a"], matches["b"]
    assert b.signals[signal] >= a.signals[signal] - 1e-4  # signals are rounded to 4 places
    assert all(b.signals[s] == a.signals[s] for s in SIGNALS if s != signal)
    assert b.score >= a.score - 1e-6  # float32 tag scores may wobble by an ulp
    assert 0.0 <= a.score <= 1.0 and 0.0 <= b.score <= 1.0 and not math.isnan(a.score)


# -- the verify signal ---------------------------------------------------------------------------------------------

class CountingVerifier:
    """Inliers = the candidate's number of keypoints (a fake: the real one is tested on real photos)."""

    name = "fake"

    def __init__(self) -> None:
        self.checked: list[int] = []

    def features(self, image):  # pragma: no cover - not used here
        raise AssertionError

    def inliers(self, query: LocalFeatures, candidate: LocalFeatures) -> int:
        self.checked.append(len(candidate))
        return len(candidate)

    def score(self, inliers: int) -> float:
        return min(1.0, inliers / 40)


def _keypoints(n: int) -> LocalFeatures:
    return LocalFeatures(np.zeros((n, 2), np.float32), np.zeros((n, 128), np.uint8))


def test_verify_top_checks_only_the_best_rows_by_the_other_signals() -> None:
    m = np.array([[0.9, 0, 0, 0, 0.7, 0], [0.5, 0, 0, 0, 0, 0], [0.8, 0, 0, 0, 0, 0]])
    asked: list[int] = []
    out = verify_top(m, {"embedding": 1.0, "verify": 1.0}, 2, lambda row: asked.append(row) or 0.5)
    assert asked == [0, 2] and out[:, 4].tolist() == [0.5, 0.0, 0.5]  # a stale column is cleared
    assert verify_top(m, {"embedding": 1.0, "verify": 0.0}, 2, lambda row: 1 / 0)[:, 4].tolist() == [0, 0, 0]
    assert m[0, 4] == 0.7  # the input is left alone


def test_rank_verifies_the_top_candidates_and_explains_it() -> None:
    view = _view()
    counts = {1: 40, 2: 20, 3: 8, 5: 10}  # image id -> the candidate picture's keypoints (4: none stored)
    view.local_features = lambda image_id: _keypoints(counts[image_id]) if image_id in counts else None
    verifier = CountingVerifier()
    ranker = FusionRanker(colour_scale=20.0, merchant_tag_weight=0.5, verifier=verifier, verify_top_k=2)
    query = dataclasses.replace(_query({"full": _unit((0, 2))}), local=_keypoints(50))
    tokens = query_tokens((), (), None)
    weights = {**DEFAULTS, "verify": 1.0}
    matches = ranker.rank(view, query, tokens, gather_candidates(view, query, tokens, 10, 10), weights, 10)
    assert len(verifier.checked) == 2  # the two best by the other signals, no more
    checked = [m for m in matches if m.signals["verify"] > 0]
    assert matches[0].sku == "red-mug" and matches[0].signals["verify"] == 1.0  # 40 inliers: full score
    assert len(checked) == 2 and all(m.signals["verify"] == pytest.approx(counts[m.image_id] / 40) for m in checked)
    verifier.checked.clear()
    ranker.rank(view, query, tokens, gather_candidates(view, query, tokens, 10, 10), DEFAULTS, 10)
    assert verifier.checked == []  # no weight, no work
    bare = dataclasses.replace(query, local=None)
    ranker.rank(view, bare, tokens, gather_candidates(view, bare, tokens, 10, 10), weights, 10)
    assert verifier.checked == []  # a query without keypoints is not checked
