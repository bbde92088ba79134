"""The engine: a catalogue and search over it.  Owns the store (source of truth: SQLite in the data
directory, or PostgreSQL), the vector index (FAISS, saved in the background by
:mod:`pipeline.index_file`; or a shared Milvus collection) and the in-memory view the ranker reads.
Every change applies to the index in place; writes other processes make are followed (:meth:`catch_up`).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from core.catalog import NewImage, Product, WriteResult
from core.errors import InvalidImageError, NotFoundError, StorageError
from core.filters import FacetCounts, SearchFilters, count_facets, filter_notes
from core.results import Analysis, ResultGroup, SearchResult
from core.settings import Settings
from core.types import ObjectFeatures
from features.devise import Projection
from fusion.faiss_index import choose_kind
from fusion.ranker import (
    CatalogView,
    FusionRanker,
    apply_filters,
    gather_candidates,
    parse_weights,
    query_tokens,
)
from fusion.text import tokenize
from pipeline import writer_lock
from pipeline.analysis import (
    Analyzer,
    Stages,
    catalogue_regions,
    fingerprint,
    has_centre_views,
)
from pipeline.catalog_view import LiveView
from pipeline.compat import (
    check_embedder,
    check_regions,
    embedder_reference,
    regions_record,
)
from pipeline.dedup import cached_centres, cached_hashes
from pipeline.files import FileStore
from pipeline.follow import Follower
from pipeline.images import decode_image, sha256_hex
from pipeline.index_file import IndexFile, build_index, open_index
from pipeline.priority import SearchFirst
from pipeline.store import has_catalogue, open_store
from pipeline.tuned import tuned_weights
from pipeline.words import WordMapper, save_projection, stored_projection

log = logging.getLogger(__name__)


def pipeline_fingerprint(settings: Settings, stages: Stages, *parts: object) -> str:
    """A short hash of every model and setting that shapes an image's analysis (plus ``parts``):
    the feature cache keys on it, and so does each evaluation's indexed gallery."""
    s = settings
    weights = stages.detector.name if stages.detector is not None else None  # trained detectors: which weights
    # which embedder weights, runtime and input size are in the embedder's name (float runtimes give the
    # same vectors)
    embedder = " ".join(f"{k}={v!r}" for k, v in s.embedder if k not in ("weights", "runtime", "input_size"))
    ocr = " ".join(f"{k}={v!r}" for k, v in s.ocr if k != "parallel")  # how, not what, it reads
    # keypoints: only what shapes them (the rest is how candidates are checked, at search time)
    local = [f"keypoints={s.verify.side}x{s.verify.features}"] if stages.geometry is not None else []
    return fingerprint(stages.embedder.name, s.detector, s.background, s.colour, ocr, embedder, *parts,
                       *([weights] if weights else []), *local)


class Engine:
    def __init__(self, settings: Settings, stages: Stages, feature_cache=None, reembedding: bool = False,
                 read_only: bool = False) -> None:
        """``feature_cache``: where analyses are cached by content hash (default: the catalogue database).

        ``reembedding``: open a catalogue made by another embedder, to re-embed it (``skulens reindex``).
        ``read_only``: search only, beside the process that writes (no writer lock; the catalogue as it
        was when opened, and no writes).  Otherwise the engine holds the data directory's writer lock
        (:mod:`pipeline.writer_lock`) until :meth:`close`."""
        self.settings = settings
        self.stages = stages
        self.read_only = read_only
        self.data = Path(settings.data)
        if read_only and not has_catalogue(settings):
            raise NotFoundError(f"no catalogue in {self.data}: index one first (`skulens --data {self.data} index ...`)")
        self.data.mkdir(parents=True, exist_ok=True)
        self._writer = None if read_only else writer_lock.acquire(self.data)
        try:
            self._open(feature_cache, reembedding)
        except BaseException:
            if getattr(self, "store", None) is not None:
                self.store.close()
            self._release()
            raise

    def _open(self, feature_cache, reembedding: bool) -> None:
        settings, stages = self.settings, self.stages
        self.store = open_store(settings)
        self._shared_index = bool(settings.index.uri)  # Milvus: other processes write the same index
        self._seen = self.store.generation()  # read before the view loads: what comes after is caught up
        self._follower: Follower | None = None
        self.files = FileStore.of(settings)  # the catalogue's image files
        self.features = feature_cache or self.store
        self.index_path = self.data / "index" / "vectors.faiss"
        self.analyzer = Analyzer(stages, settings.ocr.enabled, settings.background.enabled, settings.ocr.parallel,
                                 settings.detector.main_object)
        self.ranker = FusionRanker(settings.colour.scale, settings.fusion.merchant_tag_weight, stages.geometry,
                                   settings.verify.top_k)
        self._lock = threading.RLock()
        # files of prepared images not yet written: a delete of another product holding the same
        # picture must not remove them (see _store_file and _drop_unused_files)
        self._files_lock = threading.Lock()
        self._pinned: Counter[str] = Counter()
        self.search_first = SearchFirst()
        if not reembedding:
            check_embedder(self.store, stages.embedder, self.data)
            check_regions(self.store, settings.fusion, stages.embedder, self.data)
        # weights learnt by `skulens tune` for this catalogue (and this embedder) win over the settings'
        # defaults; a catalogue with more images than products prefers those learnt with shop photos
        products, images, _ = self.store.count()
        tuned = tuned_weights(self.store, stages.embedder.name, photos=images > products)
        self.default_weights = {**settings.fusion.weights.as_dict(), **(tuned["weights"] if tuned else {})}
        self.sku_images = int((tuned or {}).get("sku_images") or settings.fusion.sku_images)
        index, stale = open_index(self.index_path, self.store, settings.index, stages.embedder.dim)
        self.words = self._word_mapper()
        self.live = self._live(index)
        self.index_file = IndexFile(self.index_path, self.store, settings.index, lambda: self.view.index, self._lock,
                                    read_only=self.read_only)
        if stale:
            self.index_file.changed()
        if settings.store.url and settings.store.follow_s > 0:  # other processes write the catalogue too
            self._follower = Follower(self.catch_up, settings.store.follow_s).start()

    def _word_mapper(self) -> WordMapper | None:
        """Words and pictures in one space (None when ``words.enabled`` is off): pictures placed by the
        catalogue's word map for this embedder when it has one (and ``words.projection``), else by ConSE."""
        text, words = self.stages.text, self.settings.words
        if text is None or not words.enabled:
            return None
        emb = self.stages.embedder
        projection = stored_projection(self.store, emb.name, text.name, emb.dim) if words.projection else None
        return WordMapper(text, projection, words.mix)

    def _live(self, index) -> LiveView:
        return LiveView(self.store, index, self.settings.fusion.text_scale, self.words, self.settings.words.floor,
                        self.stages.embedder.dim)

    def use_word_map(self, projection: Projection | None) -> None:
        """Keep ``projection`` (from ``skulens words train``) with the catalogue and place every product
        with it from now on (None: forget the catalogue's map, back to ConSE)."""
        self._writable()
        if self.stages.text is None:
            raise StorageError("words are off (words.enabled false): there is no word space to map pictures into")
        with self._lock:
            save_projection(self.store, projection, self.stages.embedder.name)
            self.words = self._word_mapper()
            assert self.words is not None
            self.live.use_words(self.words)

    def describe(self, obj: ObjectFeatures | None, k: int | None = None,
                 leave_out: tuple[str, ...] = ()) -> list[tuple[str, float]]:
        """Words of the catalogue's vocabulary nearest where ``obj``'s picture falls in word space."""
        if obj is None or self.words is None:
            return []
        vectors = np.stack(list(obj.vectors.values())) if obj.vectors else None
        with self._lock:
            return self.words.describe(self.words.picture([obj.tags], vectors), *self.live.vocabulary(),
                                       self.settings.words.describe if k is None else k, leave_out,
                                       self.settings.words.floor)

    def suggested_tags(self, sku: str, k: int | None = None) -> list[tuple[str, float]]:
        """Words a merchant could tag ``sku`` with: the catalogue's words nearest its pictures in word
        space, those its title and tags hold left out (search finds it by those already)."""
        product = self.store.get_product(sku)
        if self.words is None:
            return []
        with self._lock:
            vector = self.view.semantic.vector(sku) if self.view.semantic is not None else None
            have = {w for t in (product.title, *product.tags) for w in tokenize(t)}
            return self.words.describe(vector, *self.live.vocabulary(), self.settings.words.describe if k is None
                                       else k, have, self.settings.words.floor)

    @property
    def view(self) -> CatalogView:
        """What the ranker reads of the catalogue (kept in step with each write by :attr:`live`)."""
        return self.live.view

    # -- analysis ---------------------------------------------------------------------
    def decode(self, data: bytes, name: str = "image") -> np.ndarray:
        return decode_image(data, self.settings.images, name)

    def analyse(self, data: bytes, name: str, regions: tuple[str, ...], all_objects: bool = False,
                use_cache: bool = False, for_index: bool = False) -> tuple[np.ndarray | None, Analysis, str]:
        """Decode and analyse image bytes; with ``use_cache``, reuse features stored for the same content.

        ``for_index``: a catalogue image, masked by the background remover even where the detector
        has masks of its own, as ``background.at_index`` says."""
        sha = sha256_hex(data)
        bg = self.settings.background
        teacher = for_index and bg.enabled and bg.at_index and self.analyzer.detector_masks_differ()
        packshots = self.settings.fusion.packshot_centre_views
        key = (f"{sha}:{self._fingerprint(regions, all_objects)}" + (":teacher-masks" if teacher else "")
               + (f":packshot-views-{packshots}" if for_index and has_centre_views(regions) else ""))
        if use_cache and (hit := self.features.cached_features(key)) is not None:
            return None, Analysis.from_bytes(hit), sha
        t0 = time.perf_counter()
        image = self.decode(data, name)
        decode_ms = (time.perf_counter() - t0) * 1000
        if for_index:
            regions = catalogue_regions(image, regions, packshots)
        analysis = self.analyzer.analyse(image, regions, all_objects, teacher_masks=teacher)
        analysis.timings = {"decode": decode_ms, **analysis.timings}
        if use_cache:
            self.features.cache_features(key, analysis.to_bytes())
        return image, analysis, sha

    def _fingerprint(self, regions: tuple[str, ...], all_objects: bool) -> str:
        return pipeline_fingerprint(self.settings, self.stages, regions, all_objects)

    # -- search -----------------------------------------------------------------------
    def search(self, data: bytes | None, text: str | None = None, k: int = 10, weights: str | dict | None = None,
               all_objects: bool = False, name: str = "query", use_cache: bool = False,
               filters: SearchFilters | None = None) -> SearchResult:
        if data is None and not (text and text.strip()):
            raise InvalidImageError("a search needs a photo, a text, or both")
        w = parse_weights(weights, self.default_weights)
        # a photo search holds imports' analyses back meanwhile (pipeline/priority.py)
        with self.search_first.searching() if data is not None else nullcontext():
            return self._search(data, text, k, w, all_objects, name, use_cache, filters)

    def _search(self, data: bytes | None, text: str | None, k: int, w: dict, all_objects: bool, name: str,
                use_cache: bool, filters: SearchFilters | None) -> SearchResult:
        analysis = None
        objects: list[ObjectFeatures | None] = [None]
        if data is not None:
            _, analysis, _ = self.analyse(data, name, self.settings.fusion.query_regions, all_objects, use_cache)
            objects = list(analysis.objects)
        timings = dict(analysis.timings) if analysis else {}
        t0 = time.perf_counter()
        groups = []
        words = self.words.query(text) if self.words is not None else None
        with self._lock:
            fs = self.settings.fusion
            for obj in objects:
                tokens = query_tokens(obj.ocr.tokens, obj.ocr.confidences.tolist(), text) if obj else \
                    query_tokens((), (), text)
                cands = gather_candidates(self.view, obj, tokens, fs.candidates, fs.text_candidates,
                                          pooling=fs.region_pooling, sku_images=self.sku_images, filters=filters,
                                          words=words, n_semantic=self.settings.words.candidates)
                cands = apply_filters(self.view, obj, cands, filters, fs.filter_exhaustive_limit,
                                      pooling=fs.region_pooling, sku_images=self.sku_images)
                matches = self.ranker.rank(self.view, obj, tokens, cands, w, k, words)
                if data is None:  # words alone: a product none of them matched is not a result
                    matches = [m for m in matches if m.score > 0]
                groups.append(ResultGroup(obj, matches, self.describe(obj)))
            notes = []
            if filters is not None and not filters.empty and any(len(g.matches) < k for g in groups):
                notes = filter_notes(filters, self._facet_counts())
        timings["rank"] = (time.perf_counter() - t0) * 1000
        return SearchResult(analysis, groups, timings, notes, dict(w))

    def facet_counts(self) -> FacetCounts:
        """How many products carry each category, brand, tag and colour, and the price range."""
        with self._lock:
            return self._facet_counts()

    def _facet_counts(self) -> FacetCounts:
        return count_facets(list(self.view.facets.values()), self.live.labels)

    # -- catalogue changes ------------------------------------------------------------
    def write_lock(self) -> threading.RLock:
        """Hold it to make a read-modify-write of the catalogue atomic (searches wait for it)."""
        return self._lock

    def add_product(self, product: Product, images: list[tuple[str, bytes]], replace_images: bool = False,
                    source_hash: str | None = None) -> WriteResult:
        """Analyse ``(name, bytes)`` images and store the product with them, in one transaction.

        An image that fails to decode raises :class:`InvalidImageError` before anything is written.
        """
        self._writable()
        return self.write_prepared(product, self.prepare_images(images), replace_images, source_hash)

    def write_prepared(self, product: Product, images: list[NewImage], replace_images: bool = False,
                       source_hash: str | None = None) -> WriteResult:
        """Store the product with images :meth:`prepare_image` made, in one transaction."""
        return self.write_prepared_many([(product, images, replace_images, source_hash)])[0]

    def write_prepared_many(self, items: list[tuple[Product, list[NewImage], bool, str | None]]) -> list[WriteResult]:
        """Store several products as :meth:`write_prepared` stores one, in one transaction (all or none)."""
        self._writable()
        with self._lock:
            try:
                results = self.store.write_products(items)
            finally:
                self._unpin([im.file for _, images, _, _ in items for im in images])
            for (product, *_), result in zip(items, results):
                self.live.apply(result, product.sku)
            self._maybe_change_kind()
            self.index_file.changed()
        return results

    def prepare_image(self, name: str, data: bytes) -> NewImage:
        """Analyse one catalogue image (cached by content hash) and keep its file; writes nothing to the
        catalogue, so several threads may prepare images at once."""
        regions = self.settings.fusion.index_regions
        image, analysis, sha = self.analyse(data, name, regions, use_cache=True, for_index=True)
        if self.stages.hasher is not None:  # for near-duplicate checks of later uploads
            def load() -> np.ndarray:
                return image if image is not None else self.decode(data, name)
            cached_hashes(self.features, self.stages.hasher, sha, image, load)
            cached_centres(self.features, self.stages.embedder, [sha], [load])
        obj = analysis.objects[0]
        rel = self._store_file(sha, data)
        return NewImage(rel, sha, analysis.width, analysis.height, obj.palette, obj.ocr, obj.tags,
                        tuple(analysis.boxes), obj.vectors, obj.local)

    def prepare_images(self, images: list[tuple[str, bytes]]) -> list[NewImage]:
        """:meth:`prepare_image` for each, all or none: when one fails, those before it are released."""
        prepared: list[NewImage] = []
        try:
            for name, data in images:
                prepared.append(self.prepare_image(name, data))
        except BaseException:
            self.release_prepared(prepared)
            raise
        return prepared

    def _store_file(self, sha: str, data: bytes) -> str:
        from PIL import Image

        fmt = (Image.open(io.BytesIO(data)).format or "bin").lower().replace("jpeg", "jpg").replace("mpo", "jpg")
        rel = f"images/{sha[:2]}/{sha}.{fmt}"
        with self._files_lock:  # pinned until written: a delete meanwhile keeps the file
            self._pinned[rel] += 1
            self.files.put(rel, data)
        return rel

    def release_prepared(self, images: list[NewImage]) -> None:
        """Images :meth:`prepare_image` made that will not be written: their files may go again."""
        self._unpin([im.file for im in images])

    def _unpin(self, files: list[str]) -> None:
        with self._files_lock:
            for rel in files:
                self._pinned[rel] -= 1
                if self._pinned[rel] <= 0:
                    del self._pinned[rel]

    def replace_embeddings(self, rows: list, keypoints: dict | None = None) -> None:
        """Store every image's new vectors and tags (``(image id, {region: vector}, Tags)``, from
        :func:`pipeline.reembed.reembed`) as made by this pipeline's embedder, and its new keypoints
        (``{image id: LocalFeatures}``), and rebuild the index."""
        self._writable()
        emb = self.stages.embedder
        with self._lock:
            self.store.replace_embeddings(rows, f"{emb.name}:{emb.dim}", embedder_reference(emb, self.data),
                                          json.dumps(regions_record(self.settings.fusion)), keypoints)
            index = build_index(self.store, self.settings.index, emb.dim)
            self.live = self._live(index)
            self.index_file.changed()
            self.index_file.flush()

    def remove_product(self, sku: str) -> None:
        self._writable()
        with self._lock:
            files = [im.file for im in self.store.images(sku)]
            removed = self.store.delete_product(sku)
            self._apply(WriteResult(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), removed), sku)
            self._drop_unused_files(files)

    def remove_image(self, sku: str, image_id: int) -> None:
        self._writable()
        with self._lock:
            files = [im.file for im in self.store.images(sku) if im.id == image_id]
            removed = self.store.delete_image(sku, image_id)
            self._apply(WriteResult(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), removed), sku)
            self._drop_unused_files(files)

    def _drop_unused_files(self, files: list[str]) -> None:
        """Delete the files no stored image uses and no prepared image is about to (a picture a
        running import prepared but has not written yet stays)."""
        with self._files_lock:
            for rel in files:
                if not self.store.file_in_use(rel) and not self._pinned.get(rel):
                    self.files.delete(rel)

    def _apply(self, result: WriteResult, sku: str) -> None:
        """Bring the vector index and the in-memory view up to date with one committed write."""
        self.live.apply(result, sku)
        self._maybe_change_kind()
        self.index_file.changed()

    def _maybe_change_kind(self) -> None:
        if self._shared_index:
            return
        index = self.view.index
        kind = choose_kind(self.settings.index, len(index))
        if kind != index.kind:
            log.info("catalogue reached %d vectors: rebuilding the index as %s", len(index), kind)
            self.view.index = build_index(self.store, self.settings.index, self.stages.embedder.dim)

    def catch_up(self) -> int:
        """Apply the writes other processes made to the catalogue since this engine last looked (the
        follower thread calls it; so may a caller that must see them now). How many products
        changed; -1 when the view was reloaded whole (after a re-embedding, or too far behind)."""
        if self.store.generation() == self._seen:
            return 0
        with self._lock:
            now, skus = self.store.changes_since(self._seen)
            if skus is None:
                log.info("catalogue changed whole (generation %d -> %d): reloading the view", self._seen, now)
                self.words = self._word_mapper()  # a new word map, maybe
                index = self.view.index if self._shared_index else \
                    build_index(self.store, self.settings.index, self.stages.embedder.dim)
                self.live = self._live(index)
            else:
                for sku in skus:
                    self.live.sync(sku, self.stages.embedder.dim, shared=self._shared_index)
                self._maybe_change_kind()
            self.index_file.changed()
            self._seen = now
        return -1 if skus is None else len(skus)

    def save(self) -> None:
        """Write the vector index file now if it changed (atomic; stamped with the database generation).
        Writes save it in the background anyway; this is for the end of a batch."""
        self.index_file.flush()

    def close(self) -> None:
        try:
            if self._follower is not None:
                self._follower.stop()
            self.index_file.close()
            self.store.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._writer is not None:
            writer_lock.release(self._writer)
            self._writer = None

    def _writable(self) -> None:
        if self.read_only:
            raise StorageError(f"the catalogue in {self.data} was opened read-only (for searching): it cannot change")
