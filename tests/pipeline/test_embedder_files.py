"""Trained-embedder folders: format and checksum checks, versions, ONNX sidecars (no model needed)."""

from __future__ import annotations

import json

import pytest

from pipeline.embedder_files import FORMAT, list_trained, load_trained, next_version, onnx_sidecar_ok, write_card
from pipeline.errors import ChecksumError, ConflictError, ModelNotFoundError


def fake_trained(folder, version: int = 1):
    """A folder with stand-in weights bytes: these tests check the files around the model, not a model."""
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"weights " + bytes([version]))
    return write_card(folder, {"version": version, "metrics": {}})


def test_a_written_card_loads_with_name_version_and_checksum(tmp_path):
    made = fake_trained(tmp_path / "embedders" / "v3", 3)
    loaded = load_trained(tmp_path / "embedders" / "v3" / "model.pt")  # the folder or its model.pt
    assert loaded.version == 3 and loaded.card["format"] == FORMAT
    assert loaded.name == made.name and loaded.name.startswith("efficientnet-lite2-ft-v3-")
    assert next_version(tmp_path) == 4 and next_version(tmp_path / "elsewhere") == 1


def test_a_newer_format_is_refused_with_what_to_do(tmp_path):
    fake_trained(tmp_path / "v1")
    card = json.loads((tmp_path / "v1" / "card.json").read_text())
    (tmp_path / "v1" / "card.json").write_text(json.dumps({**card, "format": FORMAT + 1}))
    with pytest.raises(ConflictError, match="upgrade skulens or train the embedder again"):
        load_trained(tmp_path / "v1")


def test_changed_weights_fail_the_checksum(tmp_path):
    fake_trained(tmp_path / "v1")
    (tmp_path / "v1" / "model.pt").write_bytes(b"something else")
    with pytest.raises(ChecksumError, match="fails its checksum"):
        load_trained(tmp_path / "v1")


def test_missing_files_say_which_command_makes_them(tmp_path):
    (tmp_path / "v1").mkdir()
    with pytest.raises(ModelNotFoundError, match="skulens embedder train"):
        load_trained(tmp_path / "v1")


def test_list_keeps_broken_folders_with_the_reason(tmp_path):
    fake_trained(tmp_path / "embedders" / "v1")
    (tmp_path / "embedders" / "v2").mkdir()
    good, bad = list_trained(tmp_path)
    assert good.version == 1 and bad[0].name == "v2" and "not a trained embedder" in bad[1]


def test_an_onnx_file_counts_only_for_the_weights_it_came_from(tmp_path):
    onnx = tmp_path / "model.onnx"
    assert not onnx_sidecar_ok(onnx, "abc")
    onnx.write_bytes(b"graph")
    onnx.with_suffix(".json").write_text(json.dumps({"source_sha256": "abc"}))
    assert onnx_sidecar_ok(onnx, "abc") and not onnx_sidecar_ok(onnx, "def")


def test_the_feature_cache_key_follows_the_embedder_name_not_its_runtime():
    from types import SimpleNamespace

    from pipeline.engine import pipeline_fingerprint
    from pipeline.settings import Settings

    def key(name: str, **embedder) -> str:
        settings = Settings()
        settings = settings.model_copy(update={"embedder": settings.embedder.model_copy(update=embedder)})
        return pipeline_fingerprint(settings, SimpleNamespace(embedder=SimpleNamespace(name=name), detector=None))

    base = key("efficientnet-lite2-imagenet")
    assert key("efficientnet-lite2-imagenet", runtime="onnx") == base  # float runtimes: the same vectors
    assert key("efficientnet-lite2-ft-v1-abc", weights="x") != base
    assert key("efficientnet-lite2-imagenet-int8", runtime="onnx-int8") != base
    assert key("efficientnet-lite2-imagenet", tags_top_k=3) != base
