"""Learn fusion weights from labelled queries: a search over the weight simplex.

Each query contributes its candidates' signal matrix and the index of its relevant
candidate; every weight vector on a grid (step 0.05: 1,771 vectors for four signals) is
scored at once with matrix products.  Ties count against the relevant candidate, so a
weight vector that scores everything alike gains nothing.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import numpy as np

from core.types import PHOTO_SIGNALS, SIGNALS

log = logging.getLogger(__name__)


def simplex_grid(step: float = 0.05, dims: int = len(PHOTO_SIGNALS)) -> np.ndarray:
    """All non-negative weight vectors with entries on a ``step`` grid summing to 1, ``(G, dims)``."""
    n = round(1 / step)
    if n < 1 or abs(n * step - 1) > 1e-9:
        raise ValueError(f"expected a step that divides 1, got {step}")
    rows = [c + (n - sum(c),) for c in itertools.product(range(n + 1), repeat=dims - 1) if sum(c) <= n]
    return np.asarray(rows, np.float64) / n


def ranks_for_grid(signals: Sequence[np.ndarray], relevant: Sequence[int | None], grid: np.ndarray) -> np.ndarray:
    """Rank (1-based; 0 = not among the candidates) of each query's relevant candidate under each
    weight vector: ``(len(signals), len(grid))``.  Tied candidates rank ahead of the relevant one."""
    out = np.zeros((len(signals), len(grid)), np.int32)
    for q, (m, r) in enumerate(zip(signals, relevant)):
        if r is None or len(m) == 0:
            continue
        fused = m @ grid.T  # (candidates, G)
        out[q] = (fused >= fused[r][None, :] - 1e-12).sum(axis=0)
    return out


def objective(ranks: np.ndarray) -> np.ndarray:
    """Per weight vector: recall@1 plus half the MRR (0-ranks count as misses)."""
    found = ranks > 0
    r1 = (ranks == 1).mean(axis=0)
    mrr = np.where(found, 1.0 / np.maximum(ranks, 1), 0.0).mean(axis=0)
    return r1 + 0.5 * mrr


def tune_weights(signals: Sequence[np.ndarray], relevant: Sequence[int | None], step: float = 0.05,
                 without: Sequence[str] = ()) -> tuple[dict[str, float], dict[str, float]]:
    """Best weights on the grid and their training figures (recall@1, mrr); the signals named in
    ``without`` weigh 0.  Only a photo's signals are tuned (:data:`PHOTO_SIGNALS`): the ``semantic``
    one counts for typed words alone, and keeps the weight set for it."""
    if not any(r is not None for r in relevant):
        raise ValueError("no query has its relevant item among the candidates: nothing to tune on")
    grid = simplex_grid(step)
    if without:
        grid = grid[(grid[:, [PHOTO_SIGNALS.index(s) for s in without]] == 0).all(axis=1)]
    signals = [m[:, [SIGNALS.index(s) for s in PHOTO_SIGNALS]] for m in signals]
    ranks = ranks_for_grid(signals, relevant, grid)
    scores = objective(ranks)
    best = int(np.argmax(scores))  # first best: the grid order prefers earlier signals on ties
    weights = {name: round(float(w), 4) for name, w in zip(PHOTO_SIGNALS, grid[best])}
    col = ranks[:, best]
    fit = {"recall@1": float((col == 1).mean()),
           "mrr": float(np.where(col > 0, 1.0 / np.maximum(col, 1), 0.0).mean()),
           "queries": int(len(col))}
    log.info("tuned weights %s on %d queries: %s", weights, len(col), fit)
    return weights, fit
