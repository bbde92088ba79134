"""Near-duplicate listings: over the catalogue, over a folder of files, or for one new photo.

Each image becomes a :class:`fusion.dedup.DedupItem` (content digest, perceptual hashes,
whole-image embedding).  Catalogue images reuse the vectors stored at indexing; hashes
and the embeddings of files outside the catalogue are cached by content hash in the data
directory, so a second run only reads them back.  The report's JSON keys are stable:
``{"groups": [{"skus", "images": [{"sku", "image_id", "file"}], "pairs": [{"a", "b",
"layer", "score"}]}], "skipped": [{"item", "reason"}]}``, where ``a`` and ``b`` name images
as ``images`` does: by ``image_id`` in the catalogue, by ``file`` otherwise.

The catalogue's report is incremental: the pairs found and the images already looked at are kept in
``<data>/duplicates.sqlite3`` (:class:`PairCache`, for the settings and models that found them), so a
report looks only at images added since (against the whole catalogue) and drops the pairs of images
deleted since; with nothing new it is read back without computing anything.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from core.errors import InvalidImageError, SkulensError, StorageError
from core.types import ImageHashes, Verification
from fusion.dedup import (
    DedupItem,
    Pair,
    PairChecks,
    colour_agrees,
    find_pairs,
    group_pairs,
    hash_index,
    hash_match,
    hash_neighbours,
    is_upright,
)
from pipeline.analysis import fingerprint
from pipeline.database import Database
from pipeline.images import IMAGE_SUFFIXES, decode_image, read_image_bytes, sha256_hex

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def cached_hashes(cache, hasher, sha: str, image: np.ndarray | None,
                  load: Callable[[], np.ndarray] | None = None) -> ImageHashes:
    """An image's perceptual hashes from ``cache`` by content hash, else computed (from ``image``,
    or from ``load()`` when it is None) and cached."""
    key = f"hashes:{hasher.name}:{sha}"
    if (hit := cache.cached_features(key)) is not None:
        return ImageHashes.from_json(json.loads(hit))
    if image is None and load is None:
        raise ValueError("cached_hashes needs the image or a loader")
    hashes = hasher.hash(image if image is not None else load())  # type: ignore[misc]  # (checked above)
    cache.cache_features(key, json.dumps(hashes.to_json()).encode())
    return hashes


CENTRE = 0.6
"""The second view each image is embedded in: its central 60% of each side.  A copy with a new
background keeps the product, which fills the centre, so this view finds it when the whole
image's embedding has moved away."""


def centre_view(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    mh, mw = round(h * (1 - CENTRE) / 2), round(w * (1 - CENTRE) / 2)
    return np.ascontiguousarray(image[mh:h - mh or h, mw:w - mw or w])


def cached_embeddings(cache, embedder, kind: str, shas: list[str], images: list,
                      view: Callable[[np.ndarray], np.ndarray] = lambda im: im) -> list[np.ndarray]:
    """Embeddings of ``view(image)`` from ``cache`` by (``kind``, content hash), else computed in one
    batch and cached; ``images`` holds arrays or loaders (called only on a cache miss)."""
    keys = [f"dedup-{kind}:{embedder.name}:{sha}" for sha in shas]
    out: list[np.ndarray | None] = []
    for key in keys:
        hit = cache.cached_features(key)
        out.append(None if hit is None else np.frombuffer(hit, np.float32).copy())
    todo = [i for i, v in enumerate(out) if v is None]
    if todo:
        vecs, _ = embedder.embed([view(images[i]() if callable(images[i]) else images[i]) for i in todo])
        for i, vec in zip(todo, vecs):
            out[i] = vec
            cache.cache_features(keys[i], np.ascontiguousarray(vec, np.float32).tobytes())
    return cast(list[np.ndarray], out)  # every None was filled above


def cached_centres(cache, embedder, shas: list[str], images: list) -> list[np.ndarray]:
    """Embeddings of the centre views (see :data:`CENTRE`)."""
    return cached_embeddings(cache, embedder, "centre", shas, images, centre_view)


@dataclass(frozen=True)
class DedupImage:
    sku: str | None
    image_id: int | None
    file: str

    @property
    def ref(self) -> int | str:
        return self.image_id if self.image_id is not None else self.file


@dataclass
class DedupReport:
    images: list[DedupImage]
    groups: list[tuple[list[int], list[Pair]]]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        out = []
        for members, pairs in self.groups:
            ims = [self.images[i] for i in members]
            out.append({
                "skus": sorted({im.sku for im in ims if im.sku is not None}),
                "images": [{"sku": im.sku, "image_id": im.image_id, "file": im.file} for im in ims],
                "pairs": [{"a": self.images[p.a].ref, "b": self.images[p.b].ref, "layer": p.layer, "score": p.score}
                          for p in sorted(pairs, key=lambda p: (-p.score, p.a, p.b))],
            })
        return {"groups": out, "skipped": [{"item": item, "reason": reason} for item, reason in self.skipped]}


class _KeypointCache:
    """Keypoints of the items of one run, computed on first use (the most recent ``size`` kept)."""

    def __init__(self, verifier, loaders: list[Callable[[], np.ndarray]], size: int = 4096) -> None:
        self.verifier = verifier
        self.loaders = loaders
        self.size = size
        self._kps: OrderedDict[int, object] = OrderedDict()

    def get(self, i: int):
        if i in self._kps:
            self._kps.move_to_end(i)
            return self._kps[i]
        try:
            kps = self.verifier.keypoints(self.loaders[i]())
        except InvalidImageError as exc:  # the file vanished since its signature was read
            log.warning("no keypoints for item %d: %s", i, exc)
            kps = None
        self._kps[i] = kps
        if len(self._kps) > self.size:
            self._kps.popitem(last=False)
        return kps

    def verify(self, a: int, b: int) -> Verification:
        ka, kb = self.get(a), self.get(b)
        return Verification(0, 0.0) if ka is None or kb is None else self.verifier.verify(ka, kb)

    def frames_differ(self, a: int, b: int) -> bool:
        ka, kb = self.get(a), self.get(b)
        return ka is not None and kb is not None and self.verifier.frames_differ(ka, kb)

    def checks(self) -> PairChecks:
        return PairChecks(self.verify, self.verifier.accepts, self.verifier.contradicts, self.frames_differ)


class PairCache(Database):
    """Near-duplicate pairs of catalogue images (by image id) and the images already looked at, for
    one fingerprint of the settings and models; another fingerprint starts it afresh."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._conn = self._open(self.path)
            self._conn.executescript(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                "CREATE TABLE IF NOT EXISTS checked (image_id INTEGER PRIMARY KEY);"
                "CREATE TABLE IF NOT EXISTS pairs (a INTEGER NOT NULL, b INTEGER NOT NULL, layer TEXT NOT NULL,"
                " score REAL NOT NULL, PRIMARY KEY (a, b));")
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open the near-duplicate cache {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._init_readers()

    def load(self, fp: str) -> tuple[set[int], list[tuple[int, int, str, float]]]:
        """(image ids looked at, their pairs as (a, b, layer, score)) for ``fp``; nothing for another."""
        row = self._read().execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        if row is None or row[0] != fp:
            return set(), []
        checked = {r[0] for r in self._read().execute("SELECT image_id FROM checked")}
        return checked, self._read().execute("SELECT a, b, layer, score FROM pairs").fetchall()

    def save(self, fp: str, checked: list[int], pairs: list[tuple[int, int, str, float]], gone: list[int],
             reset: bool = False) -> None:
        """Add images looked at and the pairs found, forget ``gone`` images, in one transaction
        (``reset``: forget everything held before)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
                if reset or row is None or row[0] != fp:
                    conn.execute("DELETE FROM checked")
                    conn.execute("DELETE FROM pairs")
                    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('fingerprint', ?)", (fp,))
                conn.executemany("DELETE FROM checked WHERE image_id = ?", [(i,) for i in gone])
                conn.executemany("DELETE FROM pairs WHERE a = ? OR b = ?", [(i, i) for i in gone])
                conn.executemany("INSERT OR IGNORE INTO checked(image_id) VALUES (?)", [(i,) for i in checked])
                conn.executemany("INSERT OR REPLACE INTO pairs(a, b, layer, score) VALUES (?, ?, ?, ?)", pairs)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise


class Deduplicator:
    """Finds near-duplicates with an engine's store, stages and settings."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.settings = engine.settings.dedup
        self.hasher = engine.stages.hasher
        self.verifier = engine.stages.verifier
        if self.hasher is None:
            raise SkulensError("near-duplicate search needs the perceptual hasher stage")

    # -- signatures -------------------------------------------------------------------------
    def hashes(self, sha: str, image: np.ndarray | None, load: Callable[[], np.ndarray] | None = None) -> ImageHashes:
        return cached_hashes(self.engine.features, self.hasher, sha, image, load)

    def _embed_cached(self, shas: list[str], images: list) -> list[np.ndarray]:
        """Whole-image embeddings of files outside the catalogue, cached by content hash."""
        return cached_embeddings(self.engine.features, self.engine.stages.embedder, "vector", shas, images)

    def _loader(self, path: Path, name: str) -> Callable[[], np.ndarray]:
        limits = self.engine.settings.images
        return lambda: decode_image(read_image_bytes(path, limits), limits, name)

    def _pairs(self, items: list[DedupItem], loaders: list, progress: Progress | None,
               fresh: list[int] | None = None) -> list[Pair]:
        checks = None if self.verifier is None else _KeypointCache(self.verifier, loaders).checks()
        return find_pairs(items, self.settings, checks, progress, fresh)

    # -- the catalogue --------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        eng = self.engine
        verifier = getattr(self.verifier, "name", None)
        return fingerprint(self.settings, eng.stages.embedder.name, self.hasher.name, verifier)

    def catalogue(self, progress: Progress | None = None, full: bool = False) -> DedupReport:
        """Groups of near-duplicates across the catalogue: the cached pairs, and those of the images
        added since the last report (``full``: look at every image again)."""
        eng = self.engine
        rows = eng.store.image_refs()
        fp = self._fingerprint()
        cache = PairCache(eng.data / "duplicates.sqlite3")
        try:
            checked, known = (set(), []) if full else cache.load(fp)
            held = {im.id for im in rows}
            gone = sorted(checked - held)
            fresh = [im for im in rows if im.id not in checked]
            known = [p for p in known if p[0] in held and p[1] in held]
            if not fresh:  # nothing new: the cached pairs are the report
                if gone and not eng.read_only:
                    cache.save(fp, [], [], gone)
                images = [DedupImage(im.sku, im.id, im.file) for im in rows]
                pairs = _by_position(known, {im.id: i for i, im in enumerate(rows)}, set())
                return DedupReport(images, group_pairs(len(images), pairs), [])
            fresh_ids = {im.id for im in fresh}
            report, found = self._catalogue_pairs(rows, fresh_ids, known, progress, everything=not checked)
            if not eng.read_only:
                # unreadable images are looked at too: their warning is in this report, not in every later one
                cache.save(fp, sorted(fresh_ids), found, gone, reset=not checked)
            return report
        finally:
            cache.close()

    def _catalogue_pairs(self, rows, fresh_ids: set[int], known: list[tuple[int, int, str, float]],
                         progress: Progress | None, everything: bool):
        """The report over ``rows`` when the images ``fresh_ids`` are new (pairs among the others are
        ``known``); with the fresh images looked at (readable ones) and the new pairs, by image id."""
        eng = self.engine
        whole = eng.store.region_vectors("full", eng.stages.embedder.dim)
        images, items, loaders, skipped = [], [], [], []
        for n, im in enumerate(rows, 1):
            load = self._loader(eng.files.path(im.file), im.file)
            try:
                hashes = self.hashes(im.sha256, None, load)
                vector = whole.get(im.id)
                if vector is None:
                    vector = self._embed_cached([im.sha256], [load])[0]
                centre = cached_centres(eng.features, eng.stages.embedder, [im.sha256], [load])[0]
            except InvalidImageError as exc:
                skipped.append((f"{im.sku}/{im.id} ({im.file})", str(exc)))
                continue
            images.append(DedupImage(im.sku, im.id, im.file))
            items.append(DedupItem(im.sha256, hashes, vector, centre))
            loaders.append(load)
            if progress and (n % 256 == 0 or n == len(rows)):
                progress("signatures", n, len(rows))
        fresh = None if everything else [i for i, im in enumerate(images) if im.image_id in fresh_ids]
        pairs = self._pairs(items, loaders, progress, fresh)
        found: list[tuple[int, int, str, float]] = [
            (cast(int, images[p.a].image_id), cast(int, images[p.b].image_id), p.layer, p.score) for p in pairs]
        # decided before (both images were there then), unless found again now
        pairs += _by_position(known, {im.image_id: i for i, im in enumerate(images)}, {(p.a, p.b) for p in pairs})
        return DedupReport(images, group_pairs(len(items), pairs), skipped), found

    # -- a folder of files ------------------------------------------------------------------------
    def folder(self, root: Path, progress: Progress | None = None, batch: int = 32) -> DedupReport:
        root = Path(root)
        if not root.is_dir():
            raise InvalidImageError(f"not a folder: {root}")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        images, items, loaders, skipped = [], [], [], []
        for start in range(0, len(files), batch):
            loaded = []
            for path in files[start:start + batch]:
                name = str(path.relative_to(root))
                try:
                    data = read_image_bytes(path, self.engine.settings.images)
                    loaded.append((path, name, sha256_hex(data), decode_image(data, self.engine.settings.images, name)))
                except InvalidImageError as exc:
                    skipped.append((name, str(exc)))
            shas, ims = [x[2] for x in loaded], [x[3] for x in loaded]
            vecs = self._embed_cached(shas, ims)
            centres = cached_centres(self.engine.features, self.engine.stages.embedder, shas, ims)
            for (path, name, sha, image), vec, centre in zip(loaded, vecs, centres):
                images.append(DedupImage(None, None, name))
                items.append(DedupItem(sha, self.hashes(sha, image), vec, centre))
                loaders.append(self._loader(path, name))
            if progress:
                progress("signatures", min(start + batch, len(files)), len(files))
        return DedupReport(images, group_pairs(len(items), self._pairs(items, loaders, progress)), skipped)

    # -- one new photo --------------------------------------------------------------------------
    def photo(self, data: bytes, name: str = "photo") -> DedupReport:
        """The catalogue images the photo duplicates, as one group (empty when it is new)."""
        eng = self.engine
        image = eng.decode(data, name)
        sha = sha256_hex(data)
        query = DedupItem(sha, self.hashes(sha, image), eng.stages.embedder.embed([image])[0][0])
        rows = eng.store.images()
        found: dict[int, Pair] = {}  # position in rows -> pair with the query (position 0)
        for i, im in enumerate(rows):
            if im.sha256 == sha:
                found[i] = Pair(0, i + 1, "exact", 1.0)
        hashed: dict[int, ImageHashes] = {}
        for i, im in enumerate(rows):
            try:
                hashed[i] = self.hashes(im.sha256, None, self._loader(eng.files.path(im.file), im.file))
            except InvalidImageError as exc:  # a stored file went missing: the other layers still run
                log.warning("no hashes for catalogue image %s: %s", im.id, exc)
        check = _PhotoChecks(self, image, rows)
        if hashed:
            order = list(hashed)
            index = hash_index([DedupItem("", hashed[i]) for i in order])
            for j, d in hash_neighbours(index, query.hashes, self.settings).items():
                i = order[j]
                if i not in found and hash_match(query.hashes, hashed[i], d, self.settings) \
                        and not check.contradicted(i, is_upright(query.hashes, hashed[i], d)):
                    found[i] = Pair(0, i + 1, "phash", 1.0 - d / 64)
        self._visual_matches(query, rows, hashed, found, check)
        images = [DedupImage(None, None, name)] + [DedupImage(im.sku, im.id, im.file) for im in rows]
        pairs = sorted(found.values(), key=lambda p: p.b)
        groups = [([0] + [p.b for p in pairs], pairs)] if pairs else []
        return DedupReport(images, groups, [])

    def _visual_matches(self, query: DedupItem, rows, hashed: dict[int, ImageHashes], found: dict[int, Pair],
                        check: "_PhotoChecks") -> None:
        view, st = self.engine.view, self.settings
        if query.vector is None:  # the photo's embedding is always made here; no vector, no visual match
            return
        with self.engine.write_lock():  # the index and its owners change with catalogue writes
            held = len(view.vector_owner)  # as the index holds (a count of Milvus's is a query of its own)
            if held == 0:
                return
            k = min(held, st.neighbours * 4)
            sims, ids = view.index.search(query.vector[None, :].astype(np.float32), k)
            hits = [(s, view.vector_owner.get(vid)) for s, vid in zip(sims[0].tolist(), ids[0].tolist())]
        position = {im.id: i for i, im in enumerate(rows)}
        for s, owner in hits:
            if owner is None or owner[2] != "full" or owner[0] not in position or s < st.candidate_min_cosine:
                continue
            i = position[owner[0]]
            if i in found:
                continue
            close = s >= st.visual_min_cosine and (i not in hashed or colour_agrees(query.hashes, hashed[i], st))
            if close and not check.contradicted(i):
                found[i] = Pair(0, i + 1, "visual", round(min(1.0, s), 4))
            elif not close and (v := check.verify(i)) is not None and self.verifier.accepts(v):
                found[i] = Pair(0, i + 1, "keypoints", round(v.ratio, 4))


def _by_position(pairs: list[tuple[int, int, str, float]], position: dict, seen: set[tuple[int, int]]) -> list[Pair]:
    """Pairs of image ids as pairs of report positions (those of images not in ``position``, or already
    in ``seen``, left out)."""
    out = []
    for a, b, layer, score in pairs:
        if a in position and b in position:
            pa, pb = min(position[a], position[b]), max(position[a], position[b])
            if (pa, pb) not in seen:
                out.append(Pair(pa, pb, layer, score))
    return out


class _PhotoChecks:
    """Keypoint checks of one photo against catalogue images (none without a verifier)."""

    def __init__(self, dedup: Deduplicator, image: np.ndarray, rows) -> None:
        self.dedup, self.image, self.rows = dedup, image, rows
        self._query = None
        self._seen: dict[int, object] = {}  # catalogue position -> its keypoints (None: unreadable)

    def _pair(self, i: int):
        verifier = self.dedup.verifier
        if verifier is None:
            return None
        if self._query is None:
            self._query = verifier.keypoints(self.image)
        if i not in self._seen:  # a phash match turned down is looked at again by the visual layer
            row = self.rows[i]
            try:
                self._seen[i] = verifier.keypoints(self.dedup._loader(self.dedup.engine.files.path(row.file), row.file)())
            except InvalidImageError as exc:
                log.warning("cannot check catalogue image %s: %s", row.id, exc)
                self._seen[i] = None
        return None if self._seen[i] is None else (self._query, self._seen[i])

    def verify(self, i: int) -> Verification | None:
        kps = self._pair(i)
        return None if kps is None else self.dedup.verifier.verify(*kps)

    def contradicted(self, i: int, upright: bool = False) -> bool:
        """The pixels rule the match out; an upright phash match the keypoints cannot place is
        compared frame to frame."""
        kps = self._pair(i)
        if kps is None:
            return False
        verifier = self.dedup.verifier
        v = verifier.verify(*kps)
        return verifier.contradicts(v) or (v.differing is None and upright and verifier.frames_differ(*kps))
