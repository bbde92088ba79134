"""Palette similarity: table tests and properties of the chamfer distance in CIELAB."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.colours import rgb_to_lab
from core.types import Palette
from fusion.colour import palette_similarities, palette_similarity

SCALE = 25.0


def single(rgb: tuple[int, int, int]) -> Palette:
    return Palette(rgb_to_lab(np.array([rgb], np.uint8)), np.ones(1))


RED, DARK_RED, BLUE = single((255, 0, 0)), single((139, 0, 0)), single((0, 0, 255))
TWO = Palette(np.array([[53.2, 80.1, 67.2], [32.3, 79.2, -107.9]]), np.array([0.6, 0.4]))

lab_colour = st.tuples(st.floats(0, 100), st.floats(-110, 110), st.floats(-110, 110))


@st.composite
def palettes(draw: st.DrawFn, min_size: int = 1) -> Palette:
    colours = draw(st.lists(lab_colour, min_size=min_size, max_size=6))
    raw = np.array(draw(st.lists(st.floats(0.01, 1.0), min_size=len(colours), max_size=len(colours))))
    return Palette(np.array(colours, np.float32).reshape(-1, 3), raw / raw.sum() if len(raw) else raw)


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [
        (RED, RED, 1.0, 1.0),
        (TWO, TWO, 1.0, 1.0),
        (RED, Palette.empty(), 0.0, 0.0),
        (Palette.empty(), Palette.empty(), 0.0, 0.0),
        (RED, BLUE, 0.0, 0.1),
        (RED, DARK_RED, 0.1, 0.5),
        (RED, TWO, 0.1, 0.99),
    ],
)
def test_similarity_table(a: Palette, b: Palette, low: float, high: float) -> None:
    assert low <= palette_similarity(a, b, SCALE) <= high


def test_dark_red_lies_between_red_and_blue() -> None:
    assert palette_similarity(RED, BLUE, SCALE) < palette_similarity(RED, DARK_RED, SCALE) < 1.0


def test_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="expected a positive scale"):
        palette_similarity(RED, RED, 0.0)
    with pytest.raises(ValueError, match="expected a positive scale"):
        palette_similarities(RED, [RED], -1.0)


def test_vectorised_handles_empty_inputs() -> None:
    assert palette_similarities(RED, [], SCALE).shape == (0,)
    np.testing.assert_array_equal(palette_similarities(Palette.empty(), [RED, BLUE], SCALE), [0.0, 0.0])
    sims = palette_similarities(RED, [Palette.empty(), RED, TWO], SCALE)
    assert sims[0] == 0.0 and sims[1] == 1.0 and 0.0 < sims[2] < 1.0


@settings(max_examples=200, deadline=None)
@given(a=palettes(min_size=0), b=palettes(min_size=0))
def test_symmetric_and_bounded(a: Palette, b: Palette) -> None:
    s = palette_similarity(a, b, SCALE)
    assert s == palette_similarity(b, a, SCALE)
    assert 0.0 <= s <= 1.0


@settings(max_examples=100, deadline=None)
@given(a=palettes())
def test_identity_is_one(a: Palette) -> None:
    assert palette_similarity(a, a, SCALE) == 1.0


@settings(max_examples=200, deadline=None)
@given(
    a=lab_colour,
    direction=st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1)).filter(
        lambda v: np.linalg.norm(v) > 0.1
    ),
    steps=st.lists(st.floats(0, 200), min_size=2, max_size=6),
)
def test_decreases_as_a_colour_moves_away(a: tuple, direction: tuple, steps: list[float]) -> None:
    origin, unit = np.array(a), np.array(direction) / np.linalg.norm(direction)
    base = Palette(origin[None], np.ones(1))
    sims = [palette_similarity(base, Palette((origin + t * unit)[None], np.ones(1)), SCALE) for t in sorted(steps)]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(sims, sims[1:]))


@settings(max_examples=100, deadline=None)
@given(query=palettes(min_size=0), others=st.lists(palettes(min_size=0), max_size=8))
def test_vectorised_equals_scalar(query: Palette, others: list[Palette]) -> None:
    expected = [palette_similarity(query, other, SCALE) for other in others]
    np.testing.assert_allclose(palette_similarities(query, others, SCALE), expected, rtol=1e-12, atol=0)


def test_vectorised_on_a_ranker_sized_batch() -> None:
    rng = np.random.default_rng(0)
    batch = [Palette(rng.uniform(-100, 100, (5, 3)), rng.dirichlet(np.ones(5))) for _ in range(300)]
    query = batch[17]
    sims = palette_similarities(query, batch, SCALE)
    assert sims.shape == (300,) and sims[17] == 1.0
    np.testing.assert_allclose(sims, [palette_similarity(query, p, SCALE) for p in batch], rtol=1e-12)
