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
from pathlib import Path

from core.errors import ChecksumError, ConflictError, ModelNotFoundError
from core.models import sha256_file
from core.naming import BASE_NAME, NATIVE_INPUT_SIZE, TrainedEmbedder, size_suffix  # noqa: F401
from core.settings import Settings

FORMAT = 1
"""Card format this skulens reads and writes; a card of a newer format is refused."""
FOLDER = "embedders"
_VERSION_DIR = re.compile(r"^v(\d+)$")


def stored_images(settings: Settings) -> list:
    """The stored images of the catalogue ``settings`` name ([] without one)."""
    from pipeline.store import has_catalogue, open_store

    if not has_catalogue(settings):
        return []
    store = open_store(settings)
    try:
        return store.images()
    finally:
        store.close()


def calibration_images(settings, n: int = 64) -> list:
    """Up to ``n`` images of the catalogue in ``settings.data``, spread over its SKUs (each SKU's first
    image first), decoded as indexing decodes them: what int8 quantisation measures its ranges on."""
    from pipeline.files import FileStore
    from pipeline.images import decode_image, read_image_bytes

    by_sku: dict[str, list] = {}
    for im in stored_images(settings):
        by_sku.setdefault(im.sku, []).append(im)
    picked: list = []
    round_ = 0
    while len(picked) < n and any(round_ < len(v) for v in by_sku.values()):
        picked += [v[round_] for v in by_sku.values() if round_ < len(v)]
        round_ += 1
    return [decode_image(read_image_bytes(FileStore.of(settings).path(im.file), settings.images), settings.images, im.file)
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
