"""Protocols read from manifests; the evaluation and tuning runs on a tiny generated data set.

The stages here are small fakes (a colour-mean embedder): these tests are about the code around
the models — manifests, splits, metrics, ablation rows, the JSON keys — not about the models.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import InvalidInputError, NotFoundError
from core.settings import ColourSettings, Settings
from core.types import Tags
from evaluation.protocols import load_protocol, stratified_sample, write_gallery_csv
from evaluation.report import report_markdown, run_eval, run_tune, tuned_weights
from evaluation.runner import gallery_regions
from features.colour_kmeans import KMeansColourExtractor
from pipeline.analysis import Stages
from pipeline.catalog_source import read_catalog

COLOURS = {"Red-Apple": (220, 20, 20), "Lime": (40, 200, 40), "Blue-Milk": (20, 40, 220)}


class MeanColourEmbedder:
    name = "mean-colour-test"
    dim = 8
    input_size, runtime, trained = 260, "numpy", None

    def warmup(self):
        pass

    def embed(self, images):
        out = []
        for im in images:
            v = np.zeros(self.dim, np.float32)
            v[:3] = im.reshape(-1, 3).mean(axis=0) / 255.0
            v[3] = 0.05
            out.append(v / np.linalg.norm(v))
        return np.stack(out), [Tags(("thing",), np.array([1.0], np.float32)) for _ in images]


def _img(path: Path, colour, seed: int) -> None:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour)[None, None, :] + rng.normal(0, 25, (48, 64, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_grocery(root: Path, train_photos: int = 3, second_visit: int | None = None) -> Path:
    """Three SKUs; train photos from ``second_visit`` on are lit differently (another shop visit)."""
    rows = []
    for cid, (name, colour) in enumerate(COLOURS.items()):
        _img(root / "catalog" / f"{name}.jpg", colour, cid)
        (root / "catalog" / f"{name}.txt").write_text(f"A fine {name.replace('-', ' ').lower()}.")
        rows.append([f"catalog/{name}.jpg", "catalog", "iconic", cid, name, name, cid == 2])
        for split, n in (("train", train_photos), ("val", 2)):
            for i in range(n):
                rel = f"photos/{split}/{name}/{name}_{i}.jpg"
                later = split == "train" and second_visit is not None and i >= second_visit
                lit = tuple(min(255, c + 90) if later else c for c in colour)
                _img(root / rel, lit, 100 * cid + 10 * i + len(split))
                rows.append([rel, split, "photo", cid, name, name, cid == 2])
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "split", "kind", "class_id", "class_name", "coarse_class", "packaged"])
        w.writerows(rows)
    return root


@pytest.fixture
def grocery(tmp_path: Path) -> Path:
    return make_grocery(tmp_path / "grocery")


@pytest.fixture
def category(tmp_path: Path) -> Path:
    root = tmp_path / "cat"
    with open(root.mkdir() or root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for li, (label, colour) in enumerate(COLOURS.items()):
            for i in range(8):
                _img(root / label / f"{i}.png", colour, 7 * li + i)
                w.writerow([f"{label}/{i}.png", label])
    return root


@pytest.fixture
def stages() -> Stages:
    return Stages(embedder=MeanColourEmbedder(), colours=KMeansColourExtractor(ColourSettings()))


def test_grocery_protocols_read_the_manifest(grocery):
    g1 = load_protocol("g1", grocery)
    assert [p.sku for p, _ in g1.gallery] == list(COLOURS)
    assert len(g1.queries) == 6 and all(q.path.is_file() for q in g1.queries)
    assert g1.gallery[0][0].description.startswith("A fine")
    assert sum(q.packaged for q in g1.queries) == 2
    g2 = load_protocol("G2", grocery)
    assert all(len(paths) == 4 for _, paths in g2.gallery)  # catalogue + 3 train photos each
    assert len(load_protocol("G1", grocery, split="train").queries) == 9


def test_the_g2_gallery_becomes_a_catalogue_the_indexer_reads(grocery, tmp_path):
    out = tmp_path / "shop" / "g2.csv"
    assert write_gallery_csv(load_protocol("G2", grocery), out) == 12
    entries = read_catalog(out).entries
    assert [e.product.sku for e in entries] == list(COLOURS)
    for e in entries:  # the catalogue picture first, then the train photos; never a val photo
        assert e.images[0].parent.name == "catalog" and len(e.images) == 4
        assert all("/train/" in str(p) for p in e.images[1:])
    assert entries[0].product.description.startswith("A fine")


def test_category_protocol_takes_the_first_five_per_label(category):
    c1 = load_protocol("C1", category)
    assert len(c1.queries) == 15 and len(c1.gallery) == 9
    assert [q.path.name for q in c1.queries[:5]] == [f"{i}.png" for i in range(5)]
    assert c1.relevant_count("Lime") == 3


@pytest.mark.parametrize("call, error", [
    (lambda g: load_protocol("X9", g), InvalidInputError),
    (lambda g: load_protocol("G2", g, split="train"), InvalidInputError),
    (lambda g: load_protocol("G1", g, split="test"), InvalidInputError),  # no such split here
    (lambda g: load_protocol("G1", g / "nowhere"), NotFoundError),
])
def test_bad_protocol_calls(grocery, call, error):
    with pytest.raises(error):
        call(grocery)


def test_stratified_sample_spreads_over_labels(grocery):
    queries = load_protocol("G1", grocery, split="train").queries
    sample = stratified_sample(queries, 3, seed=1)
    assert sorted(q.label for q in sample) == sorted(COLOURS)
    assert stratified_sample(queries, 3, seed=1) == sample


def test_run_eval_reports_stable_keys_and_ablation(grocery, stages, tmp_path):
    settings = Settings(data=tmp_path / "data")
    report = run_eval("G1", grocery, settings, stages, ablate=True)
    assert {"protocol", "split", "queries", "metrics", "packaged", "ablation", "per_query", "machine",
            "date", "settings", "models"} <= set(report)
    assert set(report["metrics"]) == {"recall@1", "recall@5", "recall@10", "map"}
    assert report["metrics"]["recall@1"] == 1.0  # colours separate these three products
    names = [r["config"] for r in report["ablation"]]
    assert names[0] == "embedding, full photo" and "random (baseline)" in names
    assert all({"config", "metrics", "ms_per_query"} <= set(r) for r in report["ablation"])
    json.dumps(report)
    assert "| embedding, full photo |" in report_markdown(report)
    assert "+ centre views of the catalogue photos" in names  # the gallery holds every region
    assert "catalogue regions ['full', 'crop', 'centre70', 'centre50'] (packshots without the centre views)" \
        in report_markdown(report)


def test_category_eval_has_baselines(category, stages, tmp_path):
    report = run_eval("K1", category, Settings(data=tmp_path / "data"), stages)
    assert set(report["baselines"]) == {"random", "embedding-cosine"}
    assert set(report["metrics"]) == {"precision@1", "precision@5", "precision@10", "map"}
    assert report["metrics"]["precision@1"] == 1.0
    assert report["baselines"]["random"]["map"] < report["metrics"]["map"]


def test_tune_saves_weights_with_the_catalogue_and_refuses_reported_splits(grocery, stages, tmp_path):
    settings = Settings(data=tmp_path / "data")
    with pytest.raises(InvalidInputError):
        run_tune(grocery, settings, stages, split="val")
    record = run_tune(grocery, settings, stages)
    assert abs(sum(record["weights"].values()) - 1.0) < 1e-6 and record["split"] == "train"
    assert tuned_weights(settings) == record["weights"]
    report = run_eval("G1", grocery, settings, stages, ablate=True)
    assert report["config"]["name"] == "all signals, tuned weights"
    assert "all signals, tuned weights" in [r["config"] for r in report["ablation"]]


def test_tuning_for_a_trained_embedder_uses_only_photos_it_never_learnt_from(grocery, stages, tmp_path, monkeypatch):
    import hashlib
    from types import SimpleNamespace

    from evaluation.report import tuned_record
    from training import embedder_data

    photos = sorted((grocery / "photos" / "train").rglob("*.jpg"))
    seen = {hashlib.sha256(p.read_bytes()).hexdigest() for p in photos if not p.stem.endswith("_2")}
    monkeypatch.setattr(embedder_data, "training_photos", lambda trained: (seen, set()))
    stages.embedder.trained = SimpleNamespace(name="ft-test", folder=tmp_path / "ft")  # a trained embedder runs
    settings = Settings(data=tmp_path / "data")
    record = run_tune(grocery, settings, stages)
    assert record["queries"] == 3 and record["embedder"] == stages.embedder.name  # the one unseen photo per SKU
    assert tuned_record(settings) is None  # the default embedder's weights are not replaced
    assert tuned_record(settings, stages.embedder.name)["weights"] == record["weights"]
    report = run_eval("G1", grocery, settings, stages)
    assert report["tuned"]["embedder"] == stages.embedder.name and "photos it was not trained on" in report_markdown(report)
    g2 = run_tune(grocery, settings, stages, protocol="G2")  # the unseen photos against the seen ones
    assert g2["queries"] == 3 and g2["gallery_images"] == 3 + 6 and g2["embedder"] == stages.embedder.name
    assert tuned_record(settings, stages.embedder.name, photos=True)["weights"] == g2["weights"]
    assert tuned_record(settings, stages.embedder.name)["protocol"] == "G1"
    seen |= {hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}
    with pytest.raises(InvalidInputError, match="trained on every one of these photos"):
        run_tune(grocery, settings, stages)


def test_g2_tuning_queries_held_out_photos_against_the_catalogue_and_the_other_photos(stages, tmp_path):
    from evaluation.protocols import visit_share, with_photo_gallery
    from evaluation.report import _photo_vectors, tuned_record

    grocery = make_grocery(tmp_path / "grocery", train_photos=10, second_visit=7)
    g1 = load_protocol("G1", grocery, "train")
    held = visit_share(g1.queries, 0.1, _photo_vectors(stages, Settings(data=tmp_path / "data")))
    # each SKU's second visit, its photos 7-9, is held out whole
    assert sorted(q.path.stem for q in held) == sorted(f"{name}_{i}" for name in COLOURS for i in (7, 8, 9))
    g2 = with_photo_gallery(g1, held)
    gallery = [p for _, paths in g2.gallery for p in paths]
    assert g2.name == "G2" and len(gallery) == 3 + 21 and not {q.path for q in held} & set(gallery)
    assert all(paths[0].parent.name == "catalog" for _, paths in g2.gallery)  # the catalogue picture first

    settings = Settings(data=tmp_path / "data")
    with pytest.raises(InvalidInputError, match="G1 or G2"):
        run_tune(grocery, settings, stages, protocol="C1")
    record = run_tune(grocery, settings, stages, protocol="g2")
    assert record["protocol"] == "G2" and record["queries"] == 9 and record["gallery_images"] == 24
    assert set(record["sku_images_fit"]) == {"1", "2", "3", "5"} and record["sku_images"] in (1, 2, 3, 5)
    assert record["sku_images_fit"][str(record["sku_images"])]["weights"] == record["weights"]
    assert tuned_record(settings) is None  # G1's weights are not replaced
    assert tuned_record(settings, photos=True)["weights"] == record["weights"]
    report = run_eval("G2", grocery, settings, stages)
    assert report["tuned"]["protocol"] == "G2" and report["config"]["name"] == "all signals, tuned weights"
    assert "`skulens tune --protocol G2`" in report_markdown(report) and "(24 images)" in report_markdown(report)
    assert report["config"]["sku_images"] == report["tuned"]["sku_images"] == record["sku_images"]
    assert "fit recall@1 by number: 1: " in report_markdown(report)
    assert run_eval("G1", grocery, settings, stages)["config"]["name"] == "all signals, default weights"
    g1_record = run_tune(grocery, settings, stages)
    assert tuned_record(settings)["protocol"] == "G1" and tuned_record(settings, photos=True)["protocol"] == "G2"
    assert "sku_images" not in g1_record  # one picture per SKU: nothing to choose
    assert run_eval("G1", grocery, settings, stages)["tuned"]["queries"] == g1_record["queries"] == 30


def test_g2_tuning_needs_photos_to_hold_out(grocery, stages, tmp_path):
    with pytest.raises(InvalidInputError, match="8 or more photos"):
        run_tune(grocery, Settings(data=tmp_path / "data"), stages, protocol="G2")


def test_tuned_weights_serve_only_the_catalogue_they_were_learnt_on(tmp_path):
    from evaluation.report import _tuned_for

    grocery, clothing = tmp_path / "grocery", tmp_path / "clothing"
    record = {"protocol": "G1", "dataset": str(grocery)}
    assert _tuned_for(record, "G2", grocery) and not _tuned_for(record, "K1", clothing)
    old = {"protocol": "G1"}  # saved before the dataset was recorded
    assert _tuned_for(old, "G1", grocery) and not _tuned_for(old, "C1", clothing)


def test_reports_name_the_detector_they_ran_with():
    from types import SimpleNamespace

    from evaluation.report import describe_detector

    assert describe_detector(None).startswith("none")
    masked = SimpleNamespace(remover=object(), settings=SimpleNamespace(weights=Path("/shipped.pt")))
    assert describe_detector(masked) == "boxes from the background mask"
    seg = SimpleNamespace(settings=SimpleNamespace(weights=Path("/w/products.pt")), own_masks=True)
    assert describe_detector(seg) == "YOLO segmentation model products.pt"
    det = SimpleNamespace(settings=SimpleNamespace(weights=Path("d.pt")), own_masks=False)
    assert describe_detector(det) == "YOLO detection model d.pt"


def test_another_pipeline_indexes_the_gallery_anew(grocery, stages, tmp_path):
    """A changed setting of the analysis (here the colour clusters) must not rank against the
    gallery the last run indexed: each pipeline gets its own indexed gallery."""
    settings = Settings(data=tmp_path / "data")
    run_eval("G1", grocery, settings, stages)
    run_eval("G1", grocery, settings, stages)  # the same pipeline: the same gallery
    galleries = sorted(p.name for p in (tmp_path / "data" / "eval").glob("G1-*") if p.is_dir())
    assert len(galleries) == 1
    other = settings.model_copy(update={"colour": settings.colour.model_copy(update={"k": 3})})
    run_eval("G1", grocery, other, stages)
    assert len([p for p in (tmp_path / "data" / "eval").glob("G1-*") if p.is_dir()]) == 2


def test_the_gallery_holds_the_catalogue_regions_the_settings_index():
    assert gallery_regions(Settings()) == ("full", "crop", "masked", "centre70", "centre50")
    before = Settings(fusion={"index_regions": ("full", "crop")})  # as measured before 2026-11-22
    assert gallery_regions(before) == ("full", "crop", "masked")
