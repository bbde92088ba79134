"""Embedder naming rules: what a catalogue records beside its vectors.

An embedder's *name* (``<base>-ft-v<N>-<sha8>`` for a fine-tuned one, ``efficientnet-lite2-imagenet``
for ImageNet's) gains ``-<S>px`` when it runs at another input size than 260 px and ``-int8-<sha8>``
for an int8 model; vectors of two names are never mixed.  :class:`TrainedEmbedder` is a verified
trained-embedder folder (``pipeline.embedder_files`` opens and writes them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

BASE_NAME = "efficientnet-lite2-imagenet"
NATIVE_INPUT_SIZE = 260
"""The input side EfficientNet-Lite2 was trained at (ImageNet's weights and ``embedder train``)."""
_SIZE = re.compile(r"-(\d+)px(?=-int8|:\d+$|$)")  # in a name, or a catalogue's '<name>:<dim>'


@dataclass(frozen=True)
class TrainedEmbedder:
    """A verified trained-embedder folder."""

    folder: Path
    card: dict

    @property
    def weights(self) -> Path:
        return self.folder / "model.pt"

    @property
    def version(self) -> int:
        return int(self.card["version"])

    @property
    def name(self) -> str:
        return f"{self.card['base'].removesuffix('-imagenet')}-ft-v{self.version}-{self.card['sha256'][:8]}"

    @property
    def input_size(self) -> int:
        """The side in pixels it was trained at (``embedder train --input-size``; 260 on older cards)."""
        return int(self.card.get("settings", {}).get("image_size", NATIVE_INPUT_SIZE))

    def onnx_path(self, int8: bool = False, size: int = NATIVE_INPUT_SIZE) -> Path:
        return self.folder / f"model{size_suffix(size)}{'.int8' if int8 else ''}.onnx"


def embedder_name(trained: TrainedEmbedder | None) -> str:
    """A trained embedder's name, or ImageNet's for None (at its own input size)."""
    return trained.name if trained is not None else BASE_NAME


def trained_input_size(trained: TrainedEmbedder | None) -> int:
    """The side in pixels an embedder was trained at: a trained one's card, 260 for ImageNet's (None)."""
    return trained.input_size if trained is not None else NATIVE_INPUT_SIZE


def size_suffix(size: int) -> str:
    """What an ONNX file's name adds for an input size ('' at the native 260 px)."""
    return "" if size == NATIVE_INPUT_SIZE else f".{size}px"


def sized_name(name: str, size: int) -> str:
    """An embedder's name at an input size: vectors made at another size are another embedder's."""
    return name if size == NATIVE_INPUT_SIZE else f"{name}-{size}px"


def input_size_of(name: str | None) -> int | None:
    """The input size an embedder name (or a catalogue's ``<name>:<dim>`` record) stands for; None
    without one."""
    if not name:
        return None
    found = _SIZE.search(name)
    return int(found.group(1)) if found else NATIVE_INPUT_SIZE


def unsized_name(name: str) -> str:
    """The embedder behind a name or a catalogue's ``<name>:<dim>`` record, whatever its input size
    and precision: ``efficientnet-lite2-ft-v1-77804db3-320px-int8-d7ab09f9:1280`` ->
    ``efficientnet-lite2-ft-v1-77804db3``."""
    return _SIZE.sub("", float_model_name(name.rsplit(":", 1)[0]))


INT8 = "-int8"  # what an int8 model adds to its float model's name (then its own checksum, when recorded)


def int8_name(float_name: str, onnx: Path) -> str:
    """The name of the vectors an int8 model makes: its float model's name, ``-int8``, and the first 8
    digits of the int8 file's checksum, so a model quantised again (another calibration) is another
    embedder and a catalogue made by the old one asks for `skulens reindex` instead of mixing."""
    try:
        sha = json.loads(onnx.with_suffix(".json").read_text()).get("sha256")
    except (OSError, json.JSONDecodeError):
        sha = None  # no export yet (loading it says how to make one), or one made before checksums
    return f"{float_name}{INT8}-{sha[:8]}" if sha else f"{float_name}{INT8}"


def float_model_name(name: str) -> str:
    """The float model's name behind an embedder name (itself for a float model's)."""
    return name.split(INT8)[0]
