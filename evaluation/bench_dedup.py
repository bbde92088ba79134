"""How near-duplicate search scales: the index layers on synthetic signatures at 10k and 100k
images, next to the per-image and per-pair costs of the stages measured on real photos.

Synthetic signatures stand in for images at scale (the issue allows synthetic copies there):
unit vectors of the embedder's dimension with noisy copies (cosine about 0.85-0.99), 64-bit
hashes with a few flipped bits for copies, one hue histogram per family.  What they cannot
run (decoding, hashing, embedding, ORB) is measured per image on real files and reported as
a cost per image, so the totals can be worked out for any catalogue.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.settings import DedupSettings
from core.types import ImageHashes
from fusion.dedup import DedupItem, find_pairs, group_pairs, visual_candidates
from pipeline.images import decode_image, read_image_bytes


def synthetic_items(n: int, dim: int, seed: int = 0, copies: int = 3) -> list[DedupItem]:
    """``n`` signatures: families of one original and ``copies`` near copies."""
    rng = np.random.default_rng(seed)
    items: list[DedupItem] = []
    fam = 0
    while len(items) < n:
        base = rng.normal(size=dim).astype(np.float32)
        base /= np.linalg.norm(base)
        h, d = (int(x) for x in rng.integers(0, 2**63, 2, dtype=np.int64))
        hues = tuple(float(v) for v in rng.dirichlet(np.ones(12)))
        for c in range(min(copies + 1, n - len(items))):
            if c == 0:
                vec, ph, dh = base, h, d
            else:  # a copy: a noisy vector, a few flipped hash bits (sometimes many: a crop)
                noise = rng.normal(size=dim).astype(np.float32)
                vec = base + noise / np.linalg.norm(noise) * rng.uniform(0.15, 0.6)
                vec /= np.linalg.norm(vec)
                flips = int(rng.choice([rng.integers(0, 6), rng.integers(12, 30)]))
                ph = _flip(h, rng.choice(64, flips, replace=False))
                dh = _flip(d, rng.choice(64, flips, replace=False))
            items.append(DedupItem(f"{fam}-{c}", ImageHashes(ph, dh, (), hues, 0.5), vec.astype(np.float32)))
        fam += 1
    return items


def _flip(h: int, bits) -> int:
    for b in bits:
        h ^= 1 << int(b)
    return h


def scale_row(n: int, dim: int, settings: DedupSettings, seed: int = 0) -> dict:
    items = synthetic_items(n, dim, seed)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    hash_only = find_pairs(items, settings.model_copy(update={"candidate_min_cosine": 1.01, "neighbours": 1}))
    t1 = time.perf_counter()
    cands = visual_candidates(items, settings)
    t2 = time.perf_counter()
    known = {(p.a, p.b) for p in hash_only}
    # every phash match is checked for contradicting pixels, every other neighbour by its keypoints
    to_check = sum(1 for p in hash_only if p.layer == "phash") + sum(1 for a, b, _c in cands if (a, b) not in known)
    pairs = find_pairs(items, settings)  # all layers but keypoints (no images here)
    groups = group_pairs(len(items), pairs)
    t3 = time.perf_counter()
    # the incremental report: the last 1% of the images are new, the pairs among the others are cached
    fresh = list(range(n - max(1, n // 100), n))
    new = np.zeros(n, bool)
    new[fresh] = True
    t4 = time.perf_counter()
    find_pairs(items, settings, fresh=fresh)
    t5 = time.perf_counter()
    hash_new = find_pairs(items, settings.model_copy(update={"candidate_min_cosine": 1.01, "neighbours": 1}),
                          fresh=fresh)
    known_new = {(p.a, p.b) for p in hash_new}
    to_check_new = sum(1 for p in hash_new if p.layer == "phash") + sum(
        1 for a, b, _c in visual_candidates(items, settings, new=new) if (a, b) not in known_new)
    return {"images": n, "exact_and_phash_s": round(t1 - t0, 2), "embedding_neighbours_s": round(t2 - t1, 2),
            "all_index_layers_and_groups_s": round(t3 - t2, 2), "pairs": len(pairs), "groups": len(groups),
            "pair_checks_needed": to_check, "new_images": len(fresh), "new_index_layers_s": round(t5 - t4, 2),
            "new_pair_checks_needed": to_check_new,
            "peak_rss_growth_mib": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 0)}


def unit_costs(engine, files: list[Path], progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Milliseconds per image (decode, hashes, embedding in batches, ORB keypoints) and per keypoint
    check, measured on real files."""
    limits = engine.settings.images
    st = engine.stages
    t0 = time.perf_counter()
    images = [decode_image(read_image_bytes(f, limits), limits, f.name) for f in files]
    t1 = time.perf_counter()
    for im in images:
        st.hasher.hash(im)
    t2 = time.perf_counter()
    st.embedder.embed(images[:2])  # warm
    t3 = time.perf_counter()
    st.embedder.embed(images)
    t4 = time.perf_counter()
    kps = [st.verifier.keypoints(im) for im in images]
    t5 = time.perf_counter()
    checks = 0
    for i in range(len(kps) - 1):
        st.verifier.verify(kps[i], kps[i + 1])
        checks += 1
    t6 = time.perf_counter()
    crops = [st.verifier.keypoints(np.ascontiguousarray(im[im.shape[0] // 10:, im.shape[1] // 10:])) for im in images]
    t7 = time.perf_counter()
    for kp, crop in zip(kps, crops):  # a copy: RANSAC keeps many matches and the pixels are compared
        st.verifier.verify(kp, crop)
    t8 = time.perf_counter()
    n = len(images)
    return {"images": n, "decode_ms": round((t1 - t0) / n * 1000, 1), "hash_ms": round((t2 - t1) / n * 1000, 1),
            "embed_ms": round((t4 - t3) / n * 1000, 1), "keypoints_ms": round((t5 - t4) / n * 1000, 1),
            "check_ms": round((t6 - t5) / max(1, checks) * 1000, 2),
            "copy_check_ms": round((t8 - t7) / n * 1000, 2)}


def scale_markdown(rows: list[dict], costs: dict, settings: DedupSettings) -> str:
    per_image = costs["decode_ms"] + costs["hash_ms"] + 2 * costs["embed_ms"]  # whole image and centre view
    lines = [f"Synthetic signatures (the embedder's dimension, families of an original and 3 copies) through the "
             f"real index layers; neighbours per image {settings.neighbours}. Per-image costs measured on "
             f"{costs['images']} real photos: decode {costs['decode_ms']} ms, hashes {costs['hash_ms']} ms, "
             f"embedding {costs['embed_ms']} ms per view (batched; two views per image), ORB keypoints {costs['keypoints_ms']} ms; "
             f"one pair check {costs['check_ms']} ms for two different photos, {costs.get('copy_check_ms', '-')} ms "
             f"for a copy (its pixels are compared too; the estimate uses this).", "",
             "| images | exact + phash | embedding neighbours | all index layers + groups | pair checks needed "
             "| their cost (estimate) | signatures of new images (estimate) | peak RSS growth "
             "| 1% new: index layers | 1% new: pair checks | 1% new: their cost (estimate) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    check_ms = costs.get("copy_check_ms", costs["check_ms"])
    for r in rows:
        checks_s = r["pair_checks_needed"] * check_ms / 1000
        kp_s = min(r["images"], 2 * r["pair_checks_needed"]) * costs["keypoints_ms"] / 1000
        sig_s = r["images"] * per_image / 1000
        new_checks = r.get("new_pair_checks_needed")
        new_s = (new_checks * check_ms / 1000 + min(r["images"], 2 * new_checks) * costs["keypoints_ms"] / 1000
                 if new_checks is not None else None)
        lines.append(f"| {r['images']:,} | {r['exact_and_phash_s']} s | {r['embedding_neighbours_s']} s | "
                     f"{r['all_index_layers_and_groups_s']} s | {r['pair_checks_needed']:,} | "
                     f"{checks_s + kp_s:.0f} s | {sig_s:.0f} s | {r['peak_rss_growth_mib']:.0f} MiB | "
                     + (f"{r['new_index_layers_s']} s | {new_checks:,} | {new_s:.0f} s |" if new_s is not None
                        else "— | — | — |"))
    lines += ["", "Pair checks: every phash match (is it contradicted by its pixels?) and every embedding neighbour "
              "from the candidate cosine up that the cheaper layers did not decide (keypoints and pixels).",
              "Catalogue images already carry their embedding (stored at indexing) and hashes (cached at "
              "indexing), so a catalogue run pays only the index layers and the pair checks; the signature "
              "column is what a folder of new files costs once (it is cached by content hash).",
              "The last three columns are the incremental report (`GET /v1/duplicates`, `skulens dedup` after the "
              "first): the pairs among the other images are read back from `<data>/duplicates.sqlite3`, and the "
              "newest 1% of the images (whole families) are looked for against all of them."]
    return "\n".join(lines)
