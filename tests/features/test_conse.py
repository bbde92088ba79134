"""ConSE: an image in word space as the probability-weighted mix of its ImageNet classes' label
vectors; on real catalogue pictures whose class is known, the nearest product word is that class."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.settings import ModelSettings, Settings
from core.types import Tags
from features.conse import ConseMapper
from features.text_wordllama import WordLlamaTextEmbedder
from tests.conftest import DATASETS, models_missing
from tests.features.test_text_wordllama import _missing

pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))

WORDS = ["banana", "lemon", "pepper", "milk", "juice", "yoghurt", "apple", "shoe", "shirt", "car"]


@pytest.fixture(scope="module")
def mapper() -> ConseMapper:
    return ConseMapper(WordLlamaTextEmbedder(ModelSettings()))


def test_the_mix_leans_to_the_likelier_class(mapper) -> None:
    text = mapper.text.embed(["banana", "lemon"])
    v = mapper.vector(Tags(("banana", "lemon"), np.array([0.8, 0.2])))
    assert np.isclose(np.linalg.norm(v), 1.0)
    assert v @ text[0] > v @ text[1] > 0
    assert not mapper.vector(Tags((), np.zeros(0))).any()
    assert mapper.nearest(np.zeros(mapper.text.dim, np.float32), WORDS) == []


@pytest.fixture(scope="module")
def image_embedder():
    from pipeline.build import make_embedder

    return make_embedder(Settings(), None)


@pytest.mark.dataset
@pytest.mark.skipif(models_missing() is not None, reason=str(models_missing()))
@pytest.mark.parametrize(("picture", "word"), [("Banana", "banana"), ("Lemon", "lemon"), ("Red-Bell-Pepper", "pepper")])
def test_a_real_picture_lands_nearest_its_class_word(mapper, image_embedder, picture: str, word: str) -> None:
    path = DATASETS / "grocery" / "catalog" / f"{picture}.jpg"
    if not path.exists():
        pytest.skip(f"no grocery catalogue at {path.parent}")
    _, tags = image_embedder.embed([np.asarray(Image.open(path).convert("RGB"))])
    nearest = mapper.nearest(mapper.vector(tags[0]), WORDS, k=3)
    assert nearest[0][0] == word, nearest
