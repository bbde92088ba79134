"""Fusion weights learnt by ``skulens tune``, kept in the catalogue's ``meta`` table: one record per
embedder, and per kind of gallery (catalogue pictures alone, or with shop photos)."""

from __future__ import annotations

import json

from core.naming import float_model_name
from core.types import PHOTO_SIGNALS
from pipeline.store_base import CatalogStoreBase as CatalogStore

TUNED_KEY = "fusion_weights"  # meta: weights learnt by `skulens tune`, used by default
PHOTOS_SUFFIX = ":photos"  # ... and those learnt against a gallery with shop photos (`tune --protocol G2`)


def tuned_key(embedder_name: str | None, photos: bool = False) -> str:
    """Where ``skulens tune`` keeps weights learnt for a trained embedder (the plain key holds the
    ones learnt with ImageNet's embedder); ``photos``: weights learnt against a gallery with shop
    photos (``skulens tune --protocol G2``), kept apart from those learnt against the catalogue
    pictures alone."""
    base = f"{TUNED_KEY}{PHOTOS_SUFFIX}" if photos else TUNED_KEY
    return f"{base}@{embedder_name}" if embedder_name else base


def tuned_keys(embedder_name: str | None, photos: bool = False) -> list[str]:
    """The meta keys to try, best first, for weights to fuse ``embedder_name``'s scores with: its own,
    its float model's (an int8 runtime ranks as its float model does), then the plain ones.  With
    ``photos``, each of those learnt against a gallery with shop photos comes before the one learnt
    against the catalogue pictures alone (an embedder's own weights before another's)."""
    names = ([embedder_name, float_model_name(embedder_name)] if embedder_name else []) + [None]
    kinds = (True, False) if photos else (False,)
    return list(dict.fromkeys(tuned_key(n, k) for n in names for k in kinds))


def tuned_weights(store: CatalogStore, embedder_name: str | None, photos: bool = False) -> dict | None:
    """The record ``skulens tune`` saved for ranking ``embedder_name``'s vectors (see :func:`tuned_keys`);
    ``photos``: for a gallery that holds shop photos besides the catalogue pictures (G2's)."""
    raw = next(filter(None, map(store.get_meta, tuned_keys(embedder_name, photos))), None)
    if not raw:
        return None
    record = json.loads(raw)
    # weights tuned before a signal existed give it none (as they were measured); the semantic signal is
    # not tuned (photos have no typed words): the caller adds the weight set for it
    record["weights"] = {s: float(record["weights"].get(s, 0.0)) for s in PHOTO_SIGNALS}
    return record
