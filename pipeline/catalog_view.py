"""The in-memory view of the catalogue that the ranker reads, kept in step with the store.

:class:`LiveView` loads a :class:`fusion.ranker.CatalogView` from the store at start-up (vector
owners, image palettes and tags, product titles, words, tags and facets, the text statistics, each
product's place in word space) and applies each committed write to it, so the next search sees the
change without a reload.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict

import numpy as np

from core.catalog import Product, WriteResult
from core.errors import NotFoundError
from core.filters import facet_labels, facets
from core.protocols import VectorIndex
from fusion.image_signals import ImageInfo, ImageSignals
from fusion.ranker import CatalogView, merchant_words
from fusion.semantic import SemanticSpace
from fusion.text import TextScorer, tokenize
from fusion.vector_owners import VectorOwners
from pipeline.store_base import CatalogStoreBase as CatalogStore
from pipeline.words import WordMapper, name_words, vocabulary

log = logging.getLogger(__name__)


class LiveView:
    def __init__(self, store: CatalogStore, index: VectorIndex, text_scale: float, words: WordMapper | None = None,
                 semantic_floor: float = 0.35, dim: int = 0) -> None:
        """``words``: places each product's pictures in word space (the semantic signal; None: off);
        ``dim``: the image vectors' size (what the word map reads)."""
        self.store = store
        self.text_scale = text_scale
        self.words = words
        self.dim = dim
        self.view = CatalogView(index=index, images=ImageSignals(self._image_signals), fts=store.fts_search,
                                local_features=store.local_features,
                                semantic=SemanticSpace(words.dim) if words is not None else None,
                                semantic_floor=semantic_floor)
        self._names: Counter[str] = Counter()  # in how many products' names (title, tags, category) each word is
        self._name_words: dict[str, frozenset[str]] = {}
        self._vocabulary: tuple[list[str], np.ndarray] | None = None  # its describing words and their vectors
        self._df: Counter[str] = Counter()  # how many products each word appears in
        self.labels: dict[str, str] = {}  # a normalised facet value -> how a product spells it
        self._load()

    def _load(self) -> None:
        view = self.view
        columns = self.store.vector_owner_columns()
        view.vector_owner = VectorOwners.from_columns(columns.ids, columns.images, columns.skus, columns.sku_names,
                                                      columns.regions, columns.region_names)
        texts = self.store.texts_and_colours()
        for product in self.store.list_products(limit=-1):
            self._set_product(product, *texts.get(product.sku, ("", [])))
        self._refresh_scorer()
        if self.words is not None:
            self._place_all()

    def use_words(self, words: WordMapper) -> None:
        """Place every product anew with ``words`` (a new word map, or another mix)."""
        self.words = words
        self._place_all()

    def _place_all(self, chunk: int = 20_000) -> None:
        """Every product's place in word space, from its pictures' tags (ConSE) or vectors (word map),
        read a chunk of products at a time."""
        t0 = time.perf_counter()
        owners, words, space = self.view.vector_owner, self.words, self.view.semantic
        assert words is not None and space is not None
        batch: list[str] = []
        held = 0
        skus = owners.skus()
        for i, sku in enumerate(skus):
            batch.append(sku)
            held += len(owners.of_sku(sku))
            if held < chunk and i < len(skus) - 1:
                continue
            ids = [owners.of_sku(s) for s in batch]
            vectors: list | None = None
            if words.projection is not None:
                read = self.store.vectors_by_id(np.concatenate(ids), self.dim, missing_ok=True)
                vectors = np.split(read, np.cumsum([len(v) for v in ids])[:-1])
            tags: dict[str, list] = defaultdict(list)
            if words.projection is None or words.mix > 0:
                image_ids = np.unique(np.concatenate([owners.lookup(v)[1] for v in ids]))
                for _, s, pairs in self.store.image_tags(image_ids.tolist()):
                    tags[s].append(pairs)
            for s, vec in zip(batch, words.products([tags.get(s, []) for s in batch], vectors)):
                space.set(s, vec)
            batch, held = [], 0
        log.info("placed %d products in word space (%s) in %.1f s", len(space), words.source,
                 time.perf_counter() - t0)

    def _place(self, sku: str, tags: list) -> None:
        """One product's place in word space, from its stored pictures."""
        if self.words is None or self.view.semantic is None:
            return
        vectors = None
        if self.words.projection is not None:
            vids = self.view.vector_owner.of_sku(sku)
            vectors = self.store.vectors_by_id(vids, self.dim, missing_ok=True) if len(vids) else None
        self.view.semantic.set(sku, self.words.picture(tags, vectors))

    def vocabulary(self) -> tuple[list[str], np.ndarray]:
        """The words the catalogue names its products with, and their vectors (made again when a write
        changed them)."""
        assert self.words is not None
        if self._vocabulary is None:
            words = vocabulary(self._names, len(self._name_words))
            self._vocabulary = words, self.words.word_vectors(words)
        return self._vocabulary

    def _image_signals(self, image_ids: list[int]) -> dict[int, ImageInfo]:
        return {image_id: ImageInfo(sku, palette, tags)
                for image_id, sku, palette, tags in self.store.image_signals(image_ids)}

    def _set_product(self, product: Product, document: str, colours: list[str]) -> None:
        view = self.view
        old = view.sku_tokens.get(product.sku, frozenset())
        new = frozenset(tokenize(document))
        self._df.subtract(old)
        self._df.update(new)
        view.sku_tokens[product.sku] = new
        view.titles[product.sku] = product.title or product.sku
        view.merchant_tags[product.sku] = merchant_words(product.tags)
        # the colour names of its images' palettes, as the full-text index holds them
        view.facets[product.sku] = facets(product.category, product.brand, product.tags, product.price, set(colours))
        self._rename(product.sku, name_words(product.title, product.tags, product.category))
        for norm, label in facet_labels(product.category, product.brand, product.tags).items():
            self.labels.setdefault(norm, label)  # the first spelling seen names the value

    def _refresh_scorer(self) -> None:
        """The text statistics changed: the scorer is made anew when a search next needs it, so a
        write does not pay for the whole vocabulary."""
        def make() -> TextScorer:
            self._df = +self._df  # drop zero counts
            return TextScorer(self._df, len(self.view.sku_tokens), self.text_scale)

        self.view.stale_text_scorer = make

    def apply(self, result: WriteResult, sku: str, refresh: bool = True) -> None:
        """Bring the vector index and the view up to date with one committed write to ``sku``.

        An index that filters by itself (Milvus) keeps each vector's product facets: when they
        changed, the product's other vectors are written again with them (``refresh`` False: the
        process that made the write did that, the index being shared)."""
        view = self.view
        view.index.remove(result.removed_ids)
        view.images.forget(image_id for image_id, _, _ in view.vector_owner.remove(result.removed_ids))
        before = view.facets.get(sku)
        try:
            product = self.store.get_product(sku)
        except NotFoundError:  # the product is gone: forget it
            self._forget(sku)
        else:
            self._reload_product(product)
        if len(result.added_ids):
            view.index.add(result.added_ids, result.added_vectors)
        if refresh and view.index.filters_inside and before is not None and view.facets.get(sku, before) != before:
            view.index.refresh(np.setdiff1d(view.vector_owner.of_sku(sku), result.added_ids))  # type: ignore[attr-defined]
        self._refresh_scorer()

    def sync(self, sku: str, dim: int, shared: bool = False) -> None:
        """Bring the view and the vector index up to date with whatever another process wrote to
        ``sku``: the vectors the store holds for it now against those the view holds.  A ``shared``
        index (Milvus) has them from the writer; only those it lacks (the writer died between its
        commit and its index write) are added, and removing what the writer removed is harmless."""
        stored = np.asarray([r[0] for r in self.store.vector_owners(sku)], np.int64)
        held = self.view.vector_owner.of_sku(sku)
        added = np.setdiff1d(stored, held)
        if shared and len(added):
            added = np.setdiff1d(added, self.view.index.held(added))  # type: ignore[attr-defined]
        vectors = self.store.vectors_by_id(added, dim, missing_ok=True) if len(added) else np.zeros((0, dim), np.float32)
        self.apply(WriteResult(added, vectors, np.setdiff1d(held, stored)), sku, refresh=not shared)

    def _forget(self, sku: str) -> None:
        view = self.view
        view.vector_owner.remove(view.vector_owner.of_sku(sku))
        self._df.subtract(view.sku_tokens.pop(sku, frozenset()))
        view.titles.pop(sku, None)
        view.merchant_tags.pop(sku, None)
        view.facets.pop(sku, None)
        if view.semantic is not None:
            view.semantic.remove(sku)
        self._rename(sku, None)

    def _rename(self, sku: str, words: frozenset[str] | None) -> None:
        """``sku`` is now named with ``words`` (None: it is gone); the vocabulary is made again if that
        changed it."""
        old = self._name_words.pop(sku, None)
        if words is not None:
            self._name_words[sku] = words
        if old == words:
            return
        self._names.subtract(old or ())
        self._names.update(words or ())
        self._vocabulary = None

    def _reload_product(self, product: Product) -> None:
        view, sku = self.view, product.sku
        stored_images = self.store.images(sku)
        for im in stored_images:
            view.images.put(im.id, ImageInfo(im.sku, im.palette, im.tags))
        owners, rows = view.vector_owner, self.store.vector_owners(sku)
        stored = np.asarray([r[0] for r in rows], np.int64)
        owners.remove(np.setdiff1d(owners.of_sku(sku), stored))  # none, unless the view missed a write
        held, _, _, _ = owners.lookup(stored)
        new = [r for r, h in zip(rows, held.tolist()) if not h]
        if new:
            vids, images, regions = zip(*new)
            owners.extend(vids, images, [sku] * len(new), regions)
        self._set_product(product, *self.store.texts_and_colours(sku).get(sku, ("", [])))
        self._place(sku, [im.tags for im in stored_images])
