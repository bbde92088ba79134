"""Read a merchant's catalogue: a folder of ``<sku>.<jpg|png|webp>`` files (with optional
``<sku>.txt`` and ``<sku>.json``), a folder of ``<sku>/`` sub-folders of images, or a CSV
manifest (``sku,image,title,brand,category,tags,price,description,...``).

Problems with one item never stop the rest: they come back as :class:`Skipped` rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from core.catalog import Product, split_tags
from core.errors import InvalidInputError, NotFoundError, SkulensError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
_KNOWN_COLUMNS = {"sku", "image", "title", "brand", "category", "tags", "price", "description"}
_TITLE_MAX = 120


@dataclass(frozen=True)
class CatalogEntry:
    product: Product
    images: tuple[Path, ...]

    def source_hash(self, image_hashes: list[str]) -> str:
        payload = json.dumps([self.product.to_json(), sorted(image_hashes)], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Skipped:
    item: str
    reason: str


@dataclass
class CatalogSource:
    entries: list[CatalogEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def read_catalog(path: Path) -> CatalogSource:
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no such catalogue: {path}")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise InvalidInputError(f"{path}: expected a folder or a .csv manifest")
        return _read_csv(path)
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    flat_images = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    source = CatalogSource()
    _read_flat(path, source)
    flat_stems = {p.stem for p in flat_images}
    for sub in subdirs:
        if sub.name in flat_stems:  # one SKU twice would make the second entry overwrite the first
            source.skipped.append(Skipped(sub.name, f"both {sub.name}/ and a {sub.name} image file; rename one"))
            continue
        _read_subfolder(sub, source)
    if not source.entries and not source.skipped:
        raise InvalidInputError(f"{path}: no product images found (expected <sku>.jpg files or <sku>/ folders)")
    log.info("%s: %d products (%d flat images, %d folders)", path, len(source.entries), len(flat_images),
             len(subdirs))
    return source


def text_fields(txt: Path | None, sku: str) -> dict:
    """``<sku>.txt``: first line is the title, the rest the description; a lone sentence is a description."""
    if txt is None or not txt.is_file():
        return {}
    lines = [ln.strip() for ln in txt.read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return {}
    if len(lines) == 1 and _is_sentence(lines[0]):
        return {"description": lines[0]}
    return {"title": lines[0], "description": "\n".join(lines[1:])}


def _is_sentence(line: str) -> bool:
    return len(line) > _TITLE_MAX or line.endswith((".", "!")) or len(line.split()) >= 10


def _json_fields(js: Path | None) -> dict:
    if js is None or not js.is_file():
        return {}
    try:
        data = json.loads(js.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{js.name}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{js.name}: expected a JSON object")
    return data


def make_product(sku: str, fields: dict) -> Product:
    """A :class:`Product` from loose fields; unknown keys go to ``extra``."""
    tags = split_tags(fields.get("tags"))
    price = fields.get("price")
    if price in ("", None):
        price = None
    else:
        try:
            price = float(price)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{sku}: price must be a number, got {price!r}") from None
    extra = {k: v for k, v in fields.items() if k not in _KNOWN_COLUMNS and v not in ("", None)}
    title = str(fields.get("title") or "").strip() or sku.replace("-", " ").replace("_", " ")
    return Product(sku, title, str(fields.get("brand") or ""), str(fields.get("category") or ""), tuple(tags),
                   price, str(fields.get("description") or ""), extra)


def _add(source: CatalogSource, sku: str, images: list[Path], fields_of) -> None:
    try:
        fields = fields_of()
        product = make_product(sku, fields)
    except SkulensError as exc:
        source.skipped.append(Skipped(sku, str(exc)))
        return
    if not images:
        source.skipped.append(Skipped(sku, "no image"))
        return
    source.entries.append(CatalogEntry(product, tuple(images)))


def _read_flat(folder: Path, source: CatalogSource) -> None:
    by_stem: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(p.stem, []).append(p)
    for txt in sorted(folder.glob("*.txt")) + sorted(folder.glob("*.json")):
        if txt.stem not in by_stem and not (folder / txt.stem).is_dir():
            source.skipped.append(Skipped(txt.stem, f"{txt.name} has no image beside it"))
    for sku, images in by_stem.items():
        _add(source, sku, images, lambda s=sku: {**text_fields(folder / f"{s}.txt", s),
                                                 **_json_fields(folder / f"{s}.json")})


def _read_subfolder(sub: Path, source: CatalogSource) -> None:
    sku = sub.name
    images = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    txt = next((p for p in (sub / f"{sku}.txt", sub / "product.txt", sub.parent / f"{sku}.txt") if p.is_file()), None)
    js = next((p for p in (sub / f"{sku}.json", sub / "product.json", sub.parent / f"{sku}.json") if p.is_file()),
              None)
    _add(source, sku, images, lambda: {**text_fields(txt, sku), **_json_fields(js)})


def _read_csv(path: Path) -> CatalogSource:
    source = CatalogSource()
    rows: dict[str, tuple[dict, list[Path]]] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            _read_csv_rows(path, reader, source, rows)
        except csv.Error as exc:
            raise InvalidInputError(f"{path.name} line {reader.line_num}: not valid CSV ({exc})") from None
        except UnicodeDecodeError:
            raise InvalidInputError(f"{path.name}: not UTF-8 text") from None
    for sku, (fields, images) in rows.items():
        _add(source, sku, images, lambda f=fields: f)
    return source


def _read_csv_rows(path: Path, reader: csv.DictReader, source: CatalogSource,
                   rows: dict[str, tuple[dict, list[Path]]]) -> None:
    if not reader.fieldnames or "sku" not in reader.fieldnames or "image" not in reader.fieldnames:
        raise InvalidInputError(f"{path.name}: expected a header with at least 'sku' and 'image' columns")
    for n, row in enumerate(reader, start=2):
        sku = (row.get("sku") or "").strip()
        image = (row.get("image") or "").strip()
        if not sku:
            source.skipped.append(Skipped(f"{path.name} line {n}", "no sku"))
            continue
        fields, images = rows.setdefault(sku, ({}, []))
        fields.update({k: v for k, v in row.items() if k and v not in ("", None) and k not in ("sku", "image")})
        if not image:
            source.skipped.append(Skipped(f"{path.name} line {n} ({sku})", "no image"))
            continue
        img = (path.parent / image) if not Path(image).is_absolute() else Path(image)
        images.append(img)
