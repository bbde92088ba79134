"""Re-embed a catalogue with another embedder (``skulens reindex``), keeping everything else.

Boxes, colours and OCR words stay as they were analysed; only the vectors, the visual tags and
the keypoints (of the verify signal) are made again, from the stored image files and main boxes, in batches.  The new vectors
replace the old ones in one transaction, with the embedder that made them, and the FAISS index
is rebuilt from them: a failure half-way leaves the catalogue as it was.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from core.types import Box, LocalFeatures, Tags
from pipeline.analysis import catalogue_regions, region_images, regions_and_tags

log = logging.getLogger(__name__)

BATCH_IMAGES = 16


def main_box(width: int, height: int, boxes: list[list[float]]) -> Box:
    """The stored main box of an image (its first detection), else the whole image."""
    if boxes:
        x1, y1, x2, y2 = boxes[0][:4]
        return Box(x1, y1, x2, y2).clip(width, height)
    return Box.full(width, height)


def reembed(engine, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Re-embed every image of ``engine``'s catalogue with ``engine``'s embedder; returns a summary."""
    regions = engine.settings.fusion.index_regions
    packshots = engine.settings.fusion.packshot_centre_views
    embedder = engine.stages.embedder
    remover = engine.stages.remover if "masked" in regions else None
    geometry = engine.stages.geometry  # keypoints are made anew too: a catalogue indexed before had none
    keypoints: dict[int, LocalFeatures] = {}
    t0 = time.perf_counter()
    with engine.write_lock():
        images = engine.store.images()
        rows: list[tuple[int, dict[str, np.ndarray], Tags]] = []
        for start in range(0, len(images), BATCH_IMAGES):
            chunk = images[start:start + BATCH_IMAGES]
            named = []
            for im in chunk:
                pixels = engine.decode(engine.files.read(im.file), im.file)
                h, w = pixels.shape[:2]
                box = main_box(w, h, im.boxes)
                if geometry is not None:
                    x1, y1, x2, y2 = box.as_int()
                    keypoints[im.id] = geometry.features(np.ascontiguousarray(pixels[y1:y2, x1:x2]))
                mask = None
                if remover is not None:
                    x1, y1, x2, y2 = box.as_int()
                    mask = remover.remove(np.ascontiguousarray(pixels[y1:y2, x1:x2]))
                named.append(region_images(pixels, box, mask, catalogue_regions(pixels, regions, packshots)))
            vectors, tags = embedder.embed([img for regs in named for img in regs.values()])
            at = 0
            for im, regs in zip(chunk, named):
                n = len(regs)
                by_region, obj_tags = regions_and_tags(list(regs), vectors[at:at + n], tags[at:at + n])
                rows.append((im.id, by_region, obj_tags))
                at += n
            if progress is not None:
                progress("reindex", len(rows), len(images))
        engine.replace_embeddings(rows, keypoints)
    seconds = time.perf_counter() - t0
    summary = {"images": len(rows), "vectors": sum(len(r[1]) for r in rows), "embedder": embedder.name,
               "seconds": round(seconds, 1), "images_per_s": round(len(rows) / seconds, 2) if seconds else None}
    log.info("re-embedded %(images)d images (%(vectors)d vectors) with %(embedder)s in %(seconds)s s", summary)
    return summary


def reembed_markdown(summary: dict, settings) -> str:
    """The BENCHMARKS.md body for a ``reindex`` run."""
    runtime = settings.embedder.runtime
    per_vector = summary["seconds"] / summary["vectors"] * 1000 if summary["vectors"] else float("nan")
    return (f"Catalogue `{settings.data}`: **{summary['images']} images** ({summary['vectors']} vectors: each "
            f"image's regions {list(settings.fusion.index_regions)}; packshots "
            f"{'with' if settings.fusion.packshot_centre_views else 'without'} the centre views) re-embedded with **{summary['embedder']}** "
            f"(runtime setting `{runtime}`, batches of {BATCH_IMAGES} images) in **{summary['seconds']} s: "
            f"{summary['images_per_s']} images/s** ({per_vector:.1f} ms per vector), reading and decoding the "
            "stored files, and the one-transaction swap and FAISS rebuild, included.\n")
