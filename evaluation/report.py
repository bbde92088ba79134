"""``skulens eval`` and ``skulens tune``: configurations, ablation rows, the JSON report.

JSON keys other programs read (keep them stable): ``protocol, split, queries, metrics,
packaged (G1/G2), baselines (C1/K1), ablation (with --ablate)``, plus ``per_query``,
``config``, ``settings``, ``models``, ``machine``, ``date``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
from pathlib import Path

from core.errors import InvalidInputError
from core.settings import Settings
from core.types import SIGNALS
from evaluation.protocols import load_protocol, stratified_sample, visit_share, with_photo_gallery
from evaluation.runner import ALL_REGIONS, ConfigResult, EvalConfig, Evaluator, Progress
from pipeline.analysis import Stages, has_centre_views
from pipeline.store import has_catalogue, open_store
from pipeline.tuned import tuned_key
from pipeline.tuned import tuned_weights as stored_tuned_weights
from training.embedder_data import VISIT_MIN_PHOTOS

log = logging.getLogger(__name__)

HOLDOUT = 0.1  # `tune --protocol G2` without --embedder: the least share of a SKU's photos a held-out visit holds
SKU_IMAGES = (1, 2, 3, 5)  # `tune --protocol G2` tries these: a SKU's score averages its k best images


def _only(weights: dict[str, float], keep: tuple[str, ...]) -> dict[str, float]:
    return {s: (weights[s] if s in keep else 0.0) for s in SIGNALS}


def default_config(settings: Settings, tuned: dict[str, float] | None, sku_images: int = 1) -> EvalConfig:
    name = "all signals, tuned weights" if tuned else "all signals, default weights"
    if sku_images > 1:
        name += f", mean of each SKU's {sku_images} best images"
    return EvalConfig(name, tuned or settings.fusion.weights.as_dict(), tuple(settings.fusion.query_regions),
                      tuple(settings.fusion.index_regions), sku_images=sku_images)


def ablation_configs(settings: Settings, tuned: dict[str, float] | None, sku_images: int = 1) -> list[EvalConfig]:
    """Cumulative rows: each adds one stage or signal to the one before (each SKU by its best
    image); then the tuned weights, with the SKU images tuned with them when that is more than one."""
    w = settings.fusion.weights.as_dict()
    full, crop = ("full",), ("full", "crop")
    centre = crop + ("centre70", "centre50")
    q_all, g_all = centre + ("masked",), ALL_REGIONS
    rows = [
        EvalConfig("embedding, full photo", _only(w, ("embedding",)), full, full),
        EvalConfig("+ detection crop", _only(w, ("embedding",)), crop, crop),
        EvalConfig("+ centre views of the query", _only(w, ("embedding",)), centre, crop),
        EvalConfig("+ centre views of the catalogue photos", _only(w, ("embedding",)), centre, centre),
        EvalConfig("+ background removal", _only(w, ("embedding",)), q_all, g_all),
        EvalConfig("+ colour", _only(w, ("embedding", "colour")), q_all, g_all),
        EvalConfig("+ tags", _only(w, ("embedding", "colour", "tags")), q_all, g_all),
        EvalConfig("+ OCR text", _only(w, ("embedding", "colour", "tags", "text")), q_all, g_all),
        EvalConfig("+ geometric verification", w, q_all, g_all),
        default_config(settings, None),
    ]
    if tuned:
        rows.append(default_config(settings, tuned))
        if sku_images > 1:
            rows.append(default_config(settings, tuned, sku_images))
    rows += [EvalConfig("colour histogram (baseline)", kind="colour-histogram"),
             EvalConfig("random (baseline)", kind="random")]
    return rows


def tuned_record(settings: Settings, embedder_name: str | None = None, photos: bool = False) -> dict | None:
    """What ``skulens tune`` saved with the catalogue in the data directory (weights, split, fit), if
    any: the weights learnt for ``embedder_name`` (or its float model) when there are some, else the
    plain ones -- the weights the engine would use; with ``photos``, those learnt against a gallery
    with shop photos first (G2's)."""
    if not has_catalogue(settings):
        return None
    store = open_store(settings)
    try:
        return stored_tuned_weights(store, embedder_name, photos)
    finally:
        store.close()


def _tuned_for(record: dict, protocol: str, root: Path) -> bool:
    """Weights learnt on one catalogue serve that catalogue only (G1 and G2 share the grocery one)."""
    if record.get("dataset"):
        return Path(record["dataset"]).resolve() == Path(root).resolve()
    return protocol in ("G1", "G2") and record.get("protocol") == "G1"


def tuned_weights(settings: Settings) -> dict[str, float] | None:
    record = tuned_record(settings)
    return record["weights"] if record else None


def run_eval(protocol: str, root: Path, settings: Settings, stages: Stages, split: str = "val",
             limit: int | None = None, ablate: bool = False, seed: int = 0,
             progress: Progress | None = None) -> dict:
    data = load_protocol(protocol, root, split, limit, seed)
    record = tuned_record(settings, stages.embedder.name, photos=data.name == "G2")
    if record and not _tuned_for(record, data.name, root):
        log.info("tuned weights in %s were learnt on %s, not on %s: using the default weights",
                 settings.data, record.get("dataset") or record.get("protocol"), root)
        record = None
    tuned = record["weights"] if record else None
    sku_images = int((record or {}).get("sku_images") or settings.fusion.sku_images)
    ev = Evaluator(data, settings, stages)
    try:
        ev.prepare(progress)
        main = ev.evaluate(default_config(settings, tuned, sku_images), seed)
        report = {"protocol": data.name, "split": split, "queries": len(data.queries),
                  "metrics": main.metrics, "config": _config_json(main.config)}
        if record:
            report["tuned"] = {k: record.get(k) for k in ("protocol", "split", "queries", "fit", "date", "embedder",
                                                          "gallery_images", "sku_images", "sku_images_fit")}
        if not data.per_image:
            report["packaged"] = main.packaged
        else:
            report["baselines"] = {
                "random": ev.evaluate(EvalConfig("random", kind="random"), seed).metrics,
                "embedding-cosine": ev.evaluate(EvalConfig("embedding cosine"), seed).metrics,
            }
        if ablate:
            report["stage_ms"] = ev.measure_stage_costs()
            report["ablation"] = [_row(ev.evaluate(c, seed)) for c in ablation_configs(settings, tuned, sku_images)]
        report["per_query"] = main.per_query
    finally:
        ev.close()
    report.update(_provenance(settings, stages, root, limit, seed))
    return report


def check_tune_args(protocol: str, split: str) -> str:
    """The protocol name ``skulens tune`` learns weights for, or an error before any model loads."""
    if protocol.upper() not in ("G1", "G2"):
        raise InvalidInputError(f"tune learns weights for G1 or G2 (the grocery protocols), got {protocol!r}")
    if split in ("val", "test"):
        raise InvalidInputError(f"tuning on {split!r} would tune on a split we report; tune on train")
    return protocol.upper()


def run_tune(root: Path, settings: Settings, stages: Stages, split: str = "train", limit: int | None = None,
             seed: int = 0, progress: Progress | None = None, protocol: str = "G1") -> dict:
    """Tune with ``split`` photos as queries; save the weights with the catalogue in ``settings.data``.

    ``protocol`` G1: the gallery is the catalogue pictures.  G2: the catalogue plus the ``split``
    photos that are not queries (a shop's gallery with its own photos); the queries are the photos
    held out of it (one shop visit of each SKU's, at least :data:`HOLDOUT` of its photos, found as
    ``embedder train --holdout-by visits`` finds them, with the pipeline's embedder), and each SKU's
    embedding score averages the number of its best-matching images (:data:`SKU_IMAGES`) that fits
    best with its weights.  When ``stages`` run a trained embedder, only the photos it was not
    trained on are queries (its held-out ones), and the weights are kept for that embedder apart
    from the default ones; G2's weights are kept apart from G1's too."""
    from evaluation.tuning import tune_weights

    protocol = check_tune_args(protocol, split)
    trained = stages.embedder.trained
    whole = trained is None and protocol == "G1"
    data = load_protocol("G1", root, split, limit if whole else None, seed)
    if trained is not None:
        data.queries = _unseen_by(trained, data.queries)
    elif protocol == "G2":
        data.queries = visit_share(data.queries, HOLDOUT, _photo_vectors(stages, settings))
        if not data.queries:
            raise InvalidInputError(f"no SKU's {split} photos form a shop visit to hold out of the gallery (a SKU "
                                    f"needs {VISIT_MIN_PHOTOS} or more photos, in groups that look apart)")
        log.info("holding out %d %s photos (one visit of each of %d SKUs) as queries", len(data.queries), split,
                 len({q.label for q in data.queries}))
    if protocol == "G2":
        data = with_photo_gallery(data, data.queries)
    if limit is not None and not whole:
        data.queries = stratified_sample(data.queries, limit, seed)
    ev = Evaluator(data, settings, stages)
    try:
        ev.prepare(progress)
        regions = (tuple(settings.fusion.query_regions), tuple(settings.fusion.index_regions))
        fits = {}
        for k in SKU_IMAGES if protocol == "G2" else (1,):
            scored = ev.scored(*regions, k)
            relevant = [s.skus.index(q.label) if q.label in s.skus else None
                        for (q, _), s in zip(ev.analyses, scored)]
            # which candidates a search checks by keypoints depends on the other signals' weights:
            # tune those first, check the best few under them, then tune all five
            base, _ = tune_weights([s.signals for s in scored], relevant, without=("verify",))
            checked = [ev.verified(i, s, {**base, "verify": 1.0}) for i, s in enumerate(scored)]
            fits[k] = tune_weights(checked, relevant)
        # the number of SKU images whose best weights score best there (the fewest on a tie)
        sku_images = max(fits, key=lambda k: (fits[k][1]["recall@1"] + 0.5 * fits[k][1]["mrr"], -k))
        weights, fit = fits[sku_images]
    finally:
        ev.close()
    record = {"weights": weights, "fit": fit, "protocol": protocol, "dataset": str(Path(root).resolve()),
              "split": split, "queries": len(data.queries),
              "gallery_images": sum(len(paths) for _, paths in data.gallery),
              "regions": {"query": regions[0], "gallery": regions[1]},
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if protocol == "G2":
        record["sku_images"] = sku_images
        record["sku_images_fit"] = {str(k): {"weights": w, **f} for k, (w, f) in fits.items()}
    if trained is not None:
        record["embedder"] = stages.embedder.name
    store = open_store(settings)
    try:
        store.set_meta(tuned_key(record.get("embedder"), photos=protocol == "G2"), json.dumps(record))
    finally:
        store.close()
    return record


def _photo_vectors(stages: Stages, settings: Settings):
    """``paths -> L2-normalised embeddings`` of the whole photos by the pipeline's embedder, scaled
    as ``embedder train`` holds them before it finds visits."""
    from pipeline.images import decode_image, read_image_bytes, resize_max_side
    from training.embedder import visit_vectors
    from training.embedder_data import KEEP_SIDE

    def embed(paths: list[Path]):
        return visit_vectors([resize_max_side(decode_image(read_image_bytes(p, settings.images), settings.images,
                                                           p.name), KEEP_SIDE) for p in paths], stages.embedder)

    return embed


def _unseen_by(trained, queries: list) -> list:
    """The query photos a trained embedder did not learn from (by content), else an error saying why."""
    from training.embedder_data import training_photos

    seen, _ = training_photos(trained)
    unseen = [q for q in queries if hashlib.sha256(q.path.read_bytes()).hexdigest() not in seen]
    log.info("%d of %d photos were not used to train %s: tuning on them", len(unseen), len(queries), trained.name)
    if not unseen:
        raise InvalidInputError(f"{trained.name} was trained on every one of these photos; train it with a held-out "
                                "share (`skulens embedder train --holdout 0.1`) to tune weights for it")
    return unseen


def _config_json(c: EvalConfig) -> dict:
    return {"name": c.name, "kind": c.kind, "weights": c.weights, "query_regions": list(c.query_regions),
            "gallery_regions": list(c.gallery_regions), "sku_images": c.sku_images}


def _row(r: ConfigResult) -> dict:
    row = {"config": r.config.name, "metrics": r.metrics, "ms_per_query": round(r.ms_per_query, 1)}
    if r.packaged is not None:
        row["packaged"] = r.packaged
    return row


def _provenance(settings: Settings, stages: Stages, root: Path, limit: int | None, seed: int) -> dict:
    import numpy
    import torch

    return {
        "dataset": str(root), "limit": limit, "seed": seed,
        "settings": json.loads(settings.model_dump_json(exclude={"data"})),
        "models": {"embedder": stages.embedder.name, "detector": describe_detector(stages.detector),
                   "background": settings.background.model},
        "machine": {"host": platform.node(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                    "cuda": torch.cuda.is_available()},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def describe_detector(detector) -> str:
    """Which detector a measurement ran with, in words."""
    if detector is None:
        return "none (the whole photo)"
    if hasattr(detector, "remover"):  # MaskDetector: whatever weights the settings name go unused
        return "boxes from the background mask"
    weights = getattr(getattr(detector, "settings", None), "weights", None)  # any detector with a settings section
    if weights is not None:
        kind = "segmentation" if detector.own_masks else "detection"
        return f"YOLO {kind} model {Path(weights).name}"
    return type(detector).__name__


def _catalogue_regions_text(report: dict) -> str:
    regions = report["config"].get("gallery_regions")
    if regions is None:  # reports from before the gallery's regions were recorded
        return ""
    if not has_centre_views(regions):
        return f"catalogue regions {regions}, "
    packshots = report.get("settings", {}).get("fusion", {}).get("packshot_centre_views")
    return f"catalogue regions {regions} (packshots {'with' if packshots else 'without'} the centre views), "


def report_markdown(report: dict) -> str:
    """The BENCHMARKS.md body for one ``skulens eval`` report."""
    keys = list(report["metrics"])
    who = (f"Queries: the first 5 images of each label, {report['queries']} queries; candidates: the rest"
           if "baselines" in report else f"Split **{report['split']}**, {report['queries']} queries")
    lines = [who
             + (f" (stratified sample, seed {report['seed']})" if report.get("limit") else "")
             + f"; default configuration: {report['config']['name']} "
             f"(weights {report['config']['weights']}, query regions {report['config']['query_regions']}, "
             + _catalogue_regions_text(report)
             + f"region pooling {report.get('settings', {}).get('fusion', {}).get('region_pooling', 'max')}). "
             f"Detector: {report.get('models', {}).get('detector', '?')}. "
             f"Embedder: {report.get('models', {}).get('embedder', '?')}.", ""]
    if report.get("tuned"):
        t = report["tuned"]
        fit = ", ".join(f"{k} {v:.3f}" for k, v in (t.get("fit") or {}).items() if k != "queries")
        lines[0] += (f" Tuned weights: learnt by `skulens tune` on {t.get('protocol')} **{t.get('split')}** "
                     f"({t.get('queries')} queries; fit there: {fit}), never on the split reported here.")
        if t.get("protocol") == "G2":
            lines[0] += (f" Their gallery: the catalogue pictures plus the other {t.get('split')} photos"
                         + (f" ({t['gallery_images']} images)" if t.get("gallery_images") else "")
                         + f"; the queries: {t.get('split')} photos held out of it (`skulens tune --protocol G2`).")
            if t.get("sku_images_fit"):
                tried = ", ".join(f"{k}: {f['recall@1']:.3f}" for k, f in t["sku_images_fit"].items())
                lines[0] += (f" With them, a SKU's embedding score is the mean of its {t.get('sku_images')} best "
                             f"image(s), the number chosen there too (fit recall@1 by number: {tried}).")
        if t.get("embedder"):
            lines[0] += (f" They were learnt for {t['embedder']}, on the {t.get('split')} photos it was not "
                         "trained on (`skulens tune --embedder`).")
        elif "-ft-" in report.get("models", {}).get("embedder", ""):
            lines[0] += " They were learnt with the ImageNet embedder (none tuned for this one)."
    head = "| configuration | " + " | ".join(keys)
    packaged = any("packaged" in r for r in report.get("ablation", [])) or report.get("packaged")
    head += " | packaged R@1 | packaged mAP" if packaged else ""
    lines += [head + " | ms/query |", "|---" * (len(keys) + (3 if packaged else 1) + 1) + "|"]

    def row(name: str, m: dict, pk: dict | None, ms: float | None) -> str:
        cells = [f"{m[k]:.3f}" for k in keys]
        if packaged:
            cells += [f"{pk['recall@1']:.3f}", f"{pk['map']:.3f}"] if pk else ["", ""]
        return f"| {name} | " + " | ".join(cells) + f" | {'' if ms is None else f'{ms:.0f}'} |"

    if report.get("ablation"):
        lines += [row(r["config"], r["metrics"], r.get("packaged"), r["ms_per_query"]) for r in report["ablation"]]
    else:
        lines.append(row(report["config"]["name"], report["metrics"], report.get("packaged"), None))
    for name, m in report.get("baselines", {}).items():
        lines.append(row(f"baseline: {name}", m, None, None))
    if report.get("stage_ms"):
        costs = ", ".join(f"{k} {v:.0f}" for k, v in sorted(report["stage_ms"].items()))
        lines += ["", f"ms/query: the stages each row needs, timed on 5 query photos analysed afresh in this run "
                  f"(no cache; ms: {costs}), plus ranking. Clean latencies over 100 queries are in the "
                  "query-speed section."]
    else:
        lines += ["", "ms/query: mean time of the stages each row needs, as recorded when each photo was first "
                  "analysed (possibly under other load), plus ranking; clean per-stage latencies are in the "
                  "query-speed section."]
    return "\n".join(lines) + "\n"
