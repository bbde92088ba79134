"""CNN embedding and visual tags from ImageNet EfficientNet-Lite2 (torch).

The pooled 1280-d features, L2-normalised, are the embedding; the classifier's softmax
gives ImageNet labels kept as visual tags.  Weights come from the model cache
(``skulens models fetch``), loaded lazily, once, behind a lock.
"""

from __future__ import annotations

import logging
import threading
from importlib import resources

import numpy as np

from pipeline.devices import resolve_device
from pipeline.models import model_path
from pipeline.settings import EmbedderSettings, ModelSettings
from pipeline.types import Tags, check_image

log = logging.getLogger(__name__)

INPUT_SIZE = 260
DIM = 1280


def imagenet_labels() -> list[str]:
    text = resources.files("features").joinpath("imagenet_labels.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def preprocess(images: list[np.ndarray]) -> np.ndarray:
    """Resize to 260x260 (aspect kept, padded with white) and scale to (x - 127) / 128, NCHW."""
    from PIL import Image

    batch = np.empty((len(images), 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, image in enumerate(images):
        h, w = check_image(image).shape[:2]
        scale = INPUT_SIZE / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR))
        canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), 255, np.uint8)
        top, left = (INPUT_SIZE - nh) // 2, (INPUT_SIZE - nw) // 2
        canvas[top:top + nh, left:left + nw] = resized
        batch[i] = (canvas.transpose(2, 0, 1).astype(np.float32) - 127.0) / 128.0
    return batch


class EfficientNetLite2Embedder:
    """``embed(images) -> ((N, 1280) float32 L2-normalised, [Tags])``."""

    name = "efficientnet-lite2-imagenet"
    dim = DIM

    def __init__(self, settings: EmbedderSettings, models: ModelSettings) -> None:
        self.settings = settings
        self.models = models
        self._lock = threading.Lock()
        self._net = None
        self._device = "cpu"
        self._labels: list[str] = []

    def warmup(self) -> None:
        self._load()

    def _load(self):
        with self._lock:
            if self._net is None:
                import torch
                from efficientnet_lite_pytorch import EfficientNet

                weights = model_path(self.settings.model, self.models.cache_dir)
                self._device = resolve_device(self.models.device)
                if self.settings.threads:
                    torch.set_num_threads(self.settings.threads)
                net = EfficientNet.from_name("efficientnet-lite2")
                state = torch.load(weights, map_location="cpu", weights_only=True)
                net.load_state_dict(state)
                self._net = net.eval().to(self._device)
                self._labels = imagenet_labels()
                log.info("loaded %s on %s", self.name, self._device)
        return self._net

    def embed(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[Tags]]:
        if not images:
            return np.zeros((0, self.dim), np.float32), []
        import torch

        net = self._load()
        vectors, tags = [], []
        bs = max(1, self.settings.batch_size)
        for start in range(0, len(images), bs):
            x = torch.from_numpy(preprocess(images[start:start + bs])).to(self._device)
            with torch.inference_mode():
                fmap = net.extract_features(x)
                pooled = fmap.mean(dim=(2, 3))
                probs = torch.softmax(net._fc(pooled), dim=1)
            pooled = torch.nn.functional.normalize(pooled, dim=1)
            vectors.append(pooled.float().cpu().numpy())
            tags.extend(self._top_tags(probs.float().cpu().numpy()))
        return np.ascontiguousarray(np.concatenate(vectors), dtype=np.float32), tags

    def _top_tags(self, probs: np.ndarray) -> list[Tags]:
        k = max(1, self.settings.tags_top_k)
        out = []
        for row in probs:
            top = np.argsort(-row)[:k]
            out.append(Tags(tuple(self._labels[i] for i in top), row[top]))
        return out
