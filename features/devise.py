"""A linear map from image embeddings to word vectors, learnt from a catalogue's own pictures and
texts (DeViSE, Frome et al., NeurIPS 2013): every product's pictures should land where its words
are.  DeViSE trains the map with a ranking loss; this fits it in closed form (ridge regression,
centred), choosing the regularisation by cross-validation over products, which takes seconds on a
CPU and needs nothing but numpy.

A :class:`Projection` names the image embedder and the text embedder it was learnt between: vectors
of another embedder cannot go through it (:meth:`Projection.check`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import numpy as np

from core.errors import InvalidInputError

VERSION = 1
ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Ridge penalties tried (on unit-length image vectors), the one cross-validation prefers kept."""


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode()


def _unb64(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.float32).reshape(shape).copy()


@dataclass
class Projection:
    """``project(x)``: unit word vectors of image vectors ``x`` (``(n, d_in)``)."""

    matrix: np.ndarray  # (d_in, d_out)
    x_mean: np.ndarray  # (d_in,)
    y_mean: np.ndarray  # (d_out,)
    embedder: str  # the image embedder its inputs come from
    text_model: str  # the text embedder its outputs live with
    alpha: float
    pairs: int
    fit: dict = field(default_factory=dict)  # cross-validated figures (see :func:`fit_projection`)
    trained: str = ""  # when (ISO date)
    version: int = VERSION

    @property
    def dims(self) -> tuple[int, int]:
        return int(self.matrix.shape[0]), int(self.matrix.shape[1])

    def project(self, x: np.ndarray) -> np.ndarray:
        x = unit_rows(np.atleast_2d(x))
        if x.shape[1] != self.dims[0]:
            raise InvalidInputError(f"the word map takes {self.dims[0]}-d image vectors, got {x.shape[1]}-d")
        return unit_rows((x - self.x_mean) @ self.matrix + self.y_mean)

    def check(self, embedder: str, text_model: str, dim: int) -> str | None:
        """Why the map cannot place this embedder's vectors in this text space (None: it can)."""
        if self.version != VERSION:
            return f"it was made by another version of skulens (format {self.version}, this one reads {VERSION})"
        if self.embedder != embedder or self.dims[0] != dim:
            return f"it was learnt from the vectors of {self.embedder} ({self.dims[0]}-d), not {embedder} ({dim}-d)"
        if self.text_model != text_model:
            return f"it maps into {self.text_model}'s word space, not {text_model}'s"
        return None

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "embedder": self.embedder, "text_model": self.text_model,
                           "alpha": self.alpha, "pairs": self.pairs, "fit": self.fit, "trained": self.trained,
                           "shape": list(self.matrix.shape), "matrix": _b64(self.matrix),
                           "x_mean": _b64(self.x_mean), "y_mean": _b64(self.y_mean)})

    @classmethod
    def from_json(cls, text: str) -> "Projection":
        d = json.loads(text)
        d_in, d_out = d["shape"]
        return cls(_unb64(d["matrix"], (d_in, d_out)), _unb64(d["x_mean"], (d_in,)), _unb64(d["y_mean"], (d_out,)),
                   d["embedder"], d["text_model"], float(d["alpha"]), int(d["pairs"]), d.get("fit", {}),
                   d.get("trained", ""), int(d.get("version", 0)))


def _solve(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred ridge regression of ``y`` on ``x``: (matrix, x mean, y mean); solved in the smaller of
    the two Gram forms (pairs x pairs when there are fewer pairs than input dimensions)."""
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    xc, yc = (x - xm).astype(np.float64), (y - ym).astype(np.float64)
    n, d = xc.shape
    if n < d:
        w = xc.T @ np.linalg.solve(xc @ xc.T + alpha * np.eye(n), yc)
    else:
        w = np.linalg.solve(xc.T @ xc + alpha * np.eye(d), xc.T @ yc)
    return w.astype(np.float32), xm.astype(np.float32), ym.astype(np.float32)


def retrieval_figures(predicted: np.ndarray, targets: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Text -> image retrieval among held-out pairs: each distinct target text queries the predicted
    vectors; relevant = pairs with that text's label.  Mean average precision and P@1."""
    aps, p1 = [], []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        sims = unit_rows(predicted) @ targets[rows[0]]
        order = np.argsort(-sims, kind="stable")
        hits = (labels[order] == label).astype(np.float64)
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(float((precision * hits).sum() / hits.sum()))
        p1.append(float(hits[0]))
    return {"map": float(np.mean(aps)), "p@1": float(np.mean(p1))}


def fit_projection(x: np.ndarray, y: np.ndarray, groups: np.ndarray, embedder: str, text_model: str,
                   folds: int = 5, alphas: tuple[float, ...] = ALPHAS, seed: int = 0) -> Projection:
    """Learn the map from image vectors ``x`` (``(n, d_in)``) to unit word vectors ``y`` (``(n, d_out)``).

    ``groups``: one label per pair (pairs with one text share it): cross-validation holds whole groups
    out, and scores each penalty by how well held-out pairs' texts find them (mean average precision;
    :func:`retrieval_figures`); the best penalty is then fitted on every pair."""
    x, y = unit_rows(x), unit_rows(y)
    groups = np.asarray(groups)
    if len(x) != len(y) or len(x) != len(groups):
        raise InvalidInputError(f"expected one text per picture, got {len(x)} pictures and {len(y)} texts")
    distinct = np.unique(groups)
    if len(distinct) < 4:
        raise InvalidInputError(f"a word map needs pictures of at least 4 differently described products, got "
                                f"{len(distinct)}")
    rng = np.random.default_rng(seed)
    # each fold holds out at least two groups: a held-out text must be told from another
    fold_of = dict(zip(rng.permutation(distinct).tolist(), np.arange(len(distinct)) % min(folds, len(distinct) // 2)))
    fold = np.asarray([fold_of[g] for g in groups.tolist()])
    scores: dict[float, list[float]] = {a: [] for a in alphas}
    for k in np.unique(fold):
        train, test = fold != k, fold == k
        for a in alphas:
            w, xm, ym = _solve(x[train], y[train], a)
            figures = retrieval_figures((x[test] - xm) @ w + ym, y[test], groups[test])
            scores[a].append(figures["map"])
    mean = {a: float(np.mean(v)) if v else 0.0 for a, v in scores.items()}
    best = max(alphas, key=lambda a: (mean[a], -a))
    w, xm, ym = _solve(x, y, best)
    return Projection(w, xm, ym, embedder, text_model, best, len(x),
                      {"cv_map": round(mean[best], 4), "folds": int(len(np.unique(fold))),
                       "groups": int(len(distinct)), "cv_map_by_alpha": {str(a): round(m, 4) for a, m in mean.items()}})
