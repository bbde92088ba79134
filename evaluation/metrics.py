"""Retrieval metrics over ranked lists (pure functions, no I/O).

Ranks are 1-based; ``None`` means the relevant item was not retrieved at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def recall_at_k(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose (single) relevant item is within the first ``k``."""
    if not ranks:
        return 0.0
    return float(np.mean([r is not None and r <= k for r in ranks]))


def mean_reciprocal_rank(ranks: Sequence[int | None]) -> float:
    """Mean of 1/rank (0 when not retrieved): the mAP when each query has one relevant item."""
    if not ranks:
        return 0.0
    return float(np.mean([1.0 / r if r else 0.0 for r in ranks]))


def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    """Share of relevant items among the first ``k`` of one ranked list (missing ones count as not relevant)."""
    if k <= 0:
        raise ValueError(f"expected k >= 1, got {k}")
    return float(sum(bool(x) for x in list(relevant)[:k]) / k)


def average_precision(relevant: Sequence[bool], n_relevant: int) -> float:
    """AP of one ranked list: mean precision at each relevant item's rank over all ``n_relevant``
    relevant items (those never retrieved contribute 0)."""
    if n_relevant <= 0:
        return 0.0
    hits, total = 0, 0.0
    for i, rel in enumerate(relevant, start=1):
        if rel:
            hits += 1
            total += hits / i
    return total / n_relevant


def sku_metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    """G1/G2 metrics: recall@1/5/10 and mAP (= MRR: one relevant SKU per query)."""
    return {"recall@1": recall_at_k(ranks, 1), "recall@5": recall_at_k(ranks, 5),
            "recall@10": recall_at_k(ranks, 10), "map": mean_reciprocal_rank(ranks)}


def category_metrics(lists: Sequence[Sequence[bool]], n_relevant: Sequence[int]) -> dict[str, float]:
    """C1/K1 metrics: precision@1/5/10 and mAP over ranked candidate lists."""
    if not lists:
        return {"precision@1": 0.0, "precision@5": 0.0, "precision@10": 0.0, "map": 0.0}
    return {
        "precision@1": float(np.mean([precision_at_k(x, 1) for x in lists])),
        "precision@5": float(np.mean([precision_at_k(x, 5) for x in lists])),
        "precision@10": float(np.mean([precision_at_k(x, 10) for x in lists])),
        "map": float(np.mean([average_precision(x, n) for x, n in zip(lists, n_relevant)])),
    }
