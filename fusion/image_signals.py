"""Each catalogue image's SKU, palette and tags, read when a search first needs them.

The colour and tag signals need these only for a search's candidates (a few hundred images), so
the catalogue keeps them on disk and this table holds a bounded cache of the recently used ones:
opening a catalogue reads none of them, and memory does not grow with the catalogue.  The
catalogue's writes :meth:`ImageSignals.put` and :meth:`ImageSignals.forget` the images they touch,
so the cache never answers with a removed or replaced image.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from core.types import Palette, Tags

CAPACITY = 100_000
"""Images kept in memory (about 1 KB each): the candidates of a few hundred recent searches."""


@dataclass
class ImageInfo:
    sku: str
    palette: Palette
    tags: Tags


class ImageSignals:
    def __init__(self, load: Callable[[list[int]], dict[int, ImageInfo]] | None = None,
                 capacity: int = CAPACITY) -> None:
        """``load``: image ids -> the signals of those still stored (None: only what was put)."""
        self._load = load
        self.capacity = capacity
        self._cache: OrderedDict[int, ImageInfo] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, image_id: int) -> ImageInfo | None:
        return self.get_many([image_id])[0]

    def get_many(self, image_ids: Sequence[int | None]) -> list[ImageInfo | None]:
        """Each image's signals (None for None, or for an image that is not stored), in one read of
        those not cached."""
        with self._lock:
            missing = list({i for i in image_ids if i is not None and i not in self._cache})
        found = self._load(missing) if missing and self._load is not None else {}
        with self._lock:
            self._cache.update(found)
            out: list[ImageInfo | None] = []
            for wanted in image_ids:
                hit = None if wanted is None else self._cache.get(wanted)
                if hit is not None and wanted is not None:
                    self._cache.move_to_end(wanted)
                out.append(hit)
            self._evict()
        return out

    def put(self, image_id: int, info: ImageInfo) -> None:
        with self._lock:
            self._cache[image_id] = info
            self._evict()

    def forget(self, image_ids: Iterable[int]) -> None:
        with self._lock:
            for image_id in image_ids:
                self._cache.pop(image_id, None)

    def _evict(self) -> None:
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
