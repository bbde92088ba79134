"""Whether a catalogue's stored vectors can be searched with this pipeline.

A catalogue records the embedder that made its vectors (name, dimension, trained weights) and the
regions its images were embedded in; a pipeline with another embedder or other regions must not mix
its vectors with them, and says which ``skulens reindex`` (or setting) makes them agree.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import ConflictError
from core.naming import input_size_of
from core.protocols import Embedder
from core.settings import FusionSettings
from pipeline.analysis import has_centre_views
from pipeline.store_base import EMBEDDER_KEY, EMBEDDER_WEIGHTS_KEY, INDEX_REGIONS_KEY
from pipeline.store_base import CatalogStoreBase as CatalogStore


def regions_record(fusion: FusionSettings) -> dict:
    """How a catalogue records the regions its images are embedded in."""
    return {"regions": list(fusion.index_regions), "packshot_centre_views": fusion.packshot_centre_views}


def embedder_reference(embedder: Embedder, data: Path) -> str:
    """How the catalogue records a pipeline's trained embedder: its folder, relative to the data
    directory when inside it ('' for ImageNet's)."""
    if embedder.trained is None:
        return ""
    folder = Path(embedder.trained.folder).resolve()
    try:
        return str(folder.relative_to(Path(data).resolve()))
    except ValueError:
        return str(folder)


def check_embedder(store: CatalogStore, embedder: Embedder, data: Path) -> None:
    """Record the embedder on an empty catalogue; refuse one whose vectors another embedder made."""
    recorded = store.get_meta(EMBEDDER_KEY)
    mine = f"{embedder.name}:{embedder.dim}"
    if recorded is None or store.count()[2] == 0:
        store.set_meta(EMBEDDER_KEY, mine)
        store.set_meta(EMBEDDER_WEIGHTS_KEY, embedder_reference(embedder, data))
    elif recorded != mine:
        size = input_size_of(recorded.rsplit(":", 1)[0])
        other_size = f" (or set SKULENS_EMBEDDER__INPUT_SIZE={size})" if size != embedder.input_size else ""
        raise ConflictError(f"the catalogue in {data} was embedded with {recorded}, this pipeline uses "
                            f"{mine}: re-embed the catalogue with `skulens reindex`, or "
                            f"use the embedder it was made with{other_size}")


def check_regions(store: CatalogStore, fusion: FusionSettings, embedder: Embedder, data: Path) -> None:
    """The catalogue's vectors must be of the regions the settings index: an image with more views
    than another would score higher for having them.  A catalogue from before the regions were
    recorded is judged by the regions of its vectors: 'crop' and 'masked' are not made for every
    image, so only their presence counts; it has the centre views on every image or on none, so
    their absence counts too (a catalogue of packshots alone then asks for one reindex)."""
    wanted = regions_record(fusion)
    if store.count()[2] == 0:
        store.set_meta(INDEX_REGIONS_KEY, json.dumps(wanted))
        return
    raw = store.get_meta(INDEX_REGIONS_KEY)
    if raw is not None:
        recorded = json.loads(raw)
        differ = set(recorded["regions"]) != set(wanted["regions"]) or (
            recorded["packshot_centre_views"] != wanted["packshot_centre_views"]
            and has_centre_views(wanted["regions"]))
    else:
        stored = store.vector_regions()
        recorded = {"regions": sorted(stored), "packshot_centre_views": False}
        differ = bool(stored - set(wanted["regions"])) or any(
            r not in stored for r in wanted["regions"] if r not in ("crop", "masked"))
        if not differ:
            store.set_meta(INDEX_REGIONS_KEY, json.dumps(wanted))
    if differ:
        raise ConflictError(_regions_advice(recorded, wanted, embedder, data))


def _regions_advice(recorded: dict, wanted: dict, embedder: Embedder, data: Path) -> str:
    trained = embedder.trained
    return (f"the catalogue in {data} was indexed with the regions {recorded['regions']} (centre views of "
            f"packshots: {'yes' if recorded['packshot_centre_views'] else 'no'}), the settings ask for "
            f"{wanted['regions']} ({'yes' if wanted['packshot_centre_views'] else 'no'}): re-embed it with "
            f"`skulens --data {data} reindex --embedder {trained.folder if trained else 'imagenet'}`, "
            f"or set SKULENS_FUSION__INDEX_REGIONS='{json.dumps(recorded['regions'])}' and "
            f"SKULENS_FUSION__PACKSHOT_CENTRE_VIEWS={str(recorded['packshot_centre_views']).lower()} "
            "to search it as it is")
