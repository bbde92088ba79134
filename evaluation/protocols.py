"""Evaluation protocols (``../shared/datasets/README.md``) read from their manifests.

- **G1**: index the grocery catalogue (images + texts); query with photos of a split.
- **G2**: G1 plus the ``train`` photos as extra images of their SKU; rank SKUs.
- **C1** / **K1**: per label, the first 5 images (manifest order) are queries, the rest candidates;
  each candidate is its own entry; relevant = same label.

The code reads only ``manifest.csv`` and the files it names, so it runs unchanged on another
copy of the same data (e.g. one with a ``test`` split).
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from core.catalog import Product
from core.errors import InvalidInputError, NotFoundError
from pipeline.catalog_source import make_product, text_fields

PROTOCOLS = ("G1", "G2", "C1", "K1")
QUERIES_PER_LABEL = 5


@dataclass(frozen=True)
class EvalQuery:
    path: Path
    label: str
    packaged: bool = False


@dataclass
class ProtocolData:
    name: str
    root: Path
    split: str
    gallery: list[tuple[Product, list[Path]]]
    queries: list[EvalQuery]
    per_image: bool  # C1/K1: relevance by label over candidate images
    labels: dict[str, str] = field(default_factory=dict)  # gallery sku -> label

    def digest(self) -> str:
        """Identifies the gallery (what gets indexed), for the evaluation data directory's name."""
        h = hashlib.sha256(self.name.encode())
        for product, paths in self.gallery:
            h.update(product.sku.encode())
            for p in paths:
                h.update(str(p).encode())
        return h.hexdigest()[:12]

    def relevant_count(self, label: str) -> int:
        return sum(1 for lab in self.labels.values() if lab == label)


def read_manifest(root: Path) -> list[dict[str, str]]:
    """The rows of ``<root>/manifest.csv`` (the data sets' README format)."""
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise NotFoundError(f"no manifest.csv in {root}")
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def load_protocol(name: str, root: Path, split: str = "val", limit: int | None = None,
                  seed: int = 0) -> ProtocolData:
    name = name.upper()
    if name not in PROTOCOLS:
        raise InvalidInputError(f"unknown protocol {name!r}; expected one of {', '.join(PROTOCOLS)}")
    root = Path(root)
    rows = read_manifest(root)
    data = _grocery(name, root, rows, split) if name in ("G1", "G2") else _category(name, root, rows, split)
    if limit is not None:
        data.queries = stratified_sample(data.queries, limit, seed)
    if not data.queries:
        raise InvalidInputError(f"{name}: no queries for split {split!r} in {root / 'manifest.csv'}")
    return data


def _grocery(name: str, root: Path, rows: list[dict[str, str]], split: str) -> ProtocolData:
    need = {"path", "split", "class_name"}
    if not rows or not need <= set(rows[0]):
        raise InvalidInputError(f"{root}/manifest.csv: expected columns {sorted(need)} (grocery format)")
    if name == "G2" and split == "train":
        raise InvalidInputError("G2 indexes the train photos; query with another split (val, test)")
    images: dict[str, list[Path]] = OrderedDict()
    for r in rows:
        if r["split"] == "catalog":
            images.setdefault(r["class_name"], []).append(root / r["path"])
    if name == "G2":
        for r in rows:
            if r["split"] == "train" and r["class_name"] in images:
                images[r["class_name"]].append(root / r["path"])
    gallery = []
    for sku, paths in images.items():
        fields = text_fields(paths[0].with_suffix(".txt"), sku)
        gallery.append((make_product(sku, fields), paths))
    queries = [EvalQuery(root / r["path"], r["class_name"], r.get("packaged", "").lower() == "true")
               for r in rows if r["split"] == split]
    return ProtocolData(name, root, split, gallery, queries, per_image=False, labels={s: s for s in images})


def with_photo_gallery(data: ProtocolData, held_out: list[EvalQuery]) -> ProtocolData:
    """G2's shape on a split we may learn from: the catalogue plus the split's photos as extra images
    of their SKU, queried with ``held_out`` (photos of that split, kept out of the gallery)."""
    if data.name != "G1":
        raise InvalidInputError(f"expected G1's data to add the {data.split} photos to, got {data.name}")
    rows = read_manifest(data.root)
    kept = {q.path for q in held_out}
    by_sku = {product.sku: (product, list(paths)) for product, paths in data.gallery}
    for r in rows:
        path = data.root / r["path"]
        if r["split"] == data.split and r["class_name"] in by_sku and path not in kept:
            by_sku[r["class_name"]][1].append(path)
    return ProtocolData("G2", data.root, data.split, list(by_sku.values()), list(held_out), per_image=False,
                        labels=dict(data.labels))


def visit_share(queries: list[EvalQuery], share: float, embed) -> list[EvalQuery]:
    """Per label, one shop visit of its photos: :func:`training.embedder_data.visit_cluster` over
    ``embed(paths)``'s vectors of them (none of a label with too few photos, or with no such
    visit).  The rule ``skulens embedder train`` holds photos out by, so a held-out photo is unlike
    the gallery's the way a shopper's photo from another day is."""
    from training.embedder_data import VISIT_MIN_PHOTOS, visit_cluster

    by_label: dict[str, list[EvalQuery]] = defaultdict(list)
    for q in queries:
        by_label[q.label].append(q)
    out = []
    for group in by_label.values():
        if len(group) >= VISIT_MIN_PHOTOS:
            out.extend(group[i] for i in visit_cluster(embed([q.path for q in group]), share))
    return out


def _category(name: str, root: Path, rows: list[dict[str, str]], split: str) -> ProtocolData:
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise InvalidInputError(f"{root}/manifest.csv: expected columns path, label")
    if "split" in rows[0] and any(r["split"] == split for r in rows):
        rows = [r for r in rows if r["split"] == split]
    by_label: dict[str, list[Path]] = OrderedDict()
    for r in rows:
        by_label.setdefault(r["label"], []).append(root / r["path"])
    queries, gallery, labels = [], [], {}
    for label, paths in by_label.items():
        queries.extend(EvalQuery(p, label) for p in paths[:QUERIES_PER_LABEL])
        for i, p in enumerate(paths[QUERIES_PER_LABEL:]):
            sku = f"{_safe(label)}:{i:04d}"
            # titled by file name only: a title holding the label would leak it to the text signal
            gallery.append((Product(sku, p.stem), [p]))
            labels[sku] = label
    return ProtocolData(name, root, split, gallery, queries, per_image=True, labels=labels)


def _safe(label: str) -> str:
    return label.replace("/", "_").strip() or "label"


def stratified_sample(queries: list[EvalQuery], limit: int, seed: int = 0) -> list[EvalQuery]:
    """Up to ``limit`` queries, taken round-robin over labels (a seeded, stratified sample)."""
    if limit <= 0:
        raise InvalidInputError(f"--limit must be positive, got {limit}")
    groups: dict[str, list[EvalQuery]] = defaultdict(list)
    for q in queries:
        groups[q.label].append(q)
    rng = random.Random(seed)
    for g in groups.values():
        rng.shuffle(g)
    order = sorted(groups)
    rng.shuffle(order)
    out: list[EvalQuery] = []
    while len(out) < limit and any(groups.values()):
        for label in order:
            if groups[label] and len(out) < limit:
                out.append(groups[label].pop())
    return out


def write_gallery_csv(data: ProtocolData, out: Path) -> int:
    """Write the protocol's gallery as a catalogue CSV that ``skulens index`` reads (one row per
    image, absolute paths, a SKU's catalogue picture first): the shop a protocol searches, e.g.
    G2's catalogue pictures plus train photos for ``skulens embedder train``.  Returns the rows."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with open(out.with_name(out.name + ".part"), "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sku", "image", "title", "description"])
        for product, paths in data.gallery:
            for p in paths:
                writer.writerow([product.sku, str(Path(p).resolve()), product.title, product.description])
                rows += 1
    out.with_name(out.name + ".part").replace(out)
    return rows
