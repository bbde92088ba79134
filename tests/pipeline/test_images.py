"""Tests for pipeline.images: every image is generated here, none is stored in the repo."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageFile

from core.errors import InvalidImageError
from core.settings import ImageLimits
from pipeline.images import (
    decode_image,
    encode_jpeg,
    load_image,
    read_image_bytes,
    resize_max_side,
    sha256_hex,
    size_text,
    to_pil,
)

LIMITS = ImageLimits()
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def noise(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR is patched to claim ``width`` x ``height`` (CRC fixed)."""
    data = bytearray(encode(Image.new("RGB", (16, 16), RED), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def png_with_garbage_pixels() -> bytes:
    """A PNG with a valid header whose IDAT payload is random bytes."""
    data = encode(Image.fromarray(noise()), "PNG")
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    garbage = np.random.default_rng(1).integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:start] + garbage + data[start + length :]


def error_of(data: bytes, limits: ImageLimits = LIMITS, name: str = "photo.jpg") -> str:
    with pytest.raises(InvalidImageError) as info:
        decode_image(data, limits, name)
    message = str(info.value)
    assert message.startswith(f"{name}: "), message
    return message


# --- normal images -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_decode_exactly(fmt: str) -> None:
    image = noise()
    params = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(encode(Image.fromarray(image), fmt, **params), LIMITS)
    assert decoded.dtype == np.uint8 and decoded.shape == (24, 32, 3)
    np.testing.assert_array_equal(decoded, image)


def test_jpeg_decodes_to_rgb_uint8() -> None:
    image = np.zeros((24, 32, 3), np.uint8)
    image[:, :16] = RED
    image[:, 16:] = BLUE
    decoded = decode_image(encode(Image.fromarray(image), "JPEG", quality=95), LIMITS)
    assert decoded.dtype == np.uint8 and decoded.shape == (24, 32, 3)
    assert np.abs(decoded[12, 4].astype(int) - RED).max() < 20
    assert np.abs(decoded[12, 28].astype(int) - BLUE).max() < 20


def test_load_image_reads_paths_and_bytes(tmp_path: Path) -> None:
    image = noise()
    data = encode(Image.fromarray(image), "PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        np.testing.assert_array_equal(load_image(source, LIMITS), image)
    assert read_image_bytes(path, LIMITS) == data


# --- bad inputs --------------------------------------------------------------------

JPEG = encode(Image.fromarray(noise(128, 128)), "JPEG")


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        pytest.param(b"", "empty image data", id="empty"),
        pytest.param(np.random.default_rng(2).bytes(4096), "not an image (unrecognised format)", id="random-bytes"),
        pytest.param(b"sku,title\nA1,red shoe\n" * 20, "not an image (unrecognised format)", id="text"),
        pytest.param(JPEG[: len(JPEG) // 2], "corrupt or truncated image data", id="truncated-jpeg"),
        pytest.param(JPEG[:200], "corrupt or truncated image header", id="truncated-jpeg-header"),
        pytest.param(png_with_garbage_pixels(), "corrupt or truncated image data", id="garbage-png-body"),
        pytest.param(encode(Image.new("RGB", (1, 1)), "PNG"), "image too small: 1x1 px, need at least 16", id="1x1"),
        pytest.param(encode(Image.new("RGB", (200, 15)), "PNG"), "image too small: 200x15 px", id="thin"),
        pytest.param(encode(Image.new("RGB", (20, 20)), "PPM"), "unsupported image format PPM", id="ppm"),
    ],
)
def test_bad_bytes_are_refused(data: bytes, phrase: str) -> None:
    assert phrase in error_of(data)


@pytest.mark.filterwarnings("error")  # Pillow's bomb warning must become our error, never a warning
@pytest.mark.parametrize(
    ("width", "height", "max_pixels", "phrase"),
    [
        pytest.param(30000, 30000, LIMITS.max_pixels, "900 megapixels, limit 60 megapixels", id="pillow-error"),
        pytest.param(10000, 10000, LIMITS.max_pixels, "100 megapixels, limit 60 megapixels", id="pillow-warning"),
        pytest.param(9000, 9000, LIMITS.max_pixels, "9000x9000 px is 81 megapixels, limit 60", id="over-default-limit"),
        pytest.param(3000, 2000, 1_000_000, "3000x2000 px is 6 megapixels, limit 1 megapixel", id="custom-limit"),
    ],
)
def test_decompression_bombs_are_refused_from_the_header(
    width: int, height: int, max_pixels: int, phrase: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)  # proves no pixel is decoded
    data = png_claiming(width, height)
    assert len(data) < 200
    message = error_of(data, LIMITS.model_copy(update={"max_pixels": max_pixels}), "bomb.png")
    assert "too large" in message and phrase in message
    assert message.count("limit") == 1 and "DOS" not in message  # one limit, ours, not Pillow's text


def test_oversized_bytes_are_refused_before_opening() -> None:
    data = encode(Image.fromarray(noise()), "PNG")
    message = error_of(data, LIMITS.model_copy(update={"max_bytes": 100}))
    assert f"{size_text(len(data))}, limit 100 bytes" in message


@pytest.mark.parametrize(("n", "text"), [(900, "900 bytes"), (31457280, "30 MiB"), (1536, "1.5 KiB"),
                                          (5 * 2**30, "5 GiB")])
def test_sizes_read_as_people_write_them(n: int, text: str) -> None:
    assert size_text(n) == text


def test_big_photos_are_shrunk_to_max_side_as_they_decode() -> None:
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[:, :2000] = (200, 30, 30)  # left half red, right half black
    data = encode(Image.fromarray(big), "JPEG")
    small = decode_image(data, LIMITS.model_copy(update={"max_side": 1000}), "phone.jpg")
    assert small.shape == (750, 1000, 3)
    assert abs(int(small[375, 200, 0]) - 200) < 12 and small[375, 800].max() < 12  # the same picture
    assert decode_image(data, LIMITS.model_copy(update={"max_side": 0})).shape == (3000, 4000, 3)
    assert decode_image(encode(Image.fromarray(big[:500, :600]), "PNG"), LIMITS).shape == (500, 600, 3)


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        pytest.param(lambda p: p / "missing.jpg", "no such file", id="missing"),
        pytest.param(lambda p: p, "is a directory", id="directory"),
        pytest.param(lambda p: (p / "empty.jpg", (p / "empty.jpg").write_bytes(b""))[0], "empty file", id="0-byte"),
        pytest.param(lambda p: (p / "big.jpg", (p / "big.jpg").write_bytes(b"x" * 101))[0], "101 bytes", id="big"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, make, phrase: str) -> None:
    path = make(tmp_path)
    limits = LIMITS.model_copy(update={"max_bytes": 100})
    for call in (read_image_bytes, load_image):
        with pytest.raises(InvalidImageError, match=phrase):
            call(path, limits)


def test_file_size_is_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(b"x" * 1000)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened")

    monkeypatch.setattr(Path, "open", never)
    with pytest.raises(InvalidImageError, match="file too large: .* 1000 bytes, limit 10 bytes"):
        read_image_bytes(path, LIMITS.model_copy(update={"max_bytes": 10}))


def test_errors_from_paths_are_named_by_file_name(tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    path.write_bytes(encode(Image.new("RGB", (1, 1)), "PNG"))
    with pytest.raises(InvalidImageError, match=r"^tiny\.png: image too small"):
        load_image(path, LIMITS)
    with pytest.raises(InvalidImageError, match=r"^upload: image too small"):
        load_image(path.read_bytes(), LIMITS, name="upload")


def test_errors_chain_the_foreign_exception() -> None:
    with pytest.raises(InvalidImageError) as info:
        decode_image(b"not an image at all", LIMITS)
    assert isinstance(info.value.__cause__, OSError)


# --- odd but valid inputs ----------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb() -> None:
    decoded = decode_image(encode(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG", quality=95), LIMITS)
    assert decoded.shape == (20, 20, 3)
    assert np.abs(decoded[10, 10].astype(int) - RED).max() < 20


@pytest.mark.parametrize(("fmt", "dtype"), [("PNG", "<u2"), ("TIFF", "<u2"), ("TIFF", ">u2"), ("TIFF", "<i4")])
@pytest.mark.parametrize(("value", "expected"), [(0, 0), (257, 1), (32768, 128), (65535, 255)])
def test_16_bit_greyscale_is_scaled_not_clipped(fmt: str, dtype: str, value: int, expected: int) -> None:
    grey = Image.fromarray(np.full((20, 20), value, dtype=dtype))
    assert grey.mode in ("I;16", "I;16B", "I")
    decoded = decode_image(encode(grey, fmt), LIMITS)
    assert decoded.shape == (20, 20, 3)
    assert (decoded == expected).all()


@pytest.mark.parametrize(("value", "expected"), [(0.0, 0), (0.5, 128), (1.0, 255), (200.0, 200), (1000.0, 4)])
def test_float_greyscale_is_scaled(value: float, expected: int) -> None:
    grey = Image.fromarray(np.full((20, 20), value, dtype=np.float32))
    assert grey.mode == "F"
    assert (decode_image(encode(grey, "TIFF"), LIMITS) == expected).all()


def palette_image() -> Image.Image:
    im = Image.new("P", (20, 20), 1)
    im.putpalette([0, 0, 0, 10, 200, 30, 250, 5, 90] + [0] * 759)
    im.paste(2, (0, 0, 10, 20))
    return im


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_image_without_transparency(fmt: str) -> None:
    decoded = decode_image(encode(palette_image(), fmt), LIMITS)
    assert tuple(decoded[5, 5]) == (250, 5, 90) and tuple(decoded[5, 15]) == (10, 200, 30)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_image_with_transparency_goes_white(fmt: str) -> None:
    decoded = decode_image(encode(palette_image(), fmt, transparency=2), LIMITS)
    assert tuple(decoded[5, 5]) == WHITE and tuple(decoded[5, 15]) == (10, 200, 30)


def test_rgba_is_composited_onto_white() -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)
    rgba[:, 10:] = (0, 0, 0, 0)
    rgba[0, 0] = (0, 0, 0, 128)
    decoded = decode_image(encode(Image.fromarray(rgba), "PNG"), LIMITS)
    assert tuple(decoded[10, 5]) == RED
    assert tuple(decoded[10, 15]) == WHITE
    assert np.abs(decoded[0, 0].astype(int) - 127).max() <= 1


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_la_is_composited_onto_white(fmt: str) -> None:
    la = np.zeros((20, 20, 2), np.uint8)
    la[:, :10] = (50, 255)
    la[:, 10:] = (0, 0)
    params = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(encode(Image.fromarray(la), fmt, **params), LIMITS)
    assert tuple(decoded[10, 5]) == (50, 50, 50) and tuple(decoded[10, 15]) == WHITE


def test_greyscale_and_bilevel_become_rgb() -> None:
    for im in (Image.new("L", (20, 20), 77), Image.new("1", (20, 20), 1)):
        decoded = decode_image(encode(im, "PNG"), LIMITS)
        assert decoded.shape == (20, 20, 3) and len(np.unique(decoded)) == 1


@pytest.mark.parametrize(("orientation", "top", "bottom"), [(6, RED, BLUE), (8, BLUE, RED)])
def test_exif_orientation_is_applied(orientation: int, top: tuple, bottom: tuple) -> None:
    image = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: left half red, right half blue
    image[:, :20] = RED
    image[:, 20:] = BLUE
    im = Image.fromarray(image)
    exif = im.getexif()
    exif[0x0112] = orientation
    decoded = decode_image(encode(im, "JPEG", quality=95, exif=exif), LIMITS)
    assert decoded.shape == (40, 20, 3)
    assert np.abs(decoded[5, 10].astype(int) - top).max() < 20
    assert np.abs(decoded[35, 10].astype(int) - bottom).max() < 20


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_image_gives_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (20, 20), colour) for colour in (RED, GREEN, BLUE)]
    params = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    decoded = decode_image(data, LIMITS)
    assert decoded.shape == (20, 20, 3) and (decoded == RED).all()


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(16, 64), st.integers(16, 64), st.just(3))))
def test_png_round_trip_is_exact(image: np.ndarray) -> None:
    np.testing.assert_array_equal(decode_image(encode(Image.fromarray(image), "PNG"), LIMITS), image)


def test_decoding_emits_no_warnings_and_sets_no_globals() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_image(encode(Image.fromarray(noise()), "PNG"), LIMITS)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --- helpers -----------------------------------------------------------------------


def test_sha256_hex() -> None:
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_to_pil_and_encode_jpeg_round_trip() -> None:
    image = np.full((20, 30, 3), (200, 100, 50), np.uint8)
    assert to_pil(image).mode == "RGB" and to_pil(image).size == (30, 20)
    decoded = decode_image(encode_jpeg(image, quality=95), LIMITS)
    assert decoded.shape == image.shape and np.abs(decoded.astype(int) - image).max() < 8
    with pytest.raises(ValueError):
        to_pil(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        encode_jpeg(image, quality=0)


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"),
    [((100, 200, 3), 50, (25, 50, 3)), ((200, 100, 3), 50, (50, 25, 3)), ((300, 7, 3), 30, (30, 1, 3))],
)
def test_resize_max_side_keeps_aspect(shape: tuple, max_side: int, expected: tuple) -> None:
    resized = resize_max_side(np.zeros(shape, np.uint8), max_side)
    assert resized.shape == expected and resized.dtype == np.uint8


def test_resize_max_side_never_upscales() -> None:
    image = noise()
    assert resize_max_side(image, 32) is image
    assert resize_max_side(image, 1000) is image
    with pytest.raises(ValueError):
        resize_max_side(image, 0)


def test_garbage_after_ultralytics_import_installs_nothing(monkeypatch) -> None:
    """ultralytics patches PIL's Image.open to pip-install pi-heif on unknown files; with
    pi-heif a dependency, a bad upload must stay a plain InvalidImageError."""
    import subprocess

    import ultralytics  # noqa: F401  (applies its PIL patch)

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"something tried to run a command: {args[:1]}")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(subprocess, "check_output", no_subprocess)
    with pytest.raises(InvalidImageError, match="not an image"):
        decode_image(b"definitely not an image, just some bytes", ImageLimits(), "upload.jpg")
