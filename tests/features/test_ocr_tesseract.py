"""TesseractReader: the adapter with a faked pytesseract, then real Tesseract on rendered text."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytesseract
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.errors import MissingDependencyError, SkulensError
from core.protocols import TextReader
from core.settings import OcrSettings
from core.words import clean_word, normalise
from features import ocr_tesseract
from features.ocr_tesseract import TesseractReader, debian_package

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def render(text: str, size: int = 48, canvas: tuple[int, int] = (400, 150), angle: int = 0) -> np.ndarray:
    """Black text on a white RGB canvas, optionally turned ``angle`` degrees counter-clockwise."""
    image = Image.new("RGB", canvas, "white")
    ImageDraw.Draw(image).text((20, 40), text, font=ImageFont.truetype(FONT, size), fill="black")
    if angle:
        image = image.rotate(angle, expand=True, fillcolor="white")
    return np.asarray(image)


def words(reader: TesseractReader, image: np.ndarray) -> set[str]:
    return {normalise(t) for t in reader.read(image).tokens}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("ARLA,", "ARLA"), ("«Oatly»", "Oatly"), ("(1,5%)", "1,5"), ("--", ""), (" ko. ", "ko"), ("Mjölk!", "Mjölk")],
)
def test_clean_word(raw: str, expected: str) -> None:
    assert clean_word(raw) == expected


@pytest.mark.parametrize(("lang", "package"), [("swe", "tesseract-ocr-swe"), ("chi_sim", "tesseract-ocr-chi-sim")])
def test_debian_package(lang: str, package: str) -> None:
    assert debian_package(lang) == package


def test_constructor_is_cheap_and_validates() -> None:
    reader = TesseractReader(OcrSettings(languages="xyz"))  # nothing checked yet
    assert isinstance(reader, TextReader)
    with pytest.raises(ValueError, match="rotations"):
        TesseractReader(OcrSettings(), rotations=(45,))
    with pytest.raises(ValueError, match="rotations"):
        TesseractReader(OcrSettings(), rotations=())


def test_missing_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    reader = TesseractReader(OcrSettings())
    with pytest.raises(MissingDependencyError, match="apt-get install tesseract-ocr"):
        reader.read(render("OATLY"))
    with pytest.raises(MissingDependencyError):
        reader.warmup()


class FakeTesseract:
    """Stands in for ``pytesseract.image_to_data``: one canned word table per call."""

    def __init__(self, *tables: dict) -> None:
        self.tables = list(tables)
        self.sizes: list[tuple[int, int]] = []

    def __call__(self, image: Image.Image, **kwargs: object) -> dict:
        assert kwargs["config"] == "--psm 11"
        assert image.mode == "L"
        self.sizes.append(image.size)
        result = self.tables.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTesseract:
    fake = FakeTesseract()
    monkeypatch.setattr(ocr_tesseract.shutil, "which", lambda cmd: "/usr/bin/tesseract")
    monkeypatch.setattr(pytesseract, "get_languages", lambda config="": ["eng", "osd"])
    monkeypatch.setattr(pytesseract, "image_to_data", fake)
    return fake


def table(*rows: tuple[str, float]) -> dict:
    return {"text": [t for t, _ in rows], "conf": [c for _, c in rows]}


def test_filters_and_merges_words(fake: FakeTesseract) -> None:
    fake.tables = [
        table(("", -1), ("ARLA,", 91), ("ko", 40), ("x", 99), ("--", 95), ("Mjölk", 88.5), ("ARLA", 60)),
        table(("arla", 97), ("OATLY", 80)),
    ]
    out = TesseractReader(OcrSettings(), rotations=(0, 90)).read(render("ignored"))
    assert out.tokens == ("ARLA", "Mjölk", "OATLY")
    assert out.confidences.tolist() == pytest.approx([0.97, 0.885, 0.80])


def test_rescales_before_reading(fake: FakeTesseract) -> None:
    fake.tables = [table(), table(), table()]
    reader = TesseractReader(OcrSettings(max_side=1600, upscale_to=1000))
    reader.read(np.zeros((20, 40, 3), np.uint8))
    reader.read(np.zeros((3000, 1500, 3), np.uint8))
    reader.read(np.zeros((1200, 1000, 3), np.uint8))
    assert fake.sizes == [(1000, 500), (800, 1600), (1000, 1200)]


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (RuntimeError("Tesseract process timeout"), SkulensError, "longer than"),
        (pytesseract.TesseractError(1, "Error opening data file"), SkulensError, "Tesseract failed"),
        (pytesseract.TesseractError(1, "Failed loading language 'swe'"), MissingDependencyError, "language"),
        (pytesseract.TesseractNotFoundError(), MissingDependencyError, "not installed"),
    ],
)
def test_translates_errors(fake: FakeTesseract, error: Exception, kind: type, message: str) -> None:
    fake.tables = [error]
    with pytest.raises(kind, match=message) as info:
        TesseractReader(OcrSettings()).read(render("OATLY"))
    assert info.value.__cause__ is error


def test_rejects_non_canonical_images(fake: FakeTesseract) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        TesseractReader(OcrSettings()).read(np.zeros((10, 10), np.float32))


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs the tesseract binary (apt-get install tesseract-ocr)")
class TestRealTesseract:
    @pytest.mark.parametrize(("text", "expected"), [("ARLA MILK", {"arla", "milk"}), ("OATLY", {"oatly"})])
    def test_reads_rendered_words(self, text: str, expected: set[str]) -> None:
        out = TesseractReader(OcrSettings()).read(render(text))
        assert {normalise(t) for t in out.tokens} == expected
        assert np.all((out.confidences >= 0.5) & (out.confidences <= 1.0))

    def test_small_and_large_text(self) -> None:
        reader = TesseractReader(OcrSettings())
        small = np.asarray(Image.fromarray(render("OATLY", 48)).resize((100, 38)))
        assert "oatly" in words(reader, small)
        assert "oatly" in words(reader, render("OATLY", 400, (2600, 700)))

    def test_blank_and_tiny_images(self) -> None:
        reader = TesseractReader(OcrSettings())
        assert reader.read(np.full((150, 400, 3), 255, np.uint8)).tokens == ()
        tiny = reader.read(np.full((20, 20, 3), 255, np.uint8))
        assert len(tiny.tokens) == len(tiny.confidences)

    def test_settings_filter_words(self) -> None:
        image = render("ARLA MILK OATLY", 40)
        assert words(TesseractReader(OcrSettings(min_length=5)), image) == {"oatly"}
        assert words(TesseractReader(OcrSettings(min_confidence=1.01)), image) == set()

    def test_rotated_text_needs_rotations(self) -> None:
        image = render("OATLY", 60, angle=90)
        assert "oatly" not in words(TesseractReader(OcrSettings()), image)
        assert "oatly" in words(TesseractReader(OcrSettings(), rotations=(0, 90, 270)), image)

    @pytest.mark.parametrize("languages", ["xyz", "eng+xyz"])
    def test_missing_language(self, languages: str) -> None:
        reader = TesseractReader(OcrSettings(languages=languages))
        with pytest.raises(MissingDependencyError, match="tesseract-ocr-xyz"):
            reader.read(render("OATLY"))

    def test_timeout(self) -> None:
        reader = TesseractReader(OcrSettings(timeout_s=0.001))
        with pytest.raises(SkulensError, match="ocr.timeout_s"):
            reader.read(render("ARLA MILK", canvas=(600, 400)))


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract OCR is not installed")
def test_only_the_tesseract_subprocess_is_single_threaded(monkeypatch) -> None:
    monkeypatch.delenv("OMP_THREAD_LIMIT", raising=False)
    TesseractReader(OcrSettings()).warmup()
    assert "OMP_THREAD_LIMIT" not in os.environ  # torch, faiss and numpy keep their threads
    assert pytesseract.pytesseract.environ["OMP_THREAD_LIMIT"] == "1"
