"""The one error tree of skulens.

Every error a user can cause or meet derives from :class:`SkulensError`.  Adapters
translate foreign exceptions into these with ``raise ... from exc``; the edges (CLI,
service) map them to exit codes and HTTP status codes.
"""

from __future__ import annotations


class SkulensError(Exception):
    """Base of every error skulens raises on purpose."""


class InvalidImageError(SkulensError):
    """The bytes are not an image we can use (corrupt, empty, too small, too large...)."""


class ImageTooLargeError(InvalidImageError):
    """The image is over a configured limit (bytes or pixels)."""


class UnsupportedImageTypeError(InvalidImageError):
    """The bytes are not an image, or an image format that is not allowed."""


class InvalidInputError(SkulensError):
    """A request or a catalogue entry is malformed (bad weights, bad CSV row, ...)."""


class ModelNotFoundError(SkulensError):
    """A model file is missing from the model cache."""


class ChecksumError(SkulensError):
    """A model file does not match its recorded sha256."""


class MissingDependencyError(SkulensError):
    """An optional package or system program is not installed."""


class NotFoundError(SkulensError):
    """An SKU or an image that does not exist."""


class ConflictError(SkulensError):
    """The request contradicts the stored state (e.g. a catalogue built by another embedder)."""


class StorageError(SkulensError):
    """The data directory is unusable (locked, corrupt, unwritable)."""


class DataDirectoryBusyError(StorageError):
    """Another process writes to the data directory (one writer per data directory)."""
