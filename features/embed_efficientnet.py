"""CNN embedding and visual tags from EfficientNet-Lite2 (torch or onnxruntime).

The pooled 1280-d features, L2-normalised, are the embedding; the classifier's softmax
gives ImageNet labels kept as visual tags.  The weights are ImageNet's (from the model
cache, ``skulens models fetch``) or a shop's fine-tuned ones (``skulens embedder train``).
The network runs in torch, or in onnxruntime from its exported ONNX form (``skulens
embedder export``); it loads lazily, once, behind a lock.
"""

from __future__ import annotations

import logging
import threading
from importlib import resources
from pathlib import Path

import numpy as np

from core.devices import onnx_threads, resolve_device
from core.errors import ModelNotFoundError
from core.models import MODELS, model_path
from core.naming import (
    NATIVE_INPUT_SIZE,
    TrainedEmbedder,
    embedder_name,
    float_model_name,
    input_size_of,
    int8_name,
    size_suffix,
    sized_name,
    trained_input_size,
    unsized_name,
)
from core.settings import EmbedderSettings, ModelSettings
from core.types import Tags, check_image
from features.embed_onnx import onnx_sidecar_ok, open_session

log = logging.getLogger(__name__)

INPUT_SIZE = NATIVE_INPUT_SIZE
DIM = 1280


def imagenet_labels() -> list[str]:
    text = resources.files("features").joinpath("imagenet_labels.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The image scaled to fit ``size`` x ``size`` (aspect kept), centred on white, uint8 HxWx3."""
    from PIL import Image

    h, w = check_image(image).shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR))
    canvas = np.full((size, size, 3), 255, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top:top + nh, left:left + nw] = resized
    return canvas


def preprocess(images: list[np.ndarray], size: int = INPUT_SIZE) -> np.ndarray:
    """Letterbox to ``size`` x ``size`` on white and scale to (x - 127) / 128, float32 NCHW."""
    batch = np.empty((len(images), 3, size, size), np.float32)
    for i, image in enumerate(images):
        batch[i] = (letterbox(image, size).transpose(2, 0, 1).astype(np.float32) - 127.0) / 128.0
    return batch


def load_network(trained: TrainedEmbedder | None, models: ModelSettings):
    """The torch EfficientNet-Lite2 with ImageNet or fine-tuned weights, in eval mode on the CPU."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    weights = trained.weights if trained is not None else model_path("efficientnet-lite2", models.cache_dir)
    net = EfficientNet.from_name("efficientnet-lite2")
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


def embedding_module(net):
    """A module ``x -> (L2-normalised pooled features, class probabilities)``: what is run and exported."""
    import torch

    class Embedding(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.net = inner

        def forward(self, x):
            pooled = self.net.extract_features(x).mean(dim=(2, 3))
            probs = torch.softmax(self.net._fc(pooled), dim=1)
            return torch.nn.functional.normalize(pooled, dim=1), probs

    return Embedding(net).eval()


def source_sha256(trained: TrainedEmbedder | None) -> str:
    """Checksum of the torch weights an embedder starts from (what its ONNX form records)."""
    return trained.card["sha256"] if trained is not None else MODELS["efficientnet-lite2"].sha256


def onnx_file(trained: TrainedEmbedder | None, models: ModelSettings, int8: bool = False,
              size: int = INPUT_SIZE) -> Path:
    """Where the ONNX form of an embedder for ``size``-pixel inputs lives: beside the trained
    weights, or in the model cache."""
    if trained is not None:
        return trained.onnx_path(int8, size)
    stem = Path(MODELS["efficientnet-lite2"].filename).stem
    return Path(models.cache_dir) / f"{stem}{size_suffix(size)}{'.int8' if int8 else ''}.onnx"


def resolve_input_size(settings: EmbedderSettings, recorded: str | None,
                       trained: TrainedEmbedder | None = None) -> int:
    """The input size the settings name; else the one the catalogue's vectors were made at, when this
    embedder (``trained``, None: ImageNet's) made them; else the size it was trained at (260 px for
    ImageNet's), as a re-embedding with another embedder starts afresh."""
    if settings.input_size:
        return settings.input_size
    if recorded and unsized_name(recorded) == embedder_name(trained):
        return input_size_of(recorded) or trained_input_size(trained)
    return trained_input_size(trained)


class EfficientNetLite2Embedder:
    """``embed(images) -> ((N, 1280) float32 L2-normalised, [Tags])``.

    Each image is letterboxed to ``input_size`` pixels: the setting, else the size the catalogue's
    vectors were made at by this embedder, else the size it was trained at (260 for ImageNet's).
    The network pools globally, so it runs at any size; a larger one shows it more detail of a whole
    shelf photo (FixRes: it was trained on crops that show objects larger than whole photos do), at
    a cost that grows with the pixels."""

    dim = DIM

    def __init__(self, settings: EmbedderSettings, models: ModelSettings,
                 trained: TrainedEmbedder | None = None, recorded: str | None = None,
                 variant: tuple[str, Path] | None = None) -> None:
        """``recorded``: the embedder name the catalogue's vectors carry, which the 'auto' runtime follows.
        ``variant``: (suffix, file), another ONNX form of this network that no runtime offers, run
        with onnxruntime under the name ``<embedder>-<suffix>`` (``embedder bench`` compares them)."""
        self.settings = settings
        self.models = models
        self.trained = trained
        self.input_size = resolve_input_size(settings, recorded, trained)
        base = sized_name(embedder_name(trained), self.input_size)
        self._variant = variant[1] if variant is not None else None
        if variant is not None:
            self.runtime, self.name = "onnx", f"{base}-{variant[0]}"
        else:
            self.runtime = self._choose_runtime(base, recorded)
            # int8 vectors differ from float ones enough to keep them apart in a catalogue
            self.name = int8_name(base, self._onnx(True)) if self.runtime == "onnx-int8" else base
        self._lock = threading.Lock()
        self._run = None
        self._labels: list[str] = []

    def _choose_runtime(self, base: str, recorded: str | None) -> str:
        """'auto': a catalogue made by this embedder keeps its kind of vectors (int8 or float), so
        they are never mixed; otherwise the fastest export on a CPU (int8, then float onnx), else torch."""
        wanted = self.settings.runtime
        if wanted != "auto":
            return wanted
        def exported(int8: bool) -> bool:
            return onnx_sidecar_ok(self._onnx(int8), source_sha256(self.trained), self.input_size)
        float_runtime = "onnx" if exported(False) else "torch"
        if recorded is not None and float_model_name(recorded) == base:
            # int8 vectors: a missing export then says how to make it; another int8 model's, to reindex
            return float_runtime if recorded == base else "onnx-int8"
        if exported(True) and resolve_device(self.models.device) == "cpu":
            return "onnx-int8"
        return float_runtime

    def _onnx(self, int8: bool) -> Path:
        return onnx_file(self.trained, self.models, int8, self.input_size)

    def warmup(self) -> None:
        """Load the network and embed a query's worth of views once (runtimes plan on the first run)."""
        self.embed([np.full((64, 64, 3), 128, np.uint8)] * 4)

    def _load(self):
        with self._lock:
            if self._run is None:
                self._labels = imagenet_labels()
                self._run = self._load_onnx() if self.runtime.startswith("onnx") else self._load_torch()
                log.info("loaded %s (%s)", self.name, self.runtime)
        return self._run

    def _load_torch(self):
        import torch

        device = resolve_device(self.models.device)
        if threads := self.settings.threads or self.models.threads:
            torch.set_num_threads(threads)
        module = embedding_module(load_network(self.trained, self.models)).to(device)

        def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                vec, probs = module(torch.from_numpy(batch).to(device))
            return vec.float().cpu().numpy(), probs.float().cpu().numpy()

        return run

    def _load_onnx(self):
        int8 = self.runtime == "onnx-int8"
        path = self._variant or self._onnx(int8)
        if self._variant is None and not onnx_sidecar_ok(path, source_sha256(self.trained), self.input_size):
            command = ["skulens embedder export", "--embedder",
                       str(self.trained.folder) if self.trained is not None else "imagenet"] + (
                ["--input-size", str(self.input_size)] if self.input_size != trained_input_size(self.trained) else []) + (
                ["--int8"] if int8 else [])
            raise ModelNotFoundError(f"no ONNX form of {self.name} at {path}: run `{' '.join(command)}`")
        session = open_session(path, resolve_device(self.models.device),
                               onnx_threads(self.settings.threads or self.models.threads))

        def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            vec, probs = session.run(None, {"image": batch})
            return vec, probs

        return run

    def embed(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[Tags]]:
        if not images:
            return np.zeros((0, self.dim), np.float32), []
        run = self._load()
        vectors, tags = [], []
        bs = max(1, self.settings.batch_size)
        for start in range(0, len(images), bs):
            vec, probs = run(preprocess(images[start:start + bs], self.input_size))
            norms = np.linalg.norm(vec, axis=1, keepdims=True)
            vectors.append(vec / np.maximum(norms, 1e-12))  # int8 outputs are not exactly unit length
            tags.extend(self._top_tags(probs))
        return np.ascontiguousarray(np.concatenate(vectors), dtype=np.float32), tags

    def _top_tags(self, probs: np.ndarray) -> list[Tags]:
        k = max(1, self.settings.tags_top_k)
        out = []
        for row in probs:
            top = np.argsort(-row)[:k]
            out.append(Tags(tuple(self._labels[i] for i in top), row[top]))
        return out
