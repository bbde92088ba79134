"""`skulens embedder train / list / export` and `skulens reindex` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import jpeg_bytes, make_catalogue, models_missing, product_image

FAST = {"SKULENS_DETECTOR__BACKEND": "none", "SKULENS_BACKGROUND__ENABLED": "false", "SKULENS_OCR__ENABLED": "false"}


def skulens(*args: str, data: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "service.cli", "--data", str(data), *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **FAST})
    # rich wraps long lines: compare text with single spaces
    return subprocess.CompletedProcess(proc.args, proc.returncode, " ".join(proc.stdout.split()),
                                       " ".join(proc.stderr.split()))


def test_reindex_without_a_trained_embedder_says_what_to_run(tmp_path):
    proc = skulens("reindex", data=tmp_path / "d")
    assert proc.returncode == 1 and "run `skulens embedder train`" in proc.stderr
    proc = skulens("embedder", "export", "--embedder", str(tmp_path), data=tmp_path / "d")
    assert proc.returncode == 1 and "is not a trained embedder" in proc.stderr


def test_train_with_an_unknown_loss_says_which_exist_and_writes_nothing(tmp_path):
    proc = skulens("embedder", "train", "--loss", "triplet", data=tmp_path / "d")
    assert proc.returncode == 1 and "multi-similarity, proxy-anchor" in proc.stderr and "'triplet'" in proc.stderr
    proc = skulens("embedder", "train", "--holdout-by", "random", data=tmp_path / "d")
    assert proc.returncode == 1 and "held out by visits or order, got 'random'" in proc.stderr
    assert not (tmp_path / "d" / "embedders").exists()


@pytest.mark.model
@pytest.mark.slow
def test_train_reindex_list_search(tmp_path):
    if models_missing():
        pytest.skip(models_missing())
    data = tmp_path / "d"
    assert skulens("index", str(make_catalogue(tmp_path / "cat")), data=data).returncode == 0
    trained = skulens("embedder", "train", "--epochs", "1", "--skus-per-batch", "4", "--images-per-sku", "2",
                      "--holdout-by", "visits", data=data)  # one picture per SKU, so no visit to hold out
    assert trained.returncode == 0, trained.stderr
    assert "0 photos held out by visits" in trained.stdout
    assert "efficientnet-lite2-ft-v1-" in trained.stdout and (data / "embedders" / "v1" / "model.onnx").is_file()
    assert (data / "embedders" / "v1" / "model.int8.onnx").is_file()
    listed = skulens("embedder", "list", data=data)
    assert "efficientnet-lite2-ft-v1-" in listed.stdout and "made by: efficientnet-lite2-imagenet:1280" in listed.stdout
    assert "(visits)" in listed.stdout  # which held-out set its R@1 is on
    reindexed = skulens("reindex", "--benchmarks", str(tmp_path / "B.md"), data=data)
    assert reindexed.returncode == 0 and "re-embedded 4 images" in reindexed.stderr
    section = (tmp_path / "B.md").read_text()
    assert "## Speed: re-embedding a catalogue (reindex)" in section and "**4 images**" in section
    assert "made by: efficientnet-lite2-ft-v1-" in skulens("embedder", "list", data=data).stdout
    found = skulens("search", str(tmp_path / "cat" / "LIME.jpg"), "--json", data=data)
    assert found.returncode == 0 and '"sku": "LIME"' in found.stdout
    # quantised again on a grown catalogue: another int8 model, so the catalogue asks for a reindex, never mixes
    more = tmp_path / "more"
    more.mkdir()
    (more / "PLUM.jpg").write_bytes(jpeg_bytes(product_image((120, 40, 110), "PLUM", "disc")))
    assert skulens("index", str(more), data=data).returncode == 0
    exported = skulens("embedder", "export", "--int8", data=data)
    assert exported.returncode == 0 and "made by the int8 model this replaced" in exported.stdout
    refused = skulens("search", str(tmp_path / "cat" / "LIME.jpg"), data=data)
    assert refused.returncode == 1 and "skulens reindex" in refused.stderr
    assert skulens("reindex", data=data).returncode == 0
    found = skulens("search", str(tmp_path / "cat" / "LIME.jpg"), "--json", data=data)
    assert found.returncode == 0 and '"sku": "LIME"' in found.stdout
    # another input size: reindex makes its ONNX forms first, then searches follow the catalogue's size
    sized = skulens("reindex", "--input-size", "320", data=data)
    assert sized.returncode == 0, sized.stderr
    assert sized.stderr.count("exported ") == 2 and "-320px-int8-" in sized.stderr
    assert (data / "embedders" / "v1" / "model.320px.onnx").is_file()
    assert (data / "embedders" / "v1" / "model.320px.int8.onnx").is_file()
    assert "made by: efficientnet-lite2-ft-v1-" in (listed := skulens("embedder", "list", data=data).stdout)
    assert "-320px-int8-" in listed
    found = skulens("search", str(tmp_path / "cat" / "LIME.jpg"), "--json", data=data)
    assert found.returncode == 0 and '"sku": "LIME"' in found.stdout


@pytest.mark.model
@pytest.mark.slow
def test_an_embedder_trained_at_another_size_runs_at_it(tmp_path):
    """`embedder train --input-size 192`: the card, the held-out check and the ONNX forms are at 192 px,
    and `reindex` with no size re-embeds the catalogue at the size the embedder was trained at."""
    if models_missing():
        pytest.skip(models_missing())
    data = tmp_path / "d"
    assert skulens("index", str(make_catalogue(tmp_path / "cat")), data=data).returncode == 0
    trained = skulens("embedder", "train", "--epochs", "1", "--skus-per-batch", "4", "--images-per-sku", "2",
                      "--input-size", "192", data=data)
    assert trained.returncode == 0, trained.stderr
    folder = data / "embedders" / "v1"
    assert json.loads((folder / "card.json").read_text())["settings"]["image_size"] == 192
    assert (folder / "model.192px.onnx").is_file() and (folder / "model.192px.int8.onnx").is_file()
    assert not (folder / "model.onnx").exists()  # nothing at 260 px, which it does not run at
    reindexed = skulens("reindex", data=data)
    assert reindexed.returncode == 0, reindexed.stderr
    assert "exported" not in reindexed.stderr and "-192px-int8-" in reindexed.stderr
    assert "-192px-int8-" in skulens("embedder", "list", data=data).stdout
    found = skulens("search", str(tmp_path / "cat" / "LIME.jpg"), "--json", data=data)
    assert found.returncode == 0 and '"sku": "LIME"' in found.stdout
    # back to ImageNet's embedder: it runs at its own 260 px, not the catalogue's 192
    back = skulens("reindex", "--embedder", "imagenet", data=data)
    assert back.returncode == 0, back.stderr
    listed = skulens("embedder", "list", data=data).stdout
    assert "made by: efficientnet-lite2-imagenet" in listed and "px" not in listed.split("made by:")[1]
