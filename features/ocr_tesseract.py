"""Words printed on a product, read with Tesseract (through ``pytesseract``).

The adapter turns Tesseract's word table into :class:`~core.types.OcrText`.  Product
photos are small and packaging scatters words, so images are greyscaled, rescaled to
put letters near the size Tesseract likes, and read in sparse-text mode (``--psm 11``).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time

import numpy as np
import pytesseract
from PIL import Image

from core.errors import MissingDependencyError, SkulensError
from core.settings import OcrSettings
from core.types import OcrText, check_image
from core.words import clean_word

log = logging.getLogger(__name__)

INSTALL_HINT = "run `apt-get install tesseract-ocr tesseract-ocr-eng` (or `make setup`)"
ALLOWED_ROTATIONS = (0, 90, 180, 270)
_CONFIG = "--psm 11"


def debian_package(language: str) -> str:
    """The Debian package holding a Tesseract language (``chi_sim`` -> ``tesseract-ocr-chi-sim``)."""
    return "tesseract-ocr-" + language.lower().replace("_", "-")


def _single_threaded_subprocess() -> None:
    """Run Tesseract with one OpenMP thread: on small crops its threads cost more than they
    give (about 330 -> 140 ms here).  pytesseract hands its module-level ``environ`` to the
    subprocess, so this reaches Tesseract only; setting OMP_THREAD_LIMIT in our own process
    would throttle torch, faiss and numpy as well."""
    env = dict(os.environ)
    env["OMP_THREAD_LIMIT"] = "1"
    pytesseract.pytesseract.environ = env


class TesseractReader:
    """Reads words with Tesseract; implements :class:`~core.protocols.TextReader`.

    ``rotations`` lists the angles (degrees, counter-clockwise) the image is read at;
    cartons often print text sideways, so ``(0, 90, 270)`` reads those too, at the cost
    of one Tesseract run per angle.
    """

    def __init__(self, settings: OcrSettings, *, rotations: tuple[int, ...] = (0,)) -> None:
        bad = [r for r in rotations if r not in ALLOWED_ROTATIONS]
        if not rotations or bad:
            raise ValueError(f"expected rotations from {ALLOWED_ROTATIONS}, got {rotations}")
        if not settings.languages.strip():
            raise ValueError("expected at least one Tesseract language, got ''")
        self.settings = settings
        self.rotations = tuple(dict.fromkeys(rotations))
        self._lock = threading.Lock()
        self._ready = False

    def warmup(self) -> None:
        """Check the Tesseract binary and languages now instead of on the first read."""
        self._ensure_ready()

    def read(self, image: np.ndarray) -> OcrText:
        """Words printed in an RGB uint8 image, in reading order, each with its confidence."""
        check_image(image)
        self._ensure_ready()
        grey = self._prepare(image)
        deadline = time.monotonic() + self.settings.timeout_s
        best: dict[str, tuple[str, float]] = {}
        for angle in self.rotations:
            page = grey.rotate(angle, expand=True) if angle else grey
            for word, conf in self._read_words(page, deadline - time.monotonic()):
                key = word.casefold()
                if key not in best:
                    best[key] = (word, conf)
                elif conf > best[key][1]:
                    best[key] = (best[key][0], conf)
        if not best:
            return OcrText.empty()
        words, confs = zip(*best.values())
        return OcrText(tuple(words), np.asarray(confs, np.float32))

    # -- internals ---------------------------------------------------------------

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                self._check_install()
                _single_threaded_subprocess()
                self._ready = True

    def _check_install(self) -> None:
        cmd = pytesseract.pytesseract.tesseract_cmd
        if shutil.which(cmd) is None:
            raise MissingDependencyError(f"Tesseract OCR is not installed: {INSTALL_HINT}")
        try:
            installed = set(pytesseract.get_languages(config=""))
        except pytesseract.TesseractNotFoundError as exc:
            raise MissingDependencyError(f"Tesseract OCR is not installed: {INSTALL_HINT}") from exc
        missing = [lang for lang in self.settings.languages.split("+") if lang not in installed]
        if missing:
            packages = " ".join(debian_package(lang) for lang in missing)
            raise MissingDependencyError(
                f"Tesseract language data missing for {'+'.join(missing)}: "
                f"run `apt-get install {packages}` (installed: {', '.join(sorted(installed)) or 'none'})"
            )
        log.info("Tesseract %s ready with languages %s", cmd, self.settings.languages)

    def _prepare(self, image: np.ndarray) -> Image.Image:
        """Greyscale, scaled so the longest side is within [upscale_to, max_side]."""
        grey = Image.fromarray(image).convert("L")
        longest = max(grey.size)
        target = longest
        if longest > self.settings.max_side:
            target = self.settings.max_side
        elif longest < self.settings.upscale_to:
            target = min(self.settings.upscale_to, self.settings.max_side)
        if target == longest:
            return grey
        factor = target / longest
        size = (max(1, round(grey.width * factor)), max(1, round(grey.height * factor)))
        resample = Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC
        return grey.resize(size, resample)

    def _read_words(self, page: Image.Image, timeout_s: float) -> list[tuple[str, float]]:
        """(word, confidence) pairs Tesseract reads on one page, after filtering."""
        if timeout_s <= 0:
            raise SkulensError(self._timeout_message())
        try:
            data = pytesseract.image_to_data(
                page,
                lang=self.settings.languages,
                config=_CONFIG,
                output_type=pytesseract.Output.DICT,
                timeout=timeout_s,
            )
        except pytesseract.TesseractNotFoundError as exc:
            self._ready = False
            raise MissingDependencyError(f"Tesseract OCR is not installed: {INSTALL_HINT}") from exc
        except pytesseract.TesseractError as exc:
            if "language" in str(exc.message).lower():
                raise MissingDependencyError(f"Tesseract could not load its language data: {exc.message}") from exc
            raise SkulensError(f"Tesseract failed (exit {exc.status}): {exc.message}") from exc
        except RuntimeError as exc:  # pytesseract signals its timeout with a bare RuntimeError
            if "timeout" not in str(exc).lower():
                raise
            raise SkulensError(self._timeout_message()) from exc
        return self._filter(data["text"], data["conf"])

    def _filter(self, texts: list[str], confs: list[float | int | str]) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for text, raw_conf in zip(texts, confs):
            conf = float(raw_conf) / 100.0
            if conf < 0:  # page, block and line rows carry -1
                continue
            word = clean_word(str(text))
            if conf < self.settings.min_confidence or len(word) < self.settings.min_length:
                continue
            if any(ch.isalnum() for ch in word):
                out.append((word, min(conf, 1.0)))
        return out

    def _timeout_message(self) -> str:
        return (
            f"Tesseract took longer than {self.settings.timeout_s:g} s "
            f"(ocr.timeout_s) reading {len(self.rotations)} rotation(s)"
        )
