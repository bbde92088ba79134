"""``skulens words train``: learn where a catalogue's pictures fall among words from the catalogue
itself.  Every stored picture (the mean of its region vectors) is paired with its product's words
(:func:`pipeline.words.product_text`); :func:`features.devise.fit_projection` learns the linear map,
choosing its penalty by cross-validation over products with different words."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection

import numpy as np

from core.errors import InvalidInputError
from features.devise import Projection, fit_projection, unit_rows
from pipeline.engine import Engine
from pipeline.words import product_text, today

log = logging.getLogger(__name__)

MIN_PRODUCTS = 4
"""Products with words of their own a word map needs at the least (fewer: ConSE stays)."""


def training_pairs(engine: Engine, skus: Collection[str] | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """(picture vectors ``(n, d)``, their products' texts, their SKUs): one row per stored picture of a
    product that has words (those of ``skus`` only, when given)."""
    view, store, dim = engine.view, engine.store, engine.stages.embedder.dim
    rows: list[np.ndarray] = []
    texts: list[str] = []
    owners: list[str] = []
    for product in store.list_products(limit=-1):
        if skus is not None and product.sku not in skus:
            continue
        text = product_text(product.title, product.category, product.tags, product.description)
        vids = view.vector_owner.of_sku(product.sku)
        if not text or not len(vids):
            continue
        _, images, _, _ = view.vector_owner.lookup(vids)
        vectors = unit_rows(store.vectors_by_id(vids, dim))
        per_image: dict[int, list[np.ndarray]] = defaultdict(list)
        for image_id, vec in zip(images.tolist(), vectors):
            per_image[image_id].append(vec)
        for vecs in per_image.values():
            rows.append(np.mean(vecs, axis=0))
            texts.append(text)
            owners.append(product.sku)
    return (np.stack(rows) if rows else np.zeros((0, dim), np.float32)), texts, owners


def train_word_map(engine: Engine, skus: Collection[str] | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> Projection:
    """The word map learnt from ``engine``'s catalogue (``skus`` only, when given); not yet kept
    (:meth:`pipeline.engine.Engine.use_word_map` keeps it)."""
    text = engine.stages.text
    if text is None:
        raise InvalidInputError("words are off (words.enabled false): there is no word space to learn a map into")
    t0 = time.perf_counter()
    x, texts, owners = training_pairs(engine, skus)
    if progress:
        progress("pictures", len(texts), len(texts))
    described = len(set(texts))
    if described < MIN_PRODUCTS:
        raise InvalidInputError(f"a word map needs pictures of at least {MIN_PRODUCTS} products with different "
                                f"titles, descriptions or tags; this catalogue has {described}")
    distinct = sorted(set(texts))
    vectors = dict(zip(distinct, text.embed(distinct)))
    y = np.stack([vectors[t] for t in texts])
    keep = np.any(y, axis=1)  # a text of digits and signs alone has no place among words
    projection = fit_projection(x[keep], y[keep], np.asarray(texts)[keep], engine.stages.embedder.name, text.name)
    projection.trained = today()
    projection.fit["products"] = len(set(np.asarray(owners)[keep].tolist()))
    projection.fit["seconds"] = round(time.perf_counter() - t0, 1)
    log.info("word map learnt from %d pictures of %d products in %.1f s: %s", projection.pairs,
             projection.fit["products"], projection.fit["seconds"], projection.fit)
    return projection
