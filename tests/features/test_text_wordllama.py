"""The text embedder (WordLlama), offline from the model cache: unit vectors where words of like
meaning are near, zero vectors for texts without a word, and a clear error without its files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelNotFoundError
from core.models import model_path
from core.settings import ModelSettings
from features.text_wordllama import TOKENIZER, WEIGHTS, WordLlamaTextEmbedder


def _missing() -> str | None:
    try:
        for name in (WEIGHTS, TOKENIZER):
            model_path(name, ModelSettings().cache_dir)
    except ModelNotFoundError as exc:
        return str(exc)
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture(scope="module")
def embedder() -> WordLlamaTextEmbedder:
    return WordLlamaTextEmbedder(ModelSettings())


def test_texts_become_unit_vectors_and_like_meanings_are_near(embedder) -> None:
    texts = ["apple juice", "orange juice", "red sneakers", "crimson running shoes", "striped shirt"]
    v = embedder.embed(texts)
    assert v.shape == (5, 256) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > max(sim[0, 2], sim[0, 3], sim[0, 4]) + 0.3  # juices with juices
    assert sim[2, 3] > max(sim[2, 0], sim[2, 1], sim[2, 4]) + 0.1  # sneakers with running shoes
    assert np.allclose(embedder.embed(["apple juice"]), v[:1])  # the same text, the same vector


def test_a_text_without_a_word_gives_a_zero_vector(embedder) -> None:
    v = embedder.embed(["", "  ", "!?", "oat milk"])
    assert not v[:3].any() and np.isclose(np.linalg.norm(v[3]), 1.0)
    assert embedder.embed([]).shape == (0, 256)


def test_without_its_files_it_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="skulens models fetch"):
        WordLlamaTextEmbedder(ModelSettings(cache_dir=tmp_path)).embed(["oat milk"])
