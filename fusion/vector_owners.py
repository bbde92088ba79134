"""Who owns each vector of the index: vector id -> (image id, SKU, region), held in numpy arrays.

A catalogue of a million images has three to four million vectors; a Python tuple and a dict
entry for each cost hundreds of bytes and a long start-up.  Here a vector costs 21 bytes (its id,
image id, a SKU code and a region code), SKU and region names are stored once, and each SKU keeps
the ids of its vectors in one small array.  Vector ids only grow (the database never reuses one),
so new rows append and stay sorted; a removed row is marked dead and the arrays are compacted
when half of them are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DEAD = -1


class VectorOwners:
    def __init__(self) -> None:
        self._ids = np.zeros(0, np.int64)
        self._images = np.zeros(0, np.int64)
        self._skus = np.zeros(0, np.int32)  # code into _sku_names; DEAD for a removed row
        self._regions = np.zeros(0, np.int8)
        self._n = 0  # rows in use, live or dead
        self._dead = 0
        self.sku_names: list[str] = []
        self._sku_codes: dict[str, int] = {}
        self.region_names: list[str] = []
        self._region_codes: dict[str, int] = {}
        self._by_sku: dict[str, np.ndarray] = {}

    # -- reading ----------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n - self._dead

    def get(self, vid: int) -> tuple[int, str, str] | None:
        pos = self._find(np.asarray([vid], np.int64))[0]
        if pos < 0:
            return None
        return int(self._images[pos]), self.sku_names[self._skus[pos]], self.region_names[self._regions[pos]]

    def __getitem__(self, vid: int) -> tuple[int, str, str]:
        owner = self.get(vid)
        if owner is None:
            raise KeyError(vid)
        return owner

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each id: whether it is held, and its image id, SKU code and region code (0 where not)."""
        pos = self._find(np.asarray(ids, np.int64).reshape(-1))
        ok = pos >= 0
        safe = np.where(ok, pos, 0)
        if not self._n:
            zeros = np.zeros(len(pos), np.int64)
            return ok, zeros, zeros.astype(np.int32), zeros.astype(np.int8)
        return ok, self._images[safe], self._skus[safe], self._regions[safe]

    def of_sku(self, sku: str) -> np.ndarray:
        """The ids of a SKU's vectors, in id order."""
        return self._by_sku.get(sku, np.zeros(0, np.int64))

    def region_codes(self, names: Iterable[str]) -> np.ndarray:
        return np.asarray([self._region_codes[n] for n in names if n in self._region_codes], np.int8)

    def skus(self) -> list[str]:
        return list(self._by_sku)

    def nbytes(self) -> int:
        arrays = self._ids.nbytes + self._images.nbytes + self._skus.nbytes + self._regions.nbytes
        return arrays + sum(a.nbytes for a in self._by_sku.values())

    @classmethod
    def from_columns(cls, ids: np.ndarray, images: np.ndarray, skus: np.ndarray, sku_names: list[str],
                     regions: np.ndarray, region_names: list[str]) -> "VectorOwners":
        """Owners read as columns (a catalogue's start-up): ``ids`` ascending, ``skus`` and ``regions``
        codes into their name lists."""
        owners = cls()
        owners._ids, owners._images = np.asarray(ids, np.int64), np.asarray(images, np.int64)
        owners._skus, owners._regions = np.asarray(skus, np.int32), np.asarray(regions, np.int8)
        owners._n = len(owners._ids)
        owners.sku_names, owners.region_names = list(sku_names), list(region_names)
        owners._sku_codes = {name: code for code, name in enumerate(owners.sku_names)}
        owners._region_codes = {name: code for code, name in enumerate(owners.region_names)}
        order = np.argsort(owners._skus, kind="stable")  # stable: each SKU's ids stay ascending
        codes, starts = np.unique(owners._skus[order], return_index=True)
        owners._by_sku = {owners.sku_names[code]: group
                          for code, group in zip(codes.tolist(), np.split(owners._ids[order], starts[1:]))}
        return owners

    # -- changing ---------------------------------------------------------------------
    def extend(self, ids: Sequence[int] | np.ndarray, images: Sequence[int] | np.ndarray, skus: Sequence[str],
               regions: Sequence[str]) -> None:
        """Add vectors (ids not held yet)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        if not len(ids):
            return
        if not (len(ids) == len(images) == len(skus) == len(regions)):
            raise ValueError(f"expected one image, SKU and region per id, got {len(ids)} ids, {len(images)} images, "
                             f"{len(skus)} SKUs and {len(regions)} regions")
        sku_codes = np.fromiter(self._codes(self._sku_codes, self.sku_names, skus), np.int32, len(ids))
        region_codes = np.fromiter(self._codes(self._region_codes, self.region_names, regions), np.int8, len(ids))
        self._reserve(self._n + len(ids))
        end = self._n + len(ids)
        self._ids[self._n:end], self._images[self._n:end] = ids, np.asarray(images, np.int64)
        self._skus[self._n:end], self._regions[self._n:end] = sku_codes, region_codes
        ascending = not np.any(np.diff(ids) <= 0)
        unsorted = not ascending or (self._n and ids[0] <= self._ids[self._n - 1])
        self._n = end
        if unsorted:  # not the usual case (ids only grow): keep the rows sorted
            order = np.argsort(self._ids[:end], kind="stable")
            for name in ("_ids", "_images", "_skus", "_regions"):
                arr = getattr(self, name)
                arr[:end] = arr[:end][order]
        order = np.argsort(sku_codes, kind="stable")
        codes, starts = np.unique(sku_codes[order], return_index=True)
        for code, group in zip(codes.tolist(), np.split(ids[order], starts[1:])):
            sku = self.sku_names[code]
            held = self._by_sku.get(sku)
            if held is not None:
                group = np.union1d(held, group)
            # a group of ascending ids is in id order already (the sort by SKU is stable)
            self._by_sku[sku] = group if ascending or held is not None else np.sort(group)

    def remove(self, ids: np.ndarray) -> list[tuple[int, str, str]]:
        """Forget these vectors (ids not held are ignored); returns the owners they had."""
        pos = self._find(np.asarray(ids, np.int64).reshape(-1))
        pos = np.unique(pos[pos >= 0])
        owners = [(int(self._images[p]), self.sku_names[self._skus[p]], self.region_names[self._regions[p]])
                  for p in pos]
        gone = self._ids[pos]
        for sku in {o[1] for o in owners}:
            left = np.setdiff1d(self._by_sku[sku], gone, assume_unique=True)
            if len(left):
                self._by_sku[sku] = left
            else:
                del self._by_sku[sku]
        self._skus[pos] = DEAD
        self._dead += len(pos)
        if self._dead > max(1024, self._n // 2):
            self._compact()
        return owners

    # -- inside -------------------------------------------------------------------------
    def _find(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id, -1 where it is not held (or dead)."""
        held = self._ids[:self._n]
        pos = np.searchsorted(held, ids)
        inside = pos < self._n
        found = np.zeros(len(ids), bool)
        found[inside] = (held[pos[inside]] == ids[inside]) & (self._skus[pos[inside]] != DEAD)
        return np.where(found, pos, -1)

    @staticmethod
    def _codes(codes: dict[str, int], names: list[str], given: Sequence[str]) -> Iterable[int]:
        """The code of each name, new names numbered after the known ones."""
        for name in dict.fromkeys(given):
            if name not in codes:
                codes[name] = len(names)
                names.append(name)
        return map(codes.__getitem__, given)

    def _reserve(self, size: int) -> None:
        if size <= len(self._ids):
            return
        capacity = max(size, 2 * len(self._ids), 1024)
        for name in ("_ids", "_images", "_skus", "_regions"):
            arr = getattr(self, name)
            grown = np.zeros(capacity, arr.dtype)
            grown[:self._n] = arr[:self._n]
            setattr(self, name, grown)

    def _compact(self) -> None:
        live = self._skus[:self._n] != DEAD
        for name in ("_ids", "_images", "_skus", "_regions"):
            arr = getattr(self, name)
            setattr(self, name, arr[:self._n][live].copy())
        self._n, self._dead = int(live.sum()), 0
