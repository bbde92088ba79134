"""KMeansColourExtractor, CIELAB conversion and colour words, on generated images."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.color import rgb2lab

from core.colours import colour_names, lab_to_rgb_hex, rgb_to_lab
from core.protocols import ColorExtractor
from core.settings import ColourSettings
from core.types import Mask, Palette
from features.colour_kmeans import KMeansColourExtractor

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
RED_LAB = np.array([53.24, 80.09, 67.20])
BLUE_LAB = np.array([32.30, 79.19, -107.86])


def solid(rgb: tuple[int, int, int], height: int = 40, width: int = 60) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (height, width, 3)).copy()


def red_blue() -> np.ndarray:
    """Left half red, right half blue."""
    return np.concatenate([solid(RED), solid(BLUE)], axis=1)


@pytest.fixture
def extractor() -> KMeansColourExtractor:
    return KMeansColourExtractor(ColourSettings())


def test_implements_protocol(extractor: KMeansColourExtractor) -> None:
    assert isinstance(extractor, ColorExtractor)


def test_solid_red_is_one_red_colour(extractor: KMeansColourExtractor) -> None:
    palette = extractor.extract(solid(RED), None)
    assert len(palette) == 1
    assert palette.weights[0] == pytest.approx(1.0)
    np.testing.assert_allclose(palette.colors[0], RED_LAB, atol=0.5)
    assert palette.colors.dtype == np.float32 and palette.weights.dtype == np.float32


def test_half_red_half_blue_gives_two_halves(extractor: KMeansColourExtractor) -> None:
    palette = extractor.extract(red_blue(), None)
    assert len(palette) == 2
    np.testing.assert_allclose(palette.weights, [0.5, 0.5], atol=0.02)
    found = sorted(palette.colors.tolist(), key=lambda c: c[2])  # blue has the lower b*
    np.testing.assert_allclose(found, [BLUE_LAB, RED_LAB], atol=0.5)


def test_mask_selects_the_blue_half(extractor: KMeansColourExtractor) -> None:
    alpha = np.zeros((40, 120), np.float32)
    alpha[:, 60:] = 1.0
    palette = extractor.extract(red_blue(), Mask(alpha))
    assert len(palette) == 1 and palette.weights[0] == pytest.approx(1.0)
    np.testing.assert_allclose(palette.colors[0], BLUE_LAB, atol=0.5)


def test_empty_mask_falls_back_to_all_pixels(extractor: KMeansColourExtractor) -> None:
    image = red_blue()
    unmasked = extractor.extract(image, None)
    for alpha in (np.zeros((40, 120), np.float32), np.pad(np.ones((2, 2), np.float32), ((0, 38), (0, 118)))):
        palette = extractor.extract(image, Mask(alpha))
        np.testing.assert_array_equal(palette.colors, unmasked.colors)
        np.testing.assert_array_equal(palette.weights, unmasked.weights)


def test_mask_of_another_shape_is_refused(extractor: KMeansColourExtractor) -> None:
    with pytest.raises(ValueError, match="expected a mask of shape"):
        extractor.extract(solid(RED), Mask(np.ones((10, 10), np.float32)))


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)])
def test_non_canonical_image_is_refused(extractor: KMeansColourExtractor, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        extractor.extract(bad, None)


def test_one_colour_with_k5_gives_one_colour_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        palette = KMeansColourExtractor(ColourSettings(k=5)).extract(solid((10, 200, 30)), None)
    assert len(palette) == 1


def test_two_colours_with_k5_give_two_without_warnings(extractor: KMeansColourExtractor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(extractor.extract(red_blue(), None)) == 2


def test_one_pixel_image(extractor: KMeansColourExtractor) -> None:
    palette = extractor.extract(solid(WHITE, 1, 1), None)
    assert len(palette) == 1 and colour_names(palette) == ["white"]


def test_deterministic_and_sampled() -> None:
    image = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    settings_ = ColourSettings(k=4, sample_pixels=500, seed=7)
    first = KMeansColourExtractor(settings_).extract(image, None)
    second = KMeansColourExtractor(settings_).extract(image, None)
    assert len(first) == 4
    np.testing.assert_array_equal(first.colors, second.colors)
    np.testing.assert_array_equal(first.weights, second.weights)


def test_k1_gives_the_mean_colour() -> None:
    palette = KMeansColourExtractor(ColourSettings(k=1, sample_pixels=10_000)).extract(red_blue(), None)
    expected = (rgb_to_lab(np.array(RED, np.uint8)) + rgb_to_lab(np.array(BLUE, np.uint8))) / 2
    np.testing.assert_allclose(palette.colors[0], expected, atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    image=arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(3))),
    k=st.integers(1, 8),
)
def test_palette_weights_sum_to_one_and_are_sorted(image: np.ndarray, k: int) -> None:
    palette = KMeansColourExtractor(ColourSettings(k=k, sample_pixels=300)).extract(image, None)
    assert 1 <= len(palette) <= k
    assert float(palette.weights.sum()) == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(palette.weights) <= 0)
    assert np.all(palette.weights > 0)


def test_rgb_to_lab_matches_skimage() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5000, 3), dtype=np.uint8)
    rgb = np.concatenate([rgb, np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)])
    reference = rgb2lab(rgb[None].astype(np.float64) / 255.0)[0]
    assert np.linalg.norm(rgb_to_lab(rgb) - reference, axis=1).max() < 0.5


def test_lab_to_rgb_hex_round_trips() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (500, 3), dtype=np.uint8)
    hexes = lab_to_rgb_hex(rgb_to_lab(rgb))
    assert hexes == [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb.tolist()]
    assert lab_to_rgb_hex(np.array([[53.24, 80.09, 67.20]])) == ["#ff0000"]


def test_lab_to_rgb_hex_clips_out_of_gamut() -> None:
    hexes = lab_to_rgb_hex(np.array([[50.0, 127.0, -128.0], [110.0, 0.0, 0.0], [-5.0, 0.0, 0.0]]))
    assert hexes[1:] == ["#ffffff", "#000000"]
    assert all(len(h) == 7 and h.startswith("#") for h in hexes)


@pytest.mark.parametrize(
    ("rgb", "word"),
    [
        (RED, "red"), ((139, 0, 0), "red"), ((255, 140, 0), "orange"), ((255, 255, 0), "yellow"),
        ((0, 128, 0), "green"), (BLUE, "blue"), ((0, 0, 128), "blue"), ((128, 0, 128), "purple"),
        ((255, 192, 203), "pink"), ((139, 69, 19), "brown"), ((0, 0, 0), "black"),
        (WHITE, "white"), ((128, 128, 128), "grey"),
    ],
)
def test_colour_names_of_solid_images(extractor: KMeansColourExtractor, rgb: tuple, word: str) -> None:
    assert colour_names(extractor.extract(solid(rgb), None)) == [word]


def test_colour_names_skip_light_colours_and_repeat_none() -> None:
    palette = Palette(rgb_to_lab(np.array([RED, (200, 16, 46), BLUE], np.uint8)), np.array([0.5, 0.4, 0.1]))
    assert colour_names(palette) == ["red"]
    assert colour_names(palette, min_weight=0.05) == ["red", "blue"]
    assert colour_names(Palette.empty()) == []
