"""The one boundary where untrusted image bytes become the canonical image form.

Everything downstream speaks RGB ``uint8`` arrays of shape ``(H, W, 3)``.  Here bytes
are checked (size, format, pixel count from the header *before* any pixel is decoded,
smallest side), decoded, turned upright by their EXIF orientation and converted to
RGB: alpha is composited onto white (the catalogue convention), 16-bit and float
greyscale is rescaled rather than clipped.  Every failure is an
:class:`~core.errors.InvalidImageError` whose message starts with the image's name.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageTypeError
from core.settings import ImageLimits
from core.types import check_image

# What Pillow raises on malformed data while parsing or decoding.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_WHITE = (255, 255, 255, 255)


def size_text(n: int) -> str:
    """Bytes as a person reads them: ``30 MiB``, ``512 KiB``, ``900 bytes``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) or value >= 100 else f"{value:.1f} {unit}"
    return f"{n} bytes"


def pixels_text(n: int) -> str:
    """A pixel count in megapixels: ``144.0 megapixels``."""
    value = f"{n / 1e6:.1f}" if n % 1_000_000 else str(n // 1_000_000)
    return f"{value} megapixel{'' if value == '1' else 's'}"


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif"}
"""File name endings read as images when a folder is walked."""


def read_image_bytes(path: str | Path, limits: ImageLimits) -> bytes:
    """Read an image file, refusing missing, non-regular, empty and oversized files."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise InvalidImageError(f"no such file: {path}") from exc
    except OSError as exc:
        raise InvalidImageError(f"cannot read file: {path}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise InvalidImageError(f"is a directory, not an image file: {path}")
    if not stat.S_ISREG(info.st_mode):
        raise InvalidImageError(f"not a regular file: {path}")
    if info.st_size == 0:
        raise InvalidImageError(f"empty file: {path}")
    if info.st_size > limits.max_bytes:
        raise ImageTooLargeError(f"file too large: {path}: {size_text(info.st_size)}, "
                                 f"limit {size_text(limits.max_bytes)}")
    try:
        with path.open("rb") as handle:
            data = handle.read(limits.max_bytes + 1)  # the file may have grown since stat
    except OSError as exc:
        raise InvalidImageError(f"cannot read file: {path}: {exc.strerror or exc}") from exc
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"file too large: {path}: more than {size_text(limits.max_bytes)}")
    if not data:
        raise InvalidImageError(f"empty file: {path}")
    return data


def decode_image(data: bytes, limits: ImageLimits, name: str = "image") -> np.ndarray:
    """Validate and decode image bytes into RGB ``uint8`` ``(H, W, 3)``, at most ``limits.max_side``
    on the longer side.

    Animated images (GIF, WEBP, APNG) give their first frame.
    """
    if not data:
        raise InvalidImageError(f"{name}: empty image data")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"{name}: image too large: {size_text(len(data))}, limit {size_text(limits.max_bytes)}")
    with warnings.catch_warnings():
        # Pillow's own bomb check warns (or raises) inside open/load: make it an error here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with _open(data, name) as im:
                _check_header(im, limits, name)
                if limits.max_side:
                    # a JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers max_side: far faster
                    im.draft("RGB", _target(im.size, limits.max_side))
                rgb = _to_rgb(_load_upright(im, name), name)
        except _BOMB_ERRORS as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{pixels_text(int(found.group(1)))}, " if found else ""
            raise ImageTooLargeError(f"{name}: image too large: {size}limit {pixels_text(limits.max_pixels)}") from exc
    if limits.max_side and max(rgb.size) > limits.max_side:
        rgb = rgb.resize(_target(rgb.size, limits.max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return check_image(np.array(rgb, dtype=np.uint8))


def _target(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` shrunk to ``max_side`` on its longer side (never grown)."""
    width, height = size
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def load_image(source: bytes | str | Path, limits: ImageLimits, name: str | None = None) -> np.ndarray:
    """Decode bytes, or read and decode a file (named by its file name in errors)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source), limits, name or "image")
    if isinstance(source, (str, Path)):
        path = Path(source)
        return decode_image(read_image_bytes(path, limits), limits, name or path.name)
    raise TypeError(f"expected image bytes or a path, got {type(source).__name__}")


def to_pil(image: np.ndarray) -> Image.Image:
    """A Pillow RGB image of a canonical image array."""
    return Image.fromarray(np.ascontiguousarray(check_image(image)))


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink so the longer side is at most ``max_side``, keeping the aspect; never upscales."""
    check_image(image)
    if max_side < 1:
        raise ValueError(f"expected max_side >= 1, got {max_side}")
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.array(to_pil(image).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), dtype=np.uint8)


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a canonical image array."""
    if not 1 <= quality <= 100:
        raise ValueError(f"expected a JPEG quality in [1, 100], got {quality}")
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@functools.cache
def _register_heif() -> None:
    """HEIC/HEIF (iPhone photos) through pi-heif, a dependency.  Registering it here also
    keeps ultralytics' patched ``Image.open`` from trying to install it at run time."""
    from pi_heif import register_heif_opener

    register_heif_opener()


def _open(data: bytes, name: str) -> Image.Image:
    """Open lazily: parses the header only, decodes no pixels."""
    _register_heif()
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise UnsupportedImageTypeError(f"{name}: not an image (unrecognised format)") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidImageError(f"{name}: corrupt or truncated image header: {exc}") from exc


def _check_header(im: Image.Image, limits: ImageLimits, name: str) -> None:
    """Refuse by format, pixel count and smallest side, all read from the header."""
    if im.format not in limits.formats:
        allowed = ", ".join(limits.formats)
        raise UnsupportedImageTypeError(f"{name}: unsupported image format {im.format}, expected one of {allowed}")
    width, height = im.size
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"{name}: image too large: {width}x{height} px is {pixels_text(width * height)}, "
            f"limit {pixels_text(limits.max_pixels)}"
        )
    if min(width, height) < limits.min_side:
        raise InvalidImageError(
            f"{name}: image too small: {width}x{height} px, need at least {limits.min_side} px on each side"
        )


def _load_upright(im: Image.Image, name: str) -> Image.Image:
    """Decode the pixels (first frame) and apply the EXIF orientation."""
    try:
        im.load()
        return ImageOps.exif_transpose(im)
    except _DECODE_ERRORS as exc:
        raise InvalidImageError(f"{name}: corrupt or truncated image data: {exc}") from exc


def _to_rgb(im: Image.Image, name: str) -> Image.Image:
    """Convert any decoded mode to RGB (alpha onto white, high bit depths rescaled)."""
    if im.mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_grey_to_uint8(im)).convert("RGB")
    if im.mode == "P" and "transparency" not in im.info:
        return im.convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    try:
        return im.convert("RGB")  # RGB, L, 1, CMYK, YCbCr, RGBX, ...
    except ValueError as exc:
        raise InvalidImageError(f"{name}: unsupported colour mode {im.mode}") from exc


def _grey_to_uint8(im: Image.Image) -> np.ndarray:
    """Rescale 16-bit, 32-bit or float greyscale to 8 bits, keeping tones (never clipping).

    Integer images are read as 16-bit (0..65535, so 32768 becomes 128); float images as
    0..1, 0..255 or 0..65535, whichever holds every value.  Values outside those ranges
    are stretched from their minimum to their maximum.
    """
    values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    scales = (1.0, 255.0, 65535.0) if im.mode == "F" else (65535.0,)
    full = next((s for s in scales if low >= 0.0 and high <= s), None)
    if full is None:
        full, values = max(high - low, 1e-12), values - low
    return np.clip(np.rint(values * (255.0 / full)), 0, 255).astype(np.uint8)
