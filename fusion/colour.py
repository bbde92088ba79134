"""Colour similarity of two palettes: a weighted, symmetric chamfer distance in CIELAB.

Each colour of one palette is matched to the nearest colour of the other; the distances,
weighted by the matched colour's share, are summed both ways and averaged::

    d(a -> b) = sum_i w_i * min_j ||a_i - b_j||
    d         = (d(a -> b) + d(b -> a)) / 2
    similarity = exp(-d / scale)

so identical palettes score 1, and a ``scale`` of CIELAB distance scores ``1/e``.
An empty palette (no colours known) scores 0 against anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.types import Palette


def _check_scale(scale: float) -> None:
    if not scale > 0:
        raise ValueError(f"expected a positive scale, got {scale}")


def palette_similarity(a: Palette, b: Palette, scale: float) -> float:
    """Similarity in [0, 1] of two palettes; 1.0 when identical, 0.0 when either is empty."""
    _check_scale(scale)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    ca, cb = a.colors.astype(np.float64), b.colors.astype(np.float64)
    dist = np.sqrt(((ca[:, None, :] - cb[None, :, :]) ** 2).sum(axis=-1))
    d_ab = float(np.dot(a.weights.astype(np.float64), dist.min(axis=1)))
    d_ba = float(np.dot(b.weights.astype(np.float64), dist.min(axis=0)))
    return float(np.exp(-(d_ab + d_ba) / 2.0 / scale))


def _stack(palettes: Sequence[Palette]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colours ``(N, K, 3)``, weights ``(N, K)`` and validity ``(N, K)``, padded to the longest."""
    width = max((len(p) for p in palettes), default=0)
    colours = np.zeros((len(palettes), max(width, 1), 3))
    weights = np.zeros((len(palettes), max(width, 1)))
    for row, palette in enumerate(palettes):
        colours[row, : len(palette)] = palette.colors
        weights[row, : len(palette)] = palette.weights
    valid = np.arange(colours.shape[1])[None, :] < np.array([len(p) for p in palettes])[:, None]
    return colours, weights, valid


def palette_similarities(query: Palette, palettes: Sequence[Palette], scale: float) -> np.ndarray:
    """:func:`palette_similarity` of ``query`` with each palette, as float64 ``(N,)``."""
    _check_scale(scale)
    out = np.zeros(len(palettes))
    if len(query) == 0 or len(palettes) == 0:
        return out
    colours, weights, valid = _stack(palettes)
    q = query.colors.astype(np.float64)
    # dist[n, i, j]: query colour i to colour j of palette n; padding is infinitely far.
    dist = np.sqrt(((q[None, :, None, :] - colours[:, None, :, :]) ** 2).sum(axis=-1))
    dist = np.where(valid[:, None, :], dist, np.inf)
    nonempty = np.asarray(valid.any(axis=1))
    nearest_c = np.where(nonempty[:, None], dist.min(axis=2), 0.0)
    d_qc = nearest_c @ query.weights.astype(np.float64)
    d_cq = (weights * np.where(valid, dist.min(axis=1), 0.0)).sum(axis=1)
    out[nonempty] = np.exp(-(d_qc[nonempty] + d_cq[nonempty]) / 2.0 / scale)
    return out
