"""EfficientNet-Lite2 embedder: the real model on generated product images; preprocessing without it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.protocols import Embedder
from core.types import Tags
from features.embed_efficientnet import DIM, INPUT_SIZE, imagenet_labels, preprocess
from tests.conftest import product_image

PAD = (255 - 127) / 128
BLACK = (0 - 127) / 128


# --- no model ---------------------------------------------------------------------------


def test_imagenet_labels_has_1000_entries() -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert all(label == label.strip() and label for label in labels)


def test_preprocess_keeps_aspect_with_white_padding_rows() -> None:
    wide = np.zeros((50, 100, 3), np.uint8)  # 100 wide, 50 high -> 260 x 130 in the middle
    batch = preprocess([wide])
    assert batch.shape == (1, 3, INPUT_SIZE, INPUT_SIZE) and batch.dtype == np.float32
    top = (INPUT_SIZE - 130) // 2
    assert np.all(batch[0, :, :top, :] == PAD)
    assert np.all(batch[0, :, top + 130:, :] == PAD)
    assert np.all(batch[0, :, top:top + 130, :] == BLACK)


def test_preprocess_pads_columns_of_a_tall_image() -> None:
    tall = np.zeros((100, 50, 3), np.uint8)
    batch = preprocess([tall, tall])
    left = (INPUT_SIZE - 130) // 2
    assert batch.shape[0] == 2
    assert np.all(batch[:, :, :, :left] == PAD)
    assert np.all(batch[:, :, :, left + 130:] == PAD)
    assert np.all(batch[:, :, :, left:left + 130] == BLACK)


# --- the real model ---------------------------------------------------------------------


def shifted_resized(image: np.ndarray) -> np.ndarray:
    """The same picture moved a little and scaled down slightly, on white."""
    h, w = image.shape[:2]
    small = np.asarray(Image.fromarray(image).resize((int(w * 0.9), int(h * 0.9)), Image.Resampling.BILINEAR))
    out = np.full_like(image, 255)
    out[20:20 + small.shape[0], 12:12 + small.shape[1]] = small
    return out


@pytest.fixture(scope="module")
def embedder(real_stages):
    return real_stages.embedder


@pytest.mark.model
def test_embed_shape_dtype_norm_and_tags(embedder) -> None:
    assert isinstance(embedder, Embedder) and embedder.dim == DIM
    images = [product_image((200, 20, 20), "APPLE", "ellipse"), product_image((30, 60, 200), "ARLA", "box", 200)]
    vectors, tags = embedder.embed(images)
    assert vectors.shape == (2, DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    labels = set(imagenet_labels())
    k = embedder.settings.tags_top_k
    assert len(tags) == 2
    for t in tags:
        assert isinstance(t, Tags) and len(t) == k
        assert set(t.labels) <= labels and len(set(t.labels)) == k
        assert np.all((t.scores >= 0) & (t.scores <= 1))
        assert np.all(np.diff(t.scores) <= 0)


@pytest.mark.model
def test_empty_batch(embedder) -> None:
    vectors, tags = embedder.embed([])
    assert vectors.shape == (0, DIM) and vectors.dtype == np.float32 and tags == []


@pytest.mark.model
def test_similar_images_are_closer_than_different_ones(embedder) -> None:
    red = product_image((200, 20, 20), "APPLE", "ellipse")
    vectors, _ = embedder.embed([red, shifted_resized(red), product_image((30, 60, 200), "ARLA", "box")])
    same, other = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert same > other
    assert same > 0.8


@pytest.mark.model
def test_batch_equals_one_by_one(embedder) -> None:
    images = [product_image((200, 20, 20), "APPLE", "ellipse"), product_image((60, 180, 40), "LIME", "ellipse", 180),
              np.asarray(Image.new("RGB", (90, 40), (40, 40, 40)))]
    batch, batch_tags = embedder.embed(images)
    for i, image in enumerate(images):
        single, single_tags = embedder.embed([image])
        np.testing.assert_allclose(batch[i], single[0], atol=1e-4)
        assert single_tags[0].labels[0] == batch_tags[i].labels[0]
