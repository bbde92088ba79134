"""Measuring near-duplicate detection: transformed grocery copies, ukbench-dups, and scale.

Every measurement runs the product's own path (:meth:`pipeline.dedup.Deduplicator.folder`)
on a folder of files, then scores the pairs and groups it returns.
"""

from __future__ import annotations

import io
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import NotFoundError
from evaluation.dedup_copies import KINDS, make_copy
from evaluation.protocols import read_manifest
from fusion.dedup import LAYERS
from pipeline.dedup import Deduplicator, DedupReport
from pipeline.images import decode_image

log = logging.getLogger(__name__)

TARGET_PRECISION, TARGET_RECALL = 0.99, 0.95  # the targets for the groups on transformed copies
MIN_MASK_COVER, MAX_MASK_COVER = 0.15, 0.9
"""A background copy is made only where the mask stage's foreground covers this share of the
photo: on hand-held shelf photos it often keeps a thumb or a fragment, which is no product."""


@dataclass(frozen=True)
class Member:
    family: int  # the original it comes from
    label: str  # its SKU
    kind: str  # "original" or a copy kind


def make_copies_folder(engine, root: Path, split: str, out: Path, seed: int = 0, with_catalog: bool = True,
                       kinds: tuple[str, ...] = KINDS, limit: int | None = None,
                       progress: Callable[[str, int, int], None] | None = None) -> tuple[dict[str, Member], Counter]:
    """Write the ``split`` photos (and the catalogue images) of the grocery set and one copy of each
    kind per image into ``out``; returns file -> :class:`Member` and how many copies of each kind.
    ``limit``: about this many photos, every k-th in manifest order (which keeps all SKUs)."""
    photos = [r for r in read_manifest(root) if r["split"] == split]
    if not photos:
        raise NotFoundError(f"no images of split {split!r} in {root}")
    if limit and len(photos) > limit:
        photos = photos[::-(-len(photos) // limit)]
    rows = photos + (catalogue_half(read_manifest(root), split) if with_catalog and split != "catalog" else [])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    members: dict[str, Member] = {}
    made: Counter = Counter()
    remover = engine.stages.remover
    for fam, row in enumerate(rows):
        data = (Path(root) / row["path"]).read_bytes()
        image = decode_image(data, engine.settings.images, row["path"])
        name = f"{fam:05d}-original{Path(row['path']).suffix.lower()}"
        (out / name).write_bytes(data)
        members[name] = Member(fam, row["class_name"], "original")
        mask_of = None
        if remover is not None and "background" in kinds:
            mask = remover.remove(image)
            if MIN_MASK_COVER <= mask.coverage() <= MAX_MASK_COVER:
                mask_of = lambda _img, m=mask: m  # noqa: E731  (background always comes first in a chain)
        rng = np.random.default_rng([seed, fam])
        for kind in kinds:
            if kind == "background" and mask_of is None:
                made["background (no credible mask)"] += 1
                continue
            copy = make_copy(image, kind, rng, mask_of)
            buf = io.BytesIO()
            Image.fromarray(copy.image).save(buf, "JPEG", quality=copy.jpeg_quality)
            cname = f"{fam:05d}-{kind}.jpg"
            (out / cname).write_bytes(buf.getvalue())
            members[cname] = Member(fam, row["class_name"], kind)
            made[kind] += 1
        if progress:
            progress("making copies", fam + 1, len(rows))
    return members, made


def catalogue_half(rows: list[dict], split: str) -> list[dict]:
    """The catalogue images that join the copies of ``split``: for ``train`` (where thresholds are
    chosen) and ``val`` (where they are reported) each takes every other coarse class, in name
    order, so the two never share a catalogue image yet each keeps look-alike SKUs of one brand
    together (Juice on one side, Milk and Yoghurt on the other); any other split takes them all."""
    cat = [r for r in rows if r["split"] == "catalog"]
    if split not in ("train", "val"):
        return cat
    coarse = sorted({r.get("coarse_class") or r["class_name"] for r in cat})
    side = {c: ("train", "val")[i % 2] for i, c in enumerate(coarse)}
    return [r for r in cat if side[r.get("coarse_class") or r["class_name"]] == split]


def score_copies(report: DedupReport, members: dict[str, Member]) -> dict:
    """Per-layer (cumulative, cheapest first) and combined precision and recall on copy pairs."""
    files = [im.file for im in report.images]
    fam_of = {f: members[f] for f in files}
    positives = Counter()  # kind -> copy-original pairs
    originals = {m.family: f for f, m in members.items() if m.kind == "original"}
    for f, m in members.items():
        if m.kind != "original" and f in fam_of and originals.get(m.family) in fam_of:
            positives[m.kind] += 1
    total_pos = sum(positives.values())
    found = {layer: Counter() for layer in LAYERS}
    same_product_pairs = 0
    for _members, pairs in report.groups:
        for p in pairs:
            a, b = fam_of[files[p.a]], fam_of[files[p.b]]
            if a.family == b.family:
                found[p.layer]["tp"] += 1
                if "original" in (a.kind, b.kind):
                    found[p.layer]["copy_original"] += 1
            elif a.label == b.label:
                found[p.layer]["same_product"] += 1
                same_product_pairs += 1
            else:
                found[p.layer]["fp"] += 1
    layers, cum = [], Counter()
    for layer in LAYERS:
        cum.update(found[layer])
        tp, fp = found[layer]["tp"], found[layer]["fp"]
        layers.append({"layer": layer, "pairs": tp + fp + found[layer]["same_product"],
                       "precision": _ratio(tp, tp + fp), "recall": _ratio(found[layer]["copy_original"], total_pos),
                       "cumulative_recall": _ratio(cum["copy_original"], total_pos)})
    combined = _group_scores(report, fam_of, positives)
    return {"positives": total_pos, "positives_by_kind": dict(positives), "layers": layers, "combined": combined,
            "same_product_pairs": same_product_pairs}


def _group_scores(report: DedupReport, fam_of: dict[str, Member], positives: Counter) -> dict:
    files = [im.file for im in report.images]
    group_of = {}
    for g, (members, _pairs) in enumerate(report.groups):
        for i in members:
            group_of[files[i]] = g
    originals = {m.family: f for f, m in fam_of.items() if m.kind == "original"}
    hit = Counter()
    for f, m in fam_of.items():
        o = originals.get(m.family)
        if m.kind != "original" and o is not None and f in group_of and group_of.get(o) == group_of[f]:
            hit[m.kind] += 1
    tp = fp = same = 0
    for members, _pairs in report.groups:
        ms = [fam_of[files[i]] for i in members]
        by_family = Counter(m.family for m in ms)
        by_label = Counter(m.label for m in ms)
        n = len(ms)
        pairs_all = n * (n - 1) // 2
        same_family = sum(c * (c - 1) // 2 for c in by_family.values())
        same_label = sum(c * (c - 1) // 2 for c in by_label.values())
        tp += same_family
        same += same_label - same_family
        fp += pairs_all - same_label
    photos = [m for m in fam_of.values() if m.kind == "original"]
    label_pairs = sum(c * (c - 1) // 2 for c in Counter(m.label for m in photos).values())
    linked_products = _linked_originals(report, fam_of)
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(sum(hit.values()), sum(positives.values())),
            "recall_by_kind": {k: _ratio(hit[k], positives[k]) for k in sorted(positives)},
            "pairs_in_groups": {"same_image": tp, "other_sku": fp, "same_sku_other_photo": same},
            "same_sku_photo_pairs": label_pairs, "same_sku_photo_pairs_linked": linked_products}


def _linked_originals(report: DedupReport, fam_of: dict[str, Member]) -> int:
    """Pairs of two different original photos of one SKU that a layer matched directly."""
    files = [im.file for im in report.images]
    n = 0
    for _members, pairs in report.groups:
        for p in pairs:
            a, b = fam_of[files[p.a]], fam_of[files[p.b]]
            if a.kind == b.kind == "original" and a.family != b.family and a.label == b.label:
                n += 1
    return n


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def grocery_copies(engine, root: Path, split: str, work: Path, seed: int = 0, limit: int | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Copies of the split's photos and of its half of the catalogue images (:func:`catalogue_half`)."""
    t0 = time.perf_counter()
    members, made = make_copies_folder(engine, root, split, work, seed, limit=limit, progress=progress)
    t1 = time.perf_counter()
    report = Deduplicator(engine).folder(work, progress)
    t2 = time.perf_counter()
    out = score_copies(report, members)
    out.update({"split": split, "images": len(members),
                "catalogue_images": len(catalogue_half(read_manifest(root), split)), "copies_made": dict(made), "skipped": report.to_json()["skipped"],
                "seconds": {"make_copies": round(t1 - t0, 1), "dedup": round(t2 - t1, 1)}})
    return out


def ukbench(engine, root: Path, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Each manifest group should be one found group; the corrupt file should be skipped, not crash."""
    rows = read_manifest(root)
    report = Deduplicator(engine).folder(Path(root), progress)
    group_of = {}
    for g, (members, _pairs) in enumerate(report.groups):
        for i in members:
            group_of[report.images[i].file] = g
    skipped = {s for s, _ in report.skipped}
    expected: dict[str, list[str]] = {}
    for r in rows:
        expected.setdefault(r["group"], []).append(r["path"])
    copies_total = copies_with_original = merged_wrongly = 0
    for grp, paths in expected.items():
        base = [p for p in paths if p.startswith("base_images/")]
        for p in paths:
            if p in skipped or p in base:
                continue
            copies_total += 1
            if base and p in group_of and group_of.get(base[0]) == group_of[p]:
                copies_with_original += 1
    label = {r["path"]: r["group"] for r in rows}
    for members, _pairs in report.groups:
        if len({label.get(report.images[i].file) for i in members}) > 1:
            merged_wrongly += 1
    return {"copies": copies_total, "grouped_with_original": copies_with_original,
            "groups_mixing_originals": merged_wrongly, "skipped": report.to_json()["skipped"],
            "layers": dict(Counter(p.layer for _m, ps in report.groups for p in ps))}


# -- BENCHMARKS.md ---------------------------------------------------------------------------
def copies_markdown(res: dict) -> str:
    c = res["combined"]
    lines = [f"Split `{res['split']}` photos plus {res.get('catalogue_images', 0)} catalogue images "
             f"({_catalogue_words(res['split'])}): "
             f"{res['images']} images, "
             f"{res['positives']} copy-original pairs. Copies made: "
             + ", ".join(f"{k} {v}" for k, v in res["copies_made"].items()) + ".",
             "Thresholds are the defaults, chosen on copies of `train` photos and the train half of the catalogue "
             "(never this split).", "",
             "| layer (cheapest first) | pairs it decided | precision | recall | recall so far |",
             "|---|---|---|---|---|"]
    for row in res["layers"]:
        lines.append(f"| {row['layer']} | {row['pairs']} | {_fmt(row['precision'])} | {_fmt(row['recall'])} | "
                     f"{_fmt(row['cumulative_recall'])} |")
    g = c["pairs_in_groups"]
    lines += ["", f"**Combined decision (groups):** precision {_fmt(c['precision'])}, recall {_fmt(c['recall'])} "
              f"(pairs inside groups: {g['same_image']} of one image, {g['other_sku']} across SKUs, "
              f"{g['same_sku_other_photo']} of one SKU but different photos). Target: precision >= "
              f"{TARGET_PRECISION} ({_met(c['precision'], TARGET_PRECISION)}), recall >= {TARGET_RECALL} "
              f"({_met(c['recall'], TARGET_RECALL)}).", "",
              "| copy kind | recall |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in c["recall_by_kind"].items()]
    lines += ["", f"Two different photos of the same SKU were matched directly in {c['same_sku_photo_pairs_linked']} "
              f"of {c['same_sku_photo_pairs']} such pairs.",
              f"Time: copies {res['seconds']['make_copies']} s, dedup (signatures, layers, groups) "
              f"{res['seconds']['dedup']} s."]
    return "\n".join(lines)


def _catalogue_words(split: str) -> str:
    if split in ("train", "val"):
        return (f"the coarse classes of the {'even' if split == 'train' else 'odd'} positions in name order; "
                f"the other half goes to {'val' if split == 'train' else 'train'}")
    return "all of them"


def ukbench_markdown(res: dict) -> str:
    skipped = "; ".join(f"`{s['item']}` ({s['reason']})" for s in res["skipped"]) or "none"
    layers = ", ".join(f"{k} {v}" for k, v in sorted(res["layers"].items())) or "none"
    return (f"{res['grouped_with_original']} of {res['copies']} copies (flipped, resized, rotated, re-saved) grouped "
            f"with their original; {res['groups_mixing_originals']} group(s) mixing two originals. "
            f"Skipped: {skipped}. Pairs by layer: {layers}.")


def _met(value: float | None, target: float) -> str:
    return "met" if value is not None and value >= target else "not met"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"
