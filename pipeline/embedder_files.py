"""Embedder model files: the fine-tuned models a shop trains, and the ONNX forms of any embedder.

A trained embedder is a folder in the data directory, ``embedders/v<N>/``, holding
``model.pt`` (the network's weights), ``card.json`` (format, version, base model, training
settings and data, metrics per epoch, sha256 of ``model.pt``) and, once exported,
``model.onnx`` / ``model.int8.onnx``.  An embedder's *name* (``<base>-ft-v<N>-<sha8>``, or
``efficientnet-lite2-imagenet``, then ``-<S>px`` when it runs at another input size than 260 px)
is what the catalogue records beside its vectors: vectors of two names are never mixed.  Nothing
here imports torch.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ChecksumError, ConflictError, ModelNotFoundError, NotFoundError
from pipeline.models import sha256_file

FORMAT = 1
"""Card format this skulens reads and writes; a card of a newer format is refused."""
BASE_NAME = "efficientnet-lite2-imagenet"
FOLDER = "embedders"
NATIVE_INPUT_SIZE = 260
"""The input side EfficientNet-Lite2 was trained at (ImageNet's weights and ``embedder train``)."""
_SIZE = re.compile(r"-(\d+)px(?=-int8|:\d+$|$)")  # in a name, or a catalogue's '<name>:<dim>'
_VERSION_DIR = re.compile(r"^v(\d+)$")


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


def _stored_images(data: Path) -> list:
    """The stored images of the catalogue in the data directory ``data`` ([] without one)."""
    from pipeline.store import CatalogStore

    db = Path(data) / "catalog.sqlite3"
    if not db.is_file():
        return []
    store = CatalogStore(db)
    try:
        return store.images()
    finally:
        store.close()


def training_photos(trained: TrainedEmbedder) -> tuple[set[str], set[str]]:
    """(sha256 of every image the embedder was trained on, sha256 of the photos it held out), read
    from the catalogue its card names: tuning on the first would flatter the embedder."""
    from features.embed_train_data import held_out_sha256

    catalogue = Path(trained.card["data"]["catalogue"])
    if not (catalogue / "catalog.sqlite3").is_file():
        raise NotFoundError(f"{trained.folder}: the catalogue it was trained on ({catalogue}) is gone; "
                            "its held-out photos cannot be told apart")
    stored = _stored_images(catalogue)
    data = trained.card["data"]
    if len(stored) != data["train_images"] + data["held_out_images"]:
        raise ConflictError(f"{trained.folder}: the catalogue in {catalogue} has {len(stored)} images, it was trained "
                            f"on {data['train_images']} + {data['held_out_images']} held out; it changed since, so "
                            "its held-out photos cannot be told apart")
    if "held_out_sha256" in data:  # the card lists them (a visit holdout cannot be re-derived)
        held = set(data["held_out_sha256"])
    else:
        held = held_out_sha256(stored, float(trained.card["settings"]["holdout"]))
    return {im.sha256 for im in stored} - held, held


def calibration_images(settings, n: int = 64) -> list:
    """Up to ``n`` images of the catalogue in ``settings.data``, spread over its SKUs (each SKU's first
    image first), decoded as indexing decodes them: what int8 quantisation measures its ranges on."""
    from pipeline.images import decode_image, read_image_bytes

    by_sku: dict[str, list] = {}
    for im in _stored_images(settings.data):
        by_sku.setdefault(im.sku, []).append(im)
    picked, round_ = [], 0
    while len(picked) < n and any(round_ < len(v) for v in by_sku.values()):
        picked += [v[round_] for v in by_sku.values() if round_ < len(v)]
        round_ += 1
    return [decode_image(read_image_bytes(Path(settings.data) / im.file, settings.images), settings.images, im.file)
            for im in picked[:n]]


def embedders_dir(data: Path) -> Path:
    return Path(data) / FOLDER


def next_version(data: Path) -> int:
    found = [int(m.group(1)) for p in embedders_dir(data).glob("v*") if (m := _VERSION_DIR.match(p.name))]
    return max(found, default=0) + 1


def load_trained(path: Path) -> TrainedEmbedder:
    """Open a trained embedder (its folder, or its ``model.pt``), checking format and checksum."""
    path = Path(path)
    folder = path.parent if path.suffix == ".pt" else path
    card_path = folder / "card.json"
    if not card_path.is_file() or not (folder / "model.pt").is_file():
        raise ModelNotFoundError(f"{folder} is not a trained embedder (expected model.pt and card.json made by "
                                 "`skulens embedder train`)")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelNotFoundError(f"{card_path} is not valid JSON: {exc}") from exc
    fmt = card.get("format")
    if not isinstance(fmt, int) or fmt > FORMAT:
        raise ConflictError(f"{folder} was written in embedder format {fmt!r}; this skulens reads format "
                            f"{FORMAT} and older: upgrade skulens or train the embedder again")
    if card.get("base") != BASE_NAME:
        raise ConflictError(f"{folder} fine-tunes {card.get('base')!r}; this skulens knows {BASE_NAME!r}")
    actual = sha256_file(folder / "model.pt")
    if actual != card.get("sha256"):
        raise ChecksumError(f"{folder / 'model.pt'} fails its checksum (sha256 {actual[:12]}..., card says "
                            f"{str(card.get('sha256'))[:12]}...): train it again or restore the file")
    return TrainedEmbedder(folder, card)


def write_card(folder: Path, card: dict) -> TrainedEmbedder:
    """Finish a trained embedder: record format, checksum and date beside ``model.pt``."""
    card = {"format": FORMAT, "base": BASE_NAME, **card, "sha256": sha256_file(folder / "model.pt"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = folder / "card.json.tmp"
    tmp.write_text(json.dumps(card, indent=2))
    tmp.replace(folder / "card.json")
    return TrainedEmbedder(folder, card)


def list_trained(data: Path) -> list[TrainedEmbedder | tuple[Path, str]]:
    """Every folder under ``embedders/``: the loadable ones, and ``(folder, why not)`` for the rest."""
    out: list[TrainedEmbedder | tuple[Path, str]] = []
    for folder in sorted(embedders_dir(data).glob("v*"), key=lambda p: (len(p.name), p.name)):
        if not folder.is_dir():
            continue
        try:
            out.append(load_trained(folder))
        except (ModelNotFoundError, ConflictError, ChecksumError) as exc:
            out.append((folder, str(exc)))
    return out


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


def onnx_sidecar_ok(onnx: Path, source_sha256: str, size: int = NATIVE_INPUT_SIZE) -> bool:
    """Whether ``onnx`` was exported from the weights with this checksum for ``size``-pixel inputs
    (its ``.json`` sidecar says so; sidecars from before the input size was recorded are 260 px)."""
    side = onnx.with_suffix(".json")
    if not onnx.is_file() or not side.is_file():
        return False
    try:
        found = json.loads(side.read_text())
    except json.JSONDecodeError:
        return False
    return found.get("source_sha256") == source_sha256 and found.get("input_size", NATIVE_INPUT_SIZE) == size


def _holdout_words(s: dict, d: dict) -> str:
    if d.get("held_out_by") == "visits":
        return (f"one shop visit per SKU: the smallest cluster of its photos by ImageNet embedding that holds "
                f"{s['holdout']:.0%} to half of them")
    return f"the last {s['holdout']:.0%} of each SKU's photos"


def training_markdown(trained: TrainedEmbedder) -> str:
    """A trained embedder's card as a BENCHMARKS.md section body."""
    c, m = trained.card, trained.card["metrics"]
    s, d = c["settings"], c["data"]
    hours = f", at most {s['hours']} h" if s.get("hours") else ""
    text = (f"**{trained.name}** (`{trained.folder}`, created {c['created']}, on {c['machine']['device']} with "
            f"{c['machine']['threads']} torch threads). Data: the catalogue in `{d['catalogue']}`: {d['skus']} SKUs, "
            f"{d['train_images']} training images ({d['primary_images']} of them the SKUs' first, catalogue "
            f"pictures), {d['held_out_images']} photos held out ({_holdout_words(s, d)}) "
            f"to pick the best epoch. Settings: {s['epochs']} epochs planned"
            f"{hours}, {trained.input_size} px inputs, "
            f"{s['skus_per_batch']} SKUs x {s['images_per_sku']} images per batch, learning rate "
            f"{s['learning_rate']}, {s.get('loss', 'multi-similarity')} loss, "  # cards before --loss: multi-similarity
            f"blocks {s['train_from_block']}-20 and the head trained, tag distillation "
            f"{s['keep_tags']}, seed {s['seed']}.\n\n"
            f"Held-out R@1 (whole photo against the catalogue pictures, embedding only): "
            f"{m['held_out_r1_before']} before, **{m['held_out_r1']}** after (epoch {m['best_epoch']} of "
            f"{m['epochs_run']}); **{m['seconds_per_epoch']} s per epoch**.\n\n"
            "| epoch | loss | seconds | held-out R@1 |\n|---|---|---|---|\n")
    for h in m["history"]:
        text += f"| {h['epoch']} | {h.get('loss', '–')} | {h.get('seconds', '–')} | {h['held_out_r1']} |\n"
    return text
