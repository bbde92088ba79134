"""The one place that picks backends from settings."""

from __future__ import annotations

import logging
from pathlib import Path

from core.errors import ModelNotFoundError
from core.naming import TrainedEmbedder
from core.protocols import BackgroundRemover, Detector, TextReader
from core.settings import DetectorSettings, ModelSettings, Settings
from pipeline.analysis import Stages
from pipeline.embedder_files import load_trained
from pipeline.store import EMBEDDER_KEY, EMBEDDER_WEIGHTS_KEY, catalogue_meta

log = logging.getLogger(__name__)

SHIPPED_DETECTOR = Path(__file__).resolve().parent.parent / "detectors" / "weights" / "skulens-products.pt"
"""The product detector trained by ``skulens detector train`` and shipped with the project (its card
is ``MODEL_CARD.md`` beside it); without it, boxes come from the background mask."""


RECORDED = "recorded"


def chosen_embedder(settings: Settings) -> TrainedEmbedder | None:
    """The fine-tuned embedder the settings name, else the one the data directory's catalogue was
    last re-embedded with (``skulens reindex``), else None: ImageNet's."""
    if settings.embedder.weights is not None:
        return load_trained(settings.embedder.weights)
    data = Path(settings.data)
    recorded = catalogue_meta(settings, EMBEDDER_WEIGHTS_KEY)
    if not recorded:
        return None
    path = Path(recorded) if Path(recorded).is_absolute() else data / recorded
    try:
        return load_trained(path)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"the catalogue in {data} was embedded with the trained embedder {path}, which "
                                 "cannot be opened: restore it, or re-embed the catalogue with "
                                 f"`skulens reindex --embedder imagenet` ({exc})") from exc


IMAGENET = "imagenet"


def named_embedder(option: str | Path | None) -> TrainedEmbedder | None | str:
    """What an ``--embedder`` option names: a trained embedder's folder, ``imagenet`` (None), or
    nothing (:data:`RECORDED`: the data directory's catalogue decides)."""
    if option is None:
        return RECORDED
    return None if str(option) == IMAGENET else load_trained(Path(option))


def recorded_embedder(settings: Settings) -> str | None:
    """The name of the embedder that made the vectors of the data directory's catalogue (None without one)."""
    recorded = catalogue_meta(settings, EMBEDDER_KEY)
    return recorded.rsplit(":", 1)[0] if recorded else None


def embedder_input_size(settings: Settings, trained: TrainedEmbedder | None = None) -> int:
    """The input size ``trained`` (None: ImageNet's embedder) runs at: the setting's, else the
    catalogue's when this embedder made its vectors, else the size it was trained at."""
    from features.embed_efficientnet import resolve_input_size

    return resolve_input_size(settings.embedder, recorded_embedder(settings), trained)


def make_embedder(settings: Settings, trained: TrainedEmbedder | None):
    """The embedder stage: EfficientNet-Lite2 with ImageNet's or ``trained`` weights, in the settings' runtime."""
    from features.embed_efficientnet import EfficientNetLite2Embedder

    return EfficientNetLite2Embedder(settings.embedder, settings.models, trained, recorded=recorded_embedder(settings))


def make_remover(settings: Settings) -> BackgroundRemover:
    """The background-removal stage the settings name (IS-Net)."""
    from features.background_isnet import IsNetBackgroundRemover

    return IsNetBackgroundRemover(settings.background, settings.models)


def make_reader(settings: Settings) -> TextReader:
    """The OCR stage the settings name: PP-OCR (``rapidocr``) or Tesseract."""
    if settings.ocr.engine == "tesseract":
        from features.ocr_tesseract import TesseractReader

        return TesseractReader(settings.ocr)
    from features.ocr_rapid import RapidOcrReader

    return RapidOcrReader(settings.ocr, settings.models)


def hold_threads(models: ModelSettings) -> None:
    """Hold this process's torch and OpenCV thread pools to ``models.threads`` (0: leave the libraries'
    defaults); each onnxruntime session reads the setting itself. Several processes on one machine
    (workers, replicas) that each take every core only wait on one another."""
    if not models.threads:
        return
    import cv2
    import torch

    torch.set_num_threads(models.threads)
    cv2.setNumThreads(models.threads)
    log.info("models held to %d CPU threads", models.threads)


def build_stages(settings: Settings, trained: TrainedEmbedder | None | str = RECORDED,
                 remover: BackgroundRemover | None = None) -> Stages:
    """The stages the settings ask for.

    ``trained``: the fine-tuned embedder to use (None: ImageNet's); by default :func:`chosen_embedder`.
    ``remover``: the background remover to use (the detector's masks come from it too); by default
    :func:`make_remover`'s."""
    hold_threads(settings.models)
    embedder = make_embedder(settings, chosen_embedder(settings) if isinstance(trained, str) else trained)
    from detectors.mask import MaskDetector
    from detectors.yolo import YoloDetector
    from features.colour_kmeans import KMeansColourExtractor
    from features.keypoints_orb import OrbVerifier
    from features.keypoints_sift import SiftVerifier
    from features.perceptual_hash import PerceptualHasher

    if remover is None:
        remover = make_remover(settings)
    det = settings.detector
    if det.weights is None and SHIPPED_DETECTOR.is_file():  # ours, unless the user names other weights
        det = det.model_copy(update={"weights": SHIPPED_DETECTOR})
    backend = det.backend
    if backend == "auto":
        backend = "yolo" if det.weights else "mask"
    detector: Detector | None
    if backend == "yolo":
        detector = YoloDetector(det, settings.models)
    elif backend == "mask":
        detector = MaskDetector(remover, det, settings.background)
    else:
        detector = None
    log.info("detector: %s", backend)
    return Stages(
        embedder=embedder,
        colours=KMeansColourExtractor(settings.colour),
        detector=detector,
        remover=remover if settings.background.enabled else None,
        reader=make_reader(settings) if settings.ocr.enabled else None,
        hasher=PerceptualHasher(),
        verifier=OrbVerifier(settings.dedup.keypoints),
        geometry=SiftVerifier(settings.verify) if settings.verify.enabled else None,
        text=make_text_embedder(settings) if settings.words.enabled else None,
    )


def make_text_embedder(settings: Settings):
    """The text embedder words and pictures share a space in (WordLlama; its files load on first use)."""
    from features.text_wordllama import WordLlamaTextEmbedder

    return WordLlamaTextEmbedder(settings.models)


def imagenet_embedder(settings: Settings):
    """ImageNet's embedder at the settings' input size (else its own), whatever the catalogue's
    vectors were made by: what training clusters shop visits with."""
    from features.embed_efficientnet import EfficientNetLite2Embedder

    return EfficientNetLite2Embedder(settings.embedder, settings.models)


def make_yolo_detector(detector: DetectorSettings, models: ModelSettings):
    """A YOLO detector with exactly these detector settings (its ``weights`` set): the pipeline's
    defaults for the shipped weights are not applied."""
    from detectors.yolo import YoloDetector

    return YoloDetector(detector, models)
