"""Words printed on a product, read with PP-OCR (through ``rapidocr``, run by onnxruntime).

PP-OCR finds text lines with a detection network and reads each line with a recognition
network; it is built for scene text (curved, small, coloured, at an angle), which is what a
carton on a shelf shows.  The model files ship inside the ``rapidocr`` wheel and are copied
into the model cache, with their checksums, by ``skulens models fetch``.

Tuned for product photos (``ocr.*`` settings, measured in BENCHMARKS.md):

- text is detected on the object's region scaled to ``det_side`` pixels (its longest side),
  and each line is cut from the region at its own resolution for recognition;
- only the ``max_lines`` largest lines are recognised (brand and product names are printed
  large; prices and small print are many and say little), in one batch;
- the angle classifier (which turns upside-down lines) runs only with ``angle_classifier``;
- every word keeps its own confidence: the mean of its characters' probabilities.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import numpy as np

from core.devices import onnx_threads
from core.errors import MissingDependencyError
from core.models import model_path
from core.settings import ModelSettings, OcrSettings
from core.types import OcrText, check_image
from core.words import clean_word

log = logging.getLogger(__name__)

DETECTION_MODEL = "ppocr-det"
RECOGNITION_MODEL = "ppocr-rec"
ANGLE_MODEL = "ppocr-cls"
_WORD = re.compile(r"\S+")
_REC_WIDTH = 96
"""Narrowest line image the recogniser pads to (rapidocr pads to 320 by default: 3x the work on
short brand words)."""


def _tame_rapidocr_logging() -> None:
    """rapidocr logs every model load at INFO through a handler of its own: route it through ours."""
    rl = logging.getLogger("RapidOCR")
    for handler in list(rl.handlers):
        rl.removeHandler(handler)
    rl.propagate = True
    rl.setLevel(logging.ERROR)


class RapidOcrReader:
    """Reads words with PP-OCR; implements :class:`~core.protocols.TextReader`."""

    def __init__(self, settings: OcrSettings, models: ModelSettings) -> None:
        if settings.det_side < 32:
            raise ValueError(f"expected ocr.det_side >= 32, got {settings.det_side}")
        self.settings = settings
        self.models = models
        self._engine = None
        self._lock = threading.Lock()

    def warmup(self) -> None:
        """Load both networks and run them once (onnxruntime plans its kernels on the first run)."""
        image = np.full((96, 192, 3), 255, np.uint8)
        image[40:56, 30:160] = 0
        self.read(image)

    def read(self, image: np.ndarray) -> OcrText:
        """Words printed in an RGB uint8 image, largest lines first, each with its confidence."""
        check_image(image)
        engine = self._load()
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        scale = self.settings.det_side / max(bgr.shape[:2])
        small = _resize(bgr, scale) if abs(scale - 1.0) > 0.02 else bgr
        det = engine(small, use_det=True, use_cls=False, use_rec=False)
        boxes = getattr(det, "boxes", None)
        if boxes is None or not len(boxes):
            return OcrText.empty()
        boxes = np.asarray(boxes, np.float32)
        # cut lines from the region itself when it is sharper than what detection saw
        source, boxes = (bgr, boxes / scale) if scale < 1.0 else (small, boxes)
        boxes = _largest_lines(boxes, self.settings.max_lines)
        lines = engine.crop_text_regions(source, boxes)
        if self.settings.angle_classifier:
            lines, _ = engine.cls_and_rotate(lines)
        rec = engine.recognize_txt(lines)
        return self._words(rec)

    # -- internals ---------------------------------------------------------------

    def _load(self):
        if self._engine is not None:
            return self._engine
        with self._lock:
            if self._engine is None:
                self._engine = self._build()
        return self._engine

    def _build(self):
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise MissingDependencyError("the rapidocr package is not installed: `pip install rapidocr` "
                                         "(or `make setup`)") from exc
        _tame_rapidocr_logging()
        cache = Path(self.models.cache_dir)
        params = {
            "Global.log_level": "error",
            "Global.return_word_box": True,  # per-character probabilities, for per-word confidences
            "Global.text_score": 0.0,  # words are filtered by their own confidence below
            "Det.model_path": str(model_path(DETECTION_MODEL, cache)),
            "Det.limit_type": "max",
            "Det.limit_side_len": self.settings.det_side,
            "Rec.model_path": str(model_path(RECOGNITION_MODEL, cache)),
            "Rec.rec_img_shape": [3, 48, _REC_WIDTH],
            "Rec.rec_batch_num": self.settings.max_lines,
        }
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = onnx_threads(self.models.threads)
        if self.settings.angle_classifier:
            params["Cls.model_path"] = str(model_path(ANGLE_MODEL, cache))
        engine = RapidOCR(params=params)
        _tame_rapidocr_logging()
        log.info("PP-OCR ready (text detection at %d px, up to %d lines)", self.settings.det_side,
                 self.settings.max_lines)
        return engine

    def _words(self, rec) -> OcrText:
        best: dict[str, tuple[str, float]] = {}
        texts = rec.txts or ()
        infos = rec.word_results or ((),) * len(texts)
        for text, line_conf, info in zip(texts, rec.scores or (), infos):
            for word, conf in _line_words(text, float(line_conf), info):
                word = clean_word(word)
                if conf < self.settings.min_confidence or len(word) < self.settings.min_length:
                    continue
                if not any(ch.isalnum() for ch in word):
                    continue
                key = word.casefold()
                if key not in best or conf > best[key][1]:
                    best[key] = (best.get(key, (word, 0.0))[0], conf)
        if not best:
            return OcrText.empty()
        words, confs = zip(*best.values())
        return OcrText(tuple(words), np.clip(np.asarray(confs, np.float32), 0.0, 1.0))


def _line_words(text: str, line_conf: float, info) -> list[tuple[str, float]]:
    """The words of one recognised line (split at spaces), each with the mean probability of its
    characters; the line's confidence when the recogniser gave none per character."""
    words = _WORD.findall(text)
    chars = [ch for group in (getattr(info, "words", None) or ()) for ch in group]
    confs = list(getattr(info, "confs", None) or ())
    if not chars or len(chars) != len(confs) or "".join(chars) != "".join(words):
        return [(w, line_conf) for w in words]
    out, start = [], 0
    for word in words:
        out.append((word, float(np.mean(confs[start:start + len(word)]))))
        start += len(word)
    return out


def _largest_lines(boxes: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of the quadrilateral line boxes ``(n, 4, 2)``, the tallest text first
    (a line's height is the shorter side of its box), kept in reading order."""
    if len(boxes) <= limit:
        return boxes
    sides = np.linalg.norm(boxes - np.roll(boxes, -1, axis=1), axis=2)  # (n, 4)
    height = np.minimum(sides[:, 0] + sides[:, 2], sides[:, 1] + sides[:, 3]) / 2
    keep = np.sort(np.argsort(-height, kind="stable")[:limit])
    return boxes[keep]


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
