"""Weight tuning on tiny hand-made rankings."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.tuning import objective, ranks_for_grid, simplex_grid, tune_weights


def test_simplex_grid_sums_to_one():
    grid = simplex_grid(0.25)
    assert grid.shape == (70, 5)  # C(5 + 3, 4): five signals
    assert np.allclose(grid.sum(axis=1), 1.0) and (grid >= 0).all()
    with pytest.raises(ValueError):
        simplex_grid(0.3)


def test_ranks_by_hand():
    # two candidates; relevant is candidate 1; signal 0 prefers candidate 0, signal 3 prefers 1
    m = np.array([[0.9, 0, 0, 0.1], [0.5, 0, 0, 0.9]])
    grid = np.array([[1.0, 0, 0, 0], [0, 0, 0, 1.0], [0, 1.0, 0, 0]])
    ranks = ranks_for_grid([m], [1], grid)
    # embedding only -> rank 2; text only -> rank 1; colour only -> tie (0 = 0) counts against -> 2
    assert ranks.tolist() == [[2, 1, 2]]
    assert ranks_for_grid([m], [None], grid).tolist() == [[0, 0, 0]]


def test_objective_by_hand():
    ranks = np.array([[1, 2], [0, 1]])
    # column 0: r1 = 0.5, mrr = (1 + 0) / 2; column 1: r1 = 0.5, mrr = (0.5 + 1) / 2
    assert objective(ranks).tolist() == pytest.approx([0.5 + 0.25, 0.5 + 0.375])


def test_tune_finds_the_informative_signal():
    rng = np.random.default_rng(0)
    signals, relevant = [], []
    for _ in range(50):
        m = rng.uniform(0, 1, size=(10, 5))
        r = int(rng.integers(10))
        m[r, 3] = 1.0  # text always finds it; the other signals are noise
        signals.append(m)
        relevant.append(r)
    weights, fit = tune_weights(signals, relevant, step=0.1)
    assert weights["text"] >= 0.5
    assert fit["recall@1"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        tune_weights(signals, [None] * 50)
    held, _ = tune_weights(signals, relevant, step=0.1, without=("text",))
    assert held["text"] == 0.0 and sum(held.values()) == pytest.approx(1.0)
