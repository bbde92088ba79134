"""Ultralytics YOLO detector: the product detector shipped in ``detectors/weights`` (trained by
``skulens detector train``; no registry we can reach ships YOLO weights), or any ultralytics model
file named by ``SKULENS_DETECTOR__WEIGHTS``.
The model loads lazily, once; ultralytics ``Results`` become our ``Box`` list here and
nowhere else.  Segmentation models also give each box its mask.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.devices import onnx_threads, resolve_device
from core.errors import ModelNotFoundError, SkulensError
from core.settings import DetectorSettings, ModelSettings
from core.types import Box, Mask, check_image

log = logging.getLogger(__name__)


def boxes_from_results(result, settings: DetectorSettings, width: int, height: int) -> list[Box]:
    """Adapter: one ultralytics ``Results`` -> our boxes, best first, clipped, with masks if any."""
    if result.boxes is None or len(result.boxes) == 0:
        return []
    xyxy = result.boxes.xyxy.cpu().numpy().astype(np.float64)
    conf = result.boxes.conf.cpu().numpy().astype(np.float64)
    cls = result.boxes.cls.cpu().numpy().astype(int)
    names = result.names or {}
    masks = None
    if getattr(result, "masks", None) is not None:
        masks = result.masks.data.cpu().numpy()  # (N, h, w) at the model's resolution
    min_area = settings.min_area_fraction * width * height
    out: list[Box] = []
    for i in np.argsort(-conf, kind="stable"):
        if len(out) >= settings.max_boxes:
            break
        x1, y1, x2, y2 = xyxy[i]
        if x2 <= x1 or y2 <= y1:
            continue
        box = Box(x1, y1, x2, y2, float(np.clip(conf[i], 0, 1)), str(names.get(cls[i], cls[i]))).clip(width, height)
        if box.area < min_area:
            continue
        box = box.expand(settings.expand, width, height)
        mask = None
        if masks is not None:
            mask = _box_mask(masks[i], box, width, height)
        out.append(Box(box.x1, box.y1, box.x2, box.y2, box.score, box.label, mask))
    return out


def _box_mask(full: np.ndarray, box: Box, width: int, height: int) -> Mask:
    """The part of a model-resolution mask under ``box``, at the box's size in the photo.

    Without ``retina_masks`` ultralytics leaves masks at its letterboxed input size (the photo
    scaled by one gain and centred between pads), so the box is mapped into that frame and only
    its part is resized: no full-photo upsampling per box, and no offset from the pads."""
    from PIL import Image

    mh, mw = full.shape
    gain = min(mh / height, mw / width)
    left = round((mw - max(round(width * gain), 1)) / 2 - 0.1)
    top = round((mh - max(round(height * gain), 1)) / 2 - 0.1)
    x1, y1, x2, y2 = box.as_int()
    if x2 <= x1 or y2 <= y1:
        return Mask(np.zeros((max(y2 - y1, 0), max(x2 - x1, 0)), np.float32))
    source = (left + x1 * gain, top + y1 * gain, left + x2 * gain, top + y2 * gain)
    part = Image.fromarray(np.clip(full, 0.0, 1.0).astype(np.float32), mode="F").resize(
        (x2 - x1, y2 - y1), Image.Resampling.BILINEAR, box=source)
    return Mask(np.clip(np.asarray(part, np.float32), 0.0, 1.0))


@contextmanager
def quiet_ultralytics():
    """Ultralytics logs its steps at INFO on its own handler (an export step by step, the ONNX backend
    it builds on the first prediction): warnings only."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


class YoloDetector:
    def __init__(self, settings: DetectorSettings, models: ModelSettings) -> None:
        if settings.weights is None:
            raise ModelNotFoundError("the YOLO detector needs a weights file: set SKULENS_DETECTOR__WEIGHTS")
        self.settings = settings
        self.models = models
        self._lock = threading.Lock()
        self._model = None
        self._device = "cpu"
        self._image_size = settings.image_size or 640
        self._runtime: tuple[str, Path | None, dict] | None = None  # ("torch" | "onnx", export, its sidecar)
        self._threads_held = False  # the onnxruntime session is remade once, with onnx_threads

    @property
    def name(self) -> str:
        """Which weights, down to the file's size and time: feature caches key on it, so new
        weights under the same path are not mistaken for the old ones."""
        path = Path(str(self.settings.weights)).expanduser()  # never None: see __init__
        try:
            st = path.stat()
        except OSError:
            return f"yolo:{path}"
        # onnxruntime's boxes differ from torch's by a pixel or so: features made by one are not the other's
        runtime = ":onnx" if self.runtime == "onnx" else ""
        return f"yolo:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}{runtime}"

    @property
    def runtime(self) -> str:
        """'torch' or 'onnx': which one runs the weights (the setting, resolved once)."""
        return self._resolve_runtime()[0]

    def _resolve_runtime(self) -> tuple[str, Path | None, dict]:
        if self._runtime is None:
            path = Path(str(self.settings.weights)).expanduser()
            wanted, found = self.settings.runtime, None
            if wanted != "torch" and path.suffix == ".pt" and path.is_file():
                from detectors.yolo_export import current_export

                found = current_export(path, self.models, self.settings.image_size)
                # on a GPU torch is the faster: 'auto' takes the export on a CPU only
                if found is not None and wanted == "auto" and resolve_device(self.models.device) != "cpu":
                    found = None
            if wanted == "onnx" and found is None and path.suffix == ".pt":
                raise ModelNotFoundError(f"no current ONNX export of {path.name} (detector.runtime=onnx): "
                                         "run `skulens models fetch`")
            self._runtime = ("onnx", found[0], found[1]) if found else ("torch", None, {})
        return self._runtime

    @property
    def own_masks(self) -> bool:
        """A segmentation model: its boxes come with masks (loads the weights to find out)."""
        return getattr(self._load(), "task", None) == "segment"

    def warmup(self) -> None:
        """Load the weights and detect once: ultralytics builds its predictor on the first call."""
        self.detect(np.full((64, 64, 3), 128, np.uint8))

    def _load(self):
        with self._lock:
            if self._model is None:
                path = Path(self.settings.weights).expanduser()
                if not path.is_file():
                    raise ModelNotFoundError(f"YOLO weights not found: {path}")
                from ultralytics import YOLO

                runtime, export, meta = self._resolve_runtime()
                try:
                    if export is not None:  # ultralytics runs it in onnxruntime
                        self._model = YOLO(str(export), task=meta.get("task"))
                    else:
                        self._model = YOLO(str(path))
                except Exception as exc:  # ultralytics raises many kinds on a bad file
                    raise SkulensError(f"cannot load YOLO weights {export or path}: {exc}") from exc
                self._device = resolve_device(self.models.device)
                trained = meta.get("input_size") or (getattr(self._model, "overrides", None) or {}).get("imgsz")
                self._image_size = self.settings.image_size or (trained if isinstance(trained, int) else 640)
                log.info("loaded YOLO %s on %s (%s)", path.name, self._device, runtime)
        return self._model

    def detect(self, image: np.ndarray) -> list[Box]:
        model = self._load()
        h, w = check_image(image).shape[:2]
        import torch

        threads = torch.get_num_threads()
        # ultralytics expects BGR numpy arrays
        with quiet_ultralytics():  # its first call builds the predictor, and says so
            results = model.predict(image[:, :, ::-1], imgsz=self._image_size, conf=self.settings.confidence,
                                    iou=self.settings.iou, device=self._device, verbose=False)
        if torch.get_num_threads() != threads:
            # its first call on CPU sets torch to one thread fewer than the cores, process-wide,
            # which would slow every other stage (and itself); give the process its threads back
            torch.set_num_threads(threads)
        if not self._threads_held:
            self._hold_threads(model)
        return boxes_from_results(results[0], self.settings, w, h)

    def _hold_threads(self, model) -> None:
        """Hold the ONNX export's session to :func:`onnx_threads`: ultralytics makes it (on the first call)
        with onnxruntime's default of one thread per core and takes no session options, so the session
        is made again with them (same file, same outputs). torch weights follow ``torch.set_num_threads``."""
        with self._lock:
            if self._threads_held:
                return
            self._threads_held = True
            backend = getattr(getattr(getattr(model, "predictor", None), "model", None), "backend", None)
            session = getattr(backend, "session", None)
            export = self._runtime[1] if self._runtime else None
            if backend is None or session is None or export is None or session.get_providers() != ["CPUExecutionProvider"]:
                return  # torch weights, or a GPU session (its provider options are ultralytics' own)
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = threads = onnx_threads(self.models.threads)
            backend.session = ort.InferenceSession(str(export), opts, providers=["CPUExecutionProvider"])
            log.info("YOLO's onnxruntime session held to %d threads", threads)
