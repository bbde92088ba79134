"""Products in word space: the vectors kept per SKU, their scores, and how the semantic signal fuses."""

from __future__ import annotations

import numpy as np
import pytest

from core.types import SIGNALS
from fusion.ranker import fuse
from fusion.semantic import SemanticSpace, semantic_scores


def _unit(*values: float) -> np.ndarray:
    v = np.zeros(4, np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def test_a_space_keeps_replaces_and_forgets_products() -> None:
    space = SemanticSpace(4)
    for i in range(100):  # past the first allocation
        space.set(f"S{i}", _unit(1, i / 100))
    space.set("RED", _unit(0, 1))
    space.set("RED", _unit(1, 0))  # moved, not added twice
    assert len(space) == 101 and "RED" in space
    assert space.cosines(_unit(1, 0), ["RED", "NONE"]).tolist() == pytest.approx([1.0, 0.0])
    space.remove("RED")
    space.set("EMPTY", np.zeros(4))  # a zero vector is no place: forgotten
    assert "RED" not in space and "EMPTY" not in space and space.vector("RED") is None
    space.set("BLUE", _unit(0, 0, 1))  # reuses the freed row
    assert len(space) == 101 and space.vector("BLUE") == pytest.approx(_unit(0, 0, 1))
    with pytest.raises(ValueError, match="4-d"):
        space.set("X", np.ones(3))


def test_nearest_is_best_first_above_the_floor_and_among_the_allowed() -> None:
    space = SemanticSpace(4)
    space.set("A", _unit(1, 0.1))
    space.set("B", _unit(1, 0.5))
    space.set("C", _unit(0, 1))
    q = _unit(1, 0)
    assert [s for s, _ in space.nearest(q, 5)] == ["A", "B", "C"]
    assert [s for s, _ in space.nearest(q, 1)] == ["A"]
    assert [s for s, _ in space.nearest(q, 5, min_cosine=0.5)] == ["A", "B"]
    assert [s for s, _ in space.nearest(q, 5, allowed=["B", "C"])] == ["B", "C"]
    assert space.nearest(np.zeros(4), 5) == [] and space.nearest(q, 0) == []


def test_scores_start_at_the_floor_and_reach_one() -> None:
    assert semantic_scores(np.array([-0.2, 0.35, 0.675, 1.0]), 0.35).tolist() == pytest.approx([0, 0, 0.5, 1])


def test_the_semantic_weight_counts_only_with_typed_words() -> None:
    row = np.zeros((1, len(SIGNALS)))
    row[0, SIGNALS.index("embedding")], row[0, SIGNALS.index("semantic")] = 0.8, 0.5
    weights = {"embedding": 0.6, "text": 0.1, "semantic": 0.3}
    assert fuse(row, weights)[0] == pytest.approx(0.8 * 0.6 / 0.7)  # a photo alone: as without the signal
    assert fuse(row, weights, has_words=True)[0] == pytest.approx((0.8 * 0.6 + 0.5 * 0.3) / 1.0)
    assert fuse(row, weights, has_image=False, has_words=True)[0] == pytest.approx(0.5 * 0.3 / 0.4)
