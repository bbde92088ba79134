"""The word map (DeViSE, fitted in closed form): it recovers a linear map, keeps and checks what it
was learnt between, refuses too little data, and on a small real set (Caltech-101 pictures titled
with their class names) places pictures it never saw nearest their own class's words."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidInputError
from core.settings import ModelSettings, Settings
from features.devise import Projection, fit_projection, retrieval_figures, unit_rows
from tests.conftest import DATASETS, models_missing
from tests.features.test_text_wordllama import _missing


def _synthetic(n_groups: int = 8, per_group: int = 6, d_in: int = 32, d_out: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    words = unit_rows(rng.normal(size=(n_groups, d_out)))
    true = rng.normal(size=(d_out, d_in))
    groups = np.repeat(np.arange(n_groups), per_group)
    x = unit_rows(words[groups] @ true + 0.3 * rng.normal(size=(len(groups), d_in)))
    return x, words[groups], groups


def test_a_fitted_map_sends_held_out_pictures_to_their_words() -> None:
    x, y, groups = _synthetic()
    train = np.arange(len(x)) % 6 != 0
    p = fit_projection(x[train], y[train], groups[train], "emb", "text")
    figures = retrieval_figures(p.project(x[~train]), y[~train], groups[~train])
    assert figures["p@1"] == 1.0 and figures["map"] > 0.95
    assert p.alpha in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0) and p.fit["cv_map"] > 0.5 and p.pairs == train.sum()
    assert np.allclose(np.linalg.norm(p.project(x), axis=1), 1.0)


def test_a_map_keeps_and_checks_what_it_was_learnt_between() -> None:
    x, y, groups = _synthetic()
    p = fit_projection(x, y, groups, "efficientnet-lite2-imagenet", "wordllama-l2-supercat-256")
    back = Projection.from_json(p.to_json())
    assert np.allclose(back.project(x), p.project(x)) and back.fit == p.fit
    assert back.check("efficientnet-lite2-imagenet", "wordllama-l2-supercat-256", 32) is None
    assert "learnt from the vectors of efficientnet-lite2-imagenet" in back.check("skulens-ft-1", "wordllama-l2-supercat-256", 32)
    assert "word space" in back.check("efficientnet-lite2-imagenet", "other-text", 32)
    back.version = 0
    assert "another version" in back.check("efficientnet-lite2-imagenet", "wordllama-l2-supercat-256", 32)
    with pytest.raises(InvalidInputError, match="32-d image vectors"):
        p.project(np.ones((1, 5)))


def test_too_few_described_products_are_refused() -> None:
    x, y, groups = _synthetic(n_groups=3)
    with pytest.raises(InvalidInputError, match="at least 4"):
        fit_projection(x, y, groups, "e", "t")
    with pytest.raises(InvalidInputError, match="one text per picture"):
        fit_projection(x, y[:-1], groups, "e", "t")


LABELS = ("airplanes", "Motorbikes", "Faces_easy", "Leopards", "sunflower", "watch", "chair", "pizza")


@pytest.mark.dataset
@pytest.mark.skipif(models_missing() is not None or _missing() is not None,
                    reason=str(models_missing() or _missing()))
def test_trained_on_a_small_real_set_unseen_pictures_land_nearest_their_class() -> None:
    root = DATASETS / "caltech101"
    if not (root / "manifest.csv").exists():
        pytest.skip(f"no Caltech-101 at {root}")
    from features.text_wordllama import WordLlamaTextEmbedder
    from pipeline.build import make_embedder

    with open(root / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] in LABELS]
    paths = {label: [root / r["path"] for r in rows if r["label"] == label][:6] for label in LABELS}
    embedder = make_embedder(Settings(), None)
    text = WordLlamaTextEmbedder(ModelSettings())
    names = [label.replace("_", " ").lower() for label in LABELS]
    words = text.embed(names)
    x, groups = [], []
    for i, label in enumerate(LABELS):
        pictures = [np.asarray(Image.open(p).convert("RGB")) for p in paths[label]]
        vectors, _ = embedder.embed(pictures)
        x.append(vectors)
        groups += [i] * len(pictures)
    x, groups = np.concatenate(x), np.asarray(groups)
    held = np.arange(len(x)) % 6 == 5  # each class's sixth picture is never trained on
    p = fit_projection(x[~held], words[groups[~held]], groups[~held], embedder.name, text.name)
    placed = p.project(x[held]) @ words.T  # (held-out pictures, class names)
    right = (placed.argmax(axis=1) == groups[held]).mean()
    assert right >= 0.75, f"{right:.2f} of unseen pictures nearest their class name"
    assert p.fit["cv_map"] > 0.5
