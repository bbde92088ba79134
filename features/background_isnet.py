"""Background removal with IS-Net (DIS) through rembg's ``dis_custom`` session (onnxruntime).

The ONNX file comes from the model cache (``skulens models fetch``); the session is built
lazily, once, behind a lock.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict

import numpy as np

from core.devices import onnx_threads
from core.errors import MissingDependencyError
from core.models import model_path
from core.settings import BackgroundSettings, ModelSettings
from core.types import Mask, check_image

log = logging.getLogger(__name__)


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device.startswith("cuda"):
        log.warning("onnxruntime has no CUDA provider (install onnxruntime-gpu); IS-Net runs on the CPU")
    return ["CPUExecutionProvider"]


def _session_options(threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return opts


def _session_class():
    """rembg's DIS session, reading the model from our cache instead of rembg's home folder."""
    try:
        from rembg.sessions.dis_custom import DisCustomSession
    except ImportError as exc:  # pragma: no cover - rembg is a dependency
        raise MissingDependencyError("rembg is not installed: `pip install rembg`") from exc

    class CachedIsNetSession(DisCustomSession):
        @classmethod
        def download_models(cls, *args, **kwargs):
            return kwargs["model_path"]

    return CachedIsNetSession


class IsNetBackgroundRemover:
    """``remove(image) -> Mask``: foreground probability per pixel.

    The last few masks are remembered by a digest of the pixels, so one image that passes
    through two stages (the mask detector, then background removal of the same region)
    costs one model run.
    """

    CACHE_SIZE = 4

    def __init__(self, settings: BackgroundSettings, models: ModelSettings) -> None:
        self.settings = settings
        self.models = models
        self._lock = threading.Lock()
        self._session = None
        self._recent: OrderedDict[bytes, Mask] = OrderedDict()

    def warmup(self) -> None:
        """Load the network and mask an image once (onnxruntime plans its kernels on the first run)."""
        self.remove(np.full((64, 64, 3), 128, np.uint8))

    def _load(self):
        with self._lock:
            if self._session is None:
                path = model_path(self.settings.model, self.models.cache_dir)
                import torch

                threads = torch.get_num_threads()
                session_class = _session_class()
                if torch.get_num_threads() != threads:  # importing rembg sets torch to every core, process-wide
                    torch.set_num_threads(threads)
                self._session = session_class(
                    "dis_custom", _session_options(onnx_threads(self.models.threads)), model_path=str(path), providers=_providers(self.models.device)
                )
                log.info("loaded %s from %s", self.settings.model, path)
        return self._session

    def remove(self, image: np.ndarray) -> Mask:
        from PIL import Image

        check_image(image)
        key = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest() + bytes(str(image.shape), "ascii")
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                return self._recent[key]
        session = self._load()
        alpha = session.predict(Image.fromarray(image))[0]
        mask = Mask(np.asarray(alpha, dtype=np.float32) / 255.0)
        with self._lock:
            self._recent[key] = mask
            while len(self._recent) > self.CACHE_SIZE:
                self._recent.popitem(last=False)
        return mask
