"""Trained-embedder folders: format and checksum checks, versions, ONNX sidecars (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ChecksumError, ConflictError, ModelNotFoundError
from features.embed_onnx import onnx_sidecar_ok
from pipeline.embedder_files import FORMAT, list_trained, load_trained, next_version, write_card


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
    assert not onnx_sidecar_ok(onnx, "abc", 380)  # a sidecar from before sizes were recorded: 260 px
    onnx.with_suffix(".json").write_text(json.dumps({"source_sha256": "abc", "input_size": 380}))
    assert onnx_sidecar_ok(onnx, "abc", 380) and not onnx_sidecar_ok(onnx, "abc")


def test_an_embedder_name_carries_its_input_size_through_int8():
    from core.naming import float_model_name, input_size_of, int8_name, sized_name

    assert sized_name("efficientnet-lite2-imagenet", 260) == "efficientnet-lite2-imagenet"  # names made before sizes
    name = sized_name("efficientnet-lite2-ft-v1-0123abcd", 380)
    assert name == "efficientnet-lite2-ft-v1-0123abcd-380px" and input_size_of(name) == 380
    quantised = int8_name(name, Path("/nowhere/model.380px.int8.onnx"))
    assert input_size_of(quantised) == 380 and float_model_name(quantised) == name
    assert input_size_of(quantised + ":1280") == 380 and input_size_of(name + ":1280") == 380
    assert input_size_of("efficientnet-lite2-imagenet-int8-0123abcd") == 260 and input_size_of(None) is None


def test_the_input_size_is_the_setting_else_the_catalogues_else_the_training_size(tmp_path):
    from core.naming import embedder_name, trained_input_size, unsized_name
    from core.settings import EmbedderSettings
    from features.embed_efficientnet import resolve_input_size

    default = EmbedderSettings()
    assert resolve_input_size(default, None) == 260
    assert resolve_input_size(default, "efficientnet-lite2-imagenet-320px") == 320
    assert resolve_input_size(EmbedderSettings(input_size=380), "efficientnet-lite2-imagenet-320px") == 380
    # trained at 320 px: it runs at 320 px on a fresh catalogue and when it re-embeds another embedder's
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "model.pt").write_bytes(b"weights")
    big = write_card(tmp_path / "v2", {"version": 2, "metrics": {}, "settings": {"image_size": 320}})
    older = fake_trained(tmp_path / "v1")  # a card from before the option: 260 px
    assert big.input_size == 320 and older.input_size == 260
    assert resolve_input_size(default, None, big) == 320
    assert resolve_input_size(default, "efficientnet-lite2-imagenet:1280", big) == 320
    assert resolve_input_size(default, f"{older.name}-380px-int8-0123abcd:1280", big) == 320
    # ... but a catalogue it embedded at another size keeps that size, and the setting still wins
    assert resolve_input_size(default, f"{big.name}-int8-0123abcd:1280", big) == 260
    assert resolve_input_size(default, f"{big.name}-380px:1280", big) == 380
    assert resolve_input_size(EmbedderSettings(input_size=400), f"{big.name}-380px:1280", big) == 400
    # ImageNet's runs at 260 px when it re-embeds a catalogue another embedder made at 320 px
    assert resolve_input_size(default, f"{older.name}-320px:1280") == 260
    assert unsized_name(f"{big.name}-380px-int8-0123abcd:1280") == big.name == unsized_name(big.name)
    assert embedder_name(None) == "efficientnet-lite2-imagenet" and embedder_name(big) == big.name
    assert trained_input_size(None) == 260 and trained_input_size(big) == 320


def test_the_feature_cache_key_follows_the_embedder_name_not_its_runtime():
    from types import SimpleNamespace

    from core.settings import Settings
    from pipeline.engine import pipeline_fingerprint

    def key(name: str, **embedder) -> str:
        settings = Settings()
        settings = settings.model_copy(update={"embedder": settings.embedder.model_copy(update=embedder)})
        return pipeline_fingerprint(settings, SimpleNamespace(embedder=SimpleNamespace(name=name), detector=None, geometry=None))

    base = key("efficientnet-lite2-imagenet")
    assert key("efficientnet-lite2-imagenet", runtime="onnx") == base  # float runtimes: the same vectors
    assert key("efficientnet-lite2-ft-v1-abc", weights="x") != base
    assert key("efficientnet-lite2-imagenet-int8", runtime="onnx-int8") != base
    assert key("efficientnet-lite2-imagenet", tags_top_k=3) != base
    # the input size is in the name (the setting's None and an explicit 260 make the same vectors)
    assert key("efficientnet-lite2-imagenet", input_size=260) == base
