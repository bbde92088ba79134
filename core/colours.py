"""Colours in CIELAB: conversions to and from sRGB, display strings, and basic colour words.

:func:`colour_names` turns a palette into basic colour words so that a typed "red" can meet a red
product; the store, the engine and the pages all name colours through it.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from core.types import Palette

# sRGB (D65) <-> XYZ, and the D65 reference white, as in IEC 61966-2-1 and skimage.
_RGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0

# A few prototypes per basic colour word, as sRGB; a colour takes the word of its nearest prototype.
_PROTOTYPES: tuple[tuple[str, tuple[tuple[int, int, int], ...]], ...] = (
    ("red", ((255, 0, 0), (200, 16, 46), (139, 0, 0), (220, 50, 50))),
    ("orange", ((255, 140, 0), (255, 165, 0), (240, 110, 30), (255, 127, 80))),
    ("yellow", ((255, 255, 0), (255, 215, 0), (240, 220, 90), (255, 240, 150))),
    ("green", ((0, 128, 0), (0, 200, 0), (50, 205, 50), (0, 90, 40), (107, 142, 35), (144, 238, 144))),
    ("blue", ((0, 0, 255), (30, 144, 255), (0, 0, 139), (70, 130, 180), (135, 206, 235), (0, 40, 100))),
    ("purple", ((128, 0, 128), (148, 0, 211), (106, 90, 205), (75, 0, 130), (190, 140, 220))),
    ("pink", ((255, 192, 203), (255, 105, 180), (255, 20, 147), (230, 150, 170))),
    ("brown", ((139, 69, 19), (160, 82, 45), (101, 67, 33), (92, 51, 23), (190, 150, 110))),
    ("black", ((0, 0, 0), (25, 25, 25))),
    ("white", ((255, 255, 255), (245, 245, 235))),
    ("grey", ((128, 128, 128), (190, 190, 190), (80, 80, 80))),
)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB ``uint8`` colours of shape ``(..., 3)``, as float64."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"expected colours of shape (..., 3), got {rgb.shape}")
    xyz = _srgb_to_linear(rgb.astype(np.float64) / 255.0) @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz / (3 * _DELTA**2) + 4.0 / 29.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """sRGB ``uint8`` of CIELAB (D65) colours ``(..., 3)``; out-of-gamut colours are clipped."""
    lab = np.asarray(lab, dtype=np.float64)
    if lab.shape[-1:] != (3,):
        raise ValueError(f"expected colours of shape (..., 3), got {lab.shape}")
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0)) * _WHITE_D65
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    return np.round(np.clip(_linear_to_srgb(linear), 0.0, 1.0) * 255.0).astype(np.uint8)


def lab_to_rgb_hex(colors: np.ndarray) -> list[str]:
    """``'#rrggbb'`` strings of CIELAB colours ``(K, 3)``, for display."""
    rgb = lab_to_rgb(np.asarray(colors).reshape(-1, 3))
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb.tolist()]


@cache
def _prototype_table() -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(name for name, rgbs in _PROTOTYPES for _ in rgbs)
    rgb = np.array([c for _, rgbs in _PROTOTYPES for c in rgbs], dtype=np.uint8)
    return names, rgb_to_lab(rgb)


def colour_names(palette: Palette, min_weight: float = 0.15) -> list[str]:
    """Basic colour words of the palette colours weighing at least ``min_weight``, heaviest first."""
    names, protos = _prototype_table()
    words: list[str] = []
    for colour, weight in zip(palette.colors, palette.weights):
        if weight < min_weight:
            continue
        word = names[int(np.argmin(np.linalg.norm(protos - colour, axis=1)))]
        if word not in words:
            words.append(word)
    return words
