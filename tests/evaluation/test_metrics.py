"""Metrics computed by hand on tiny rankings equal the code's."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluation.metrics import (
    average_precision,
    category_metrics,
    mean_reciprocal_rank,
    precision_at_k,
    recall_at_k,
    sku_metrics,
)


@pytest.mark.parametrize("ranks, k, expected", [
    ([1, 2, 3, None], 1, 0.25),
    ([1, 2, 3, None], 2, 0.5),
    ([1, 2, 3, None], 10, 0.75),
    ([], 5, 0.0),
])
def test_recall_at_k(ranks, k, expected):
    assert recall_at_k(ranks, k) == pytest.approx(expected)


def test_mrr_by_hand():
    # 1/1 + 1/2 + 1/4 + 0 over 4 queries
    assert mean_reciprocal_rank([1, 2, 4, None]) == pytest.approx((1 + 0.5 + 0.25) / 4)


@pytest.mark.parametrize("relevant, k, expected", [
    ([True, False, True, True], 1, 1.0),
    ([True, False, True, True], 2, 0.5),
    ([True, False, True, True], 4, 0.75),
    ([False, True], 5, 0.2),  # missing items count as not relevant
])
def test_precision_at_k(relevant, k, expected):
    assert precision_at_k(relevant, k) == pytest.approx(expected)


def test_average_precision_by_hand():
    # relevant at ranks 1, 3, 4 of 3 relevant: (1/1 + 2/3 + 3/4) / 3
    assert average_precision([True, False, True, True, False], 3) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # two of four relevant never retrieved: they add 0
    assert average_precision([False, True], 4) == pytest.approx((1 / 2) / 4)
    assert average_precision([], 0) == 0.0


def test_summaries_by_hand():
    assert sku_metrics([1, 3, None, 12]) == pytest.approx(
        {"recall@1": 0.25, "recall@5": 0.5, "recall@10": 0.5, "map": (1 + 1 / 3 + 1 / 12) / 4})
    lists = [[True] * 10, [False] * 10]
    m = category_metrics(lists, [10, 10])
    assert m == pytest.approx({"precision@1": 0.5, "precision@5": 0.5, "precision@10": 0.5, "map": 0.5})


@given(st.lists(st.booleans(), max_size=30))
def test_ap_in_unit_interval_and_perfect_ranking_scores_one(relevant):
    n = sum(relevant)
    assert 0.0 <= average_precision(relevant, n) <= 1.0
    assert average_precision(sorted(relevant, reverse=True), n) == pytest.approx(1.0 if n else 0.0)
