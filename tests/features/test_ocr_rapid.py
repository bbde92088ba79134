"""RapidOcrReader: PP-OCR on a rendered label (no data set needed), then on real shelf photos."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.errors import ModelNotFoundError
from core.protocols import TextReader
from core.settings import ModelSettings, OcrSettings
from core.words import normalise
from features.ocr_rapid import RapidOcrReader, _largest_lines, _line_words
from tests.conftest import DATASETS, FONT, models_missing

needs_models = pytest.mark.skipif(models_missing() is not None, reason=str(models_missing()))


def label(lines: list[tuple[str, int]], canvas: tuple[int, int] = (360, 360), colour: str = "#c8102e") -> np.ndarray:
    """A carton-like label: coloured ground, white text lines of the given sizes."""
    image = Image.new("RGB", canvas, colour)
    draw = ImageDraw.Draw(image)
    y = 30
    for text, size in lines:
        draw.text((24, y), text, font=ImageFont.truetype(FONT, size), fill="white")
        y += int(size * 1.5)
    return np.asarray(image)


@pytest.fixture(scope="module")
def reader() -> RapidOcrReader:
    reason = models_missing()
    if reason:
        pytest.skip(reason)
    r = RapidOcrReader(OcrSettings(), ModelSettings())
    r.warmup()
    return r


def words(reader: RapidOcrReader, image: np.ndarray) -> set[str]:
    return {normalise(t) for t in reader.read(image).tokens}


def test_constructor_is_cheap_and_errors_name_the_fetch(tmp_path) -> None:
    reader = RapidOcrReader(OcrSettings(), ModelSettings(cache_dir=tmp_path))  # nothing loaded yet
    assert isinstance(reader, TextReader)
    with pytest.raises(ModelNotFoundError, match="skulens models fetch"):
        reader.read(np.zeros((64, 64, 3), np.uint8))


def test_largest_lines_keeps_the_tallest_in_reading_order() -> None:
    def quad(y: float, h: float) -> list[list[float]]:
        return [[0, y], [100, y], [100, y + h], [0, y + h]]

    boxes = np.asarray([quad(0, 10), quad(20, 40), quad(70, 5), quad(80, 30)], np.float32)
    kept = _largest_lines(boxes, 2)
    assert kept[:, 0, 1].tolist() == [20, 80]
    assert len(_largest_lines(boxes, 10)) == 4


class Info:
    def __init__(self, words: list[list[str]], confs: list[float]) -> None:
        self.words, self.confs = words, confs


def test_each_word_keeps_its_own_confidence() -> None:
    info = Info([list("ARLA"), list("KO")], [0.9, 0.9, 0.9, 0.9, 0.5, 0.3])
    assert _line_words("ARLA KO", 0.7, info) == [("ARLA", pytest.approx(0.9)), ("KO", pytest.approx(0.4))]
    # the recogniser's own word groups may cut a word: the words are the line's, split at spaces
    info = Info([list("HAVRED"), list("RYCK")], [0.9] * 6 + [0.7] * 4)
    assert _line_words("HAVREDRYCK", 0.8, info) == [("HAVREDRYCK", pytest.approx(0.82))]
    # without per-character probabilities, the words take the line's confidence
    assert _line_words("ARLA KO", 0.7, None) == [("ARLA", 0.7), ("KO", 0.7)]


@needs_models
def test_reads_a_rendered_label(reader: RapidOcrReader) -> None:
    got = reader.read(label([("OATLY", 64), ("HAVREDRYCK", 36), ("1 liter", 24)]))
    assert {"oatly", "havredryck"} <= {normalise(t) for t in got.tokens}
    assert len(got.tokens) == len(got.confidences) and np.all(got.confidences >= 0.5)


@needs_models
def test_blank_and_tiny_images_read_nothing(reader: RapidOcrReader) -> None:
    assert len(reader.read(np.full((200, 300, 3), 240, np.uint8))) == 0
    assert len(reader.read(np.full((20, 20, 3), 0, np.uint8))) == 0


@needs_models
def test_line_cap_keeps_the_big_print(reader: RapidOcrReader) -> None:
    image = label([("ARLA", 72)] + [(f"fine print {i}", 14) for i in range(8)], canvas=(360, 420))
    capped = RapidOcrReader(OcrSettings(max_lines=1), ModelSettings())
    assert words(capped, image) == {"arla"}


@needs_models
def test_logs_stay_quiet(reader: RapidOcrReader, caplog: pytest.LogCaptureFixture, capfd) -> None:
    with caplog.at_level(logging.INFO):
        RapidOcrReader(OcrSettings(), ModelSettings()).warmup()
    assert not [r for r in caplog.records if r.name == "RapidOCR"]
    assert "RapidOCR" not in capfd.readouterr().err


SHELF = [  # grocery train photos and words printed large on them
    ("Tropicana-Golden-Grapefruit", "tropicana"),
    ("Arla-Standard-Milk", "sommarmjolk"),
    ("Alpro-Fresh-Soy-Milk", "alpro"),
    ("Valio-Vanilla-Yoghurt", "vanilj"),
]


@pytest.mark.dataset
@needs_models
@pytest.mark.parametrize(("product", "word"), SHELF)
def test_reads_brands_on_shelf_photos(reader: RapidOcrReader, product: str, word: str) -> None:
    root = DATASETS / "grocery"
    if not (root / "manifest.csv").exists():
        pytest.skip(f"no grocery data set in {root}")
    with open(root / "manifest.csv") as fh:
        photos = [r["path"] for r in csv.DictReader(fh) if r["split"] == "train" and r["class_name"] == product]
    read = [words(reader, np.asarray(Image.open(root / p).convert("RGB"))) for p in photos[:6]]
    # shelf photos are hard (angles, glare, hands): the brand must be read on most, not all
    assert sum(word in w for w in read) >= 3, read
