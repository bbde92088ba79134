"""JSON shapes shared by the CLI (``--json``) and the HTTP API: one place, one format."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from core.catalog import Product, StoredImage
from core.colours import colour_names, lab_to_rgb_hex
from core.types import ObjectFeatures, Palette


def palette_json(p: Palette) -> dict:
    return {**p.to_json(), "hex": lab_to_rgb_hex(p.colors) if len(p) else [], "names": colour_names(p)}


def _object_json(obj: ObjectFeatures | None) -> dict:
    if obj is None:
        return {"box": None, "palette": palette_json(Palette.empty()), "ocr": [], "tags": []}
    return {"box": obj.box.to_list(), "palette": palette_json(obj.palette), "ocr": obj.ocr.to_json(),
            "tags": obj.tags.to_json(), "regions": sorted(obj.vectors)}


def describing_words(obj: ObjectFeatures | None, words: list[tuple[str, float]], colours: int = 2) -> list[str]:
    """A photo in a few words: its main colours' names, then the catalogue's words nearest it in word space."""
    if obj is None:
        return []
    named = list(dict.fromkeys(colour_names(obj.palette)))[:colours]
    return named + [w for w, _ in words if w not in named]


ImageUrl = Callable[[str, int], str]
"""(sku, image id) -> the URL the HTTP API serves that image at."""


def result_json(result, engine, all_objects: bool, image_url: ImageUrl | None = None) -> dict | list[dict]:
    """``{"query": {...}, "results": [...]}``, or a list of those (one per box) with ``all_objects``.

    Each result names its catalogue image by file path, or by URL when ``image_url`` is given.
    """
    analysis = result.analysis
    boxes = [b.to_list() for b in analysis.boxes] if analysis else []
    timings = {k: round(v, 1) for k, v in result.timings.items()}
    files = {}
    groups = []
    products = engine.store.get_products(sorted({m.sku for g in result.groups for m in g.matches}))
    for group in result.groups:
        rows = []
        for m in group.matches:
            if image_url is None and m.image_id is not None and m.image_id not in files:
                files.update({im.id: im.file for im in engine.store.images(m.sku)})
            p = products.get(m.sku)
            row = {"sku": m.sku, "score": round(m.score, 4), "signals": m.signals, "title": m.title,
                   "brand": p.brand if p else "", "category": p.category if p else "",
                   "price": p.price if p else None, "image_id": m.image_id}
            if image_url is not None:
                row["image_url"] = image_url(m.sku, m.image_id) if m.image_id is not None else None
            else:
                row["image"] = str(engine.files.path(files[m.image_id])) if m.image_id in files else None
            rows.append(row)
        query = {"boxes": boxes, **_object_json(group.features), "timings_ms": timings,
                 "words": [{"word": w, "cosine": c} for w, c in group.words],
                 "describe": describing_words(group.features, group.words)}
        if analysis:
            query["size"] = [analysis.width, analysis.height]
        close = None if analysis is None else bool(rows) and rows[0]["score"] >= engine.settings.fusion.close_match
        groups.append({"query": query, "results": rows, "weights": result.weights, "notes": result.notes,
                       "close": close})
    return groups if all_objects else groups[0]


def suggestions_json(engine, sku: str, k: int) -> dict:
    """Tags a merchant could give ``sku``, from its pictures: their colours' names it is not tagged with
    (the three heaviest) and the catalogue's words nearest them in word space."""
    words = engine.suggested_tags(sku, k)
    have = {t.lower() for t in engine.store.get_product(sku).tags}
    colours = [c for im in engine.store.images(sku) for c in colour_names(im.palette) if c not in have]
    return {"sku": sku, "source": engine.words.source if engine.words is not None else "off",
            "colours": list(dict.fromkeys(colours))[:3], "words": [{"word": w, "cosine": c} for w, c in words]}


def product_json(product: Product, images: list[StoredImage], files_root: Path,
                 image_url: ImageUrl | None = None) -> dict:
    """A product and its images, each named by file path, or by URL when ``image_url`` is given."""
    out = []
    for im in images:
        where = {"url": image_url(product.sku, im.id)} if image_url else {"file": str(Path(files_root) / im.file)}
        out.append({"id": im.id, **where, "sha256": im.sha256, "size": [im.width, im.height],
                    "palette": palette_json(im.palette), "ocr": im.ocr.to_json(), "tags": im.tags.to_json(),
                    "boxes": im.boxes})
    return {**product.to_json(), "images": out}
