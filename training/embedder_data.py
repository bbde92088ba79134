"""Training data for the embedder: the catalogue's images grouped by SKU, a held-out share of
each SKU's photos, batches of several images per SKU, and augmentations that keep a product's identity.

Each image is kept in memory scaled to a moderate size, with its stored main box.  An image's
*view* is the whole image or its main box (what the search pipeline embeds), then a random
crop, a slight rotation or perspective, light, contrast, saturation and blur changes.  Hue is
left alone (colour tells products apart) and nothing is mirrored (printed text would be).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ConflictError, InvalidInputError, NotFoundError
from core.naming import TrainedEmbedder
from core.settings import Settings
from pipeline.embedder_files import stored_images

log = logging.getLogger(__name__)

KEEP_SIDE = 512  # images are held in memory scaled to at most this longest side
VISIT_MIN_PHOTOS = 8  # a SKU with fewer photos holds no visit out


@dataclass(frozen=True)
class TrainImage:
    label: int  # the SKU's index
    image: np.ndarray  # RGB uint8, at most KEEP_SIDE on its longest side
    box: tuple[int, int, int, int] | None  # the main box in ``image``'s pixels; None: the whole image
    primary: bool  # the SKU's first image (its catalogue picture)
    image_id: int
    sha256: str = ""  # the stored image's content digest


def load_catalogue(engine, progress=None) -> tuple[list[str], list[TrainImage]]:
    """Every image of the engine's catalogue as training data; the SKUs in label order."""
    from PIL import Image

    stored = engine.store.images()
    skus = sorted({im.sku for im in stored})
    label = {sku: i for i, sku in enumerate(skus)}
    seen: set[str] = set()
    items = []
    for n, im in enumerate(stored):
        pixels = engine.decode(engine.files.read(im.file), im.file)
        h, w = pixels.shape[:2]
        scale = min(1.0, KEEP_SIDE / max(h, w))
        if scale < 1.0:
            pixels = np.asarray(Image.fromarray(pixels).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                              Image.Resampling.BILINEAR))
        box = None
        if im.boxes:
            x1, y1, x2, y2 = (int(round(v * scale)) for v in im.boxes[0][:4])
            if (x2 - x1) * (y2 - y1) < 0.9 * pixels.shape[0] * pixels.shape[1] and x2 - x1 >= 8 and y2 - y1 >= 8:
                box = (x1, y1, x2, y2)
        items.append(TrainImage(label[im.sku], pixels, box, im.sku not in seen, im.id, im.sha256))
        seen.add(im.sku)
        if progress is not None:
            progress("load", n + 1, len(stored))
    return skus, items


def held_out_sha256(stored: list, share: float) -> set[str]:
    """The sha256 of the images ``embedder train --holdout-by order`` holds out of a catalogue's stored
    images (:func:`split_holdout`'s order rule, without decoding anything): photos the embedder never
    learnt from, the ones fusion weights for it may be tuned on.  Cards written since the visit
    holdout list their held-out photos; this serves the cards before."""
    by_id = {im.id: im.sha256 for im in stored}
    label = {sku: i for i, sku in enumerate(sorted({im.sku for im in stored}))}
    seen: set[str] = set()
    refs = []
    for im in stored:
        refs.append(TrainImage(label[im.sku], np.zeros((0, 0, 3), np.uint8), None, im.sku not in seen, im.id))
        seen.add(im.sku)
    return {by_id[it.image_id] for it in split_holdout(refs, share)[1]}


def held_out_count(photos: int, share: float) -> int:
    """How many of a SKU's ``photos`` are held out: the ``share`` of them, none of fewer than 4."""
    return int(photos * share) if photos >= 4 else 0


def split_holdout(items: list[TrainImage], share: float,
                  vectors: np.ndarray | None = None) -> tuple[list[TrainImage], list[TrainImage]]:
    """(train, held out), per SKU among its non-primary images (its photos).

    Without ``vectors``: the last ``share`` of them in catalogue order, which keeps a burst added
    together on one side.  With ``vectors`` (one embedding per item, L2-normalised): a whole shop
    visit, :func:`visit_cluster`'s, so held-out photos are unlike the ones trained on the way a
    shopper's photo from another day is; a SKU whose photos form no such visit holds none out."""
    if share <= 0:
        return list(items), []
    by_label: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        by_label.setdefault(it.label, []).append(i)
    train, held = [], []
    for group in by_label.values():
        others = [i for i in group if not items[i].primary]
        if vectors is None:
            n = held_out_count(len(others), share)
            out = set(others[len(others) - n:]) if n else set()
        else:
            out = {others[j] for j in visit_cluster(vectors[others], share)} if others else set()
        train.extend(items[i] for i in group if i not in out)
        held.extend(items[i] for i in others if i in out)
    return train, held


def visit_cluster(vectors: np.ndarray, share: float, most: int = 4) -> list[int]:
    """The rows of one SKU's photo ``vectors`` that look like one shop visit: split them into 2, then
    3, up to ``most`` clusters (average linkage on cosine distance) and take the smallest cluster
    that holds between ``share`` and half of the photos.  None for fewer than
    :data:`VISIT_MIN_PHOTOS` photos, or when no split has such a cluster."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(vectors)
    if n < VISIT_MIN_PHOTOS or share <= 0:
        return []
    for k in range(2, most + 1):
        labels = AgglomerativeClustering(n_clusters=k, linkage="average", metric="cosine").fit_predict(vectors)
        sizes = np.bincount(labels, minlength=k)
        fitting = [c for c in np.argsort(sizes, kind="stable") if share * n <= sizes[c] <= n / 2]
        if fitting:
            return [int(i) for i in np.flatnonzero(labels == fitting[0])]
    return []


class SkuBatches:
    """Batches of ``per_sku`` images from each of ``skus`` SKUs; each SKU's primary image is in every
    draw of that SKU when ``with_primary`` (shop photos are matched against catalogue pictures)."""

    def __init__(self, items: list[TrainImage], skus: int, per_sku: int, with_primary: bool, seed: int) -> None:
        if per_sku < 2:
            raise InvalidInputError(f"expected at least 2 images per SKU in a batch, got {per_sku}")
        self.by_label: dict[int, list[int]] = {}
        for i, it in enumerate(items):
            self.by_label.setdefault(it.label, []).append(i)
        self.primary = {it.label: i for i, it in enumerate(items) if it.primary}
        self.labels = sorted(self.by_label)
        if len(self.labels) < 2:
            raise InvalidInputError(f"training needs at least 2 SKUs with images, the catalogue has {len(self.labels)}")
        self.skus = min(skus, len(self.labels))
        self.per_sku = per_sku
        self.with_primary = with_primary
        self.n_items = len(items)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return max(1, -(-self.n_items // (self.skus * self.per_sku)))

    def __iter__(self):
        order: list[int] = []
        for _ in range(len(self)):
            if len(order) < self.skus:
                order += list(self.rng.permutation(self.labels))
            chosen, order = order[:self.skus], order[self.skus:]
            batch = []
            for label in chosen:
                pool = self.by_label[label]
                picks: list[int] = []
                if self.with_primary and label in self.primary:
                    picks.append(self.primary[label])
                rest = self.per_sku - len(picks)
                picks.extend(self.rng.choice(pool, rest, replace=len(pool) < rest).tolist())
                batch.extend(picks)
            yield batch


def view(item: TrainImage, rng: np.random.Generator, crop_share: float) -> np.ndarray:
    """The whole image or its main box (slightly loosened), as the pipeline embeds them."""
    img = item.image
    if item.box is None or rng.random() >= crop_share:
        return img
    x1, y1, x2, y2 = item.box
    h, w = img.shape[:2]
    pad_x, pad_y = (x2 - x1) * rng.uniform(0, 0.1), (y2 - y1) * rng.uniform(0, 0.1)
    x1, x2 = max(0, int(x1 - pad_x)), min(w, int(x2 + pad_x))
    y1, y2 = max(0, int(y1 - pad_y)), min(h, int(y2 + pad_y))
    return img[y1:y2, x1:x2]


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop (40-100% of the area), slight rotation or perspective, light, contrast,
    saturation and blur changes; hue and orientation are kept."""
    from PIL import Image, ImageEnhance, ImageFilter

    h, w = image.shape[:2]
    area = rng.uniform(0.4, 1.0) * h * w
    aspect = np.exp(rng.uniform(np.log(0.75), np.log(1.33))) * w / h
    cw = int(min(w, max(8, round(np.sqrt(area * aspect)))))
    ch = int(min(h, max(8, round(np.sqrt(area / aspect)))))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    pil = Image.fromarray(np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw]))
    if rng.random() < 0.3:
        pil = pil.rotate(float(rng.uniform(-12, 12)), Image.Resampling.BILINEAR, expand=True, fillcolor=(255, 255, 255))
    if rng.random() < 0.3:
        pil = _perspective(pil, rng, 0.12)
    pil = ImageEnhance.Brightness(pil).enhance(rng.uniform(0.65, 1.35))
    pil = ImageEnhance.Contrast(pil).enhance(rng.uniform(0.7, 1.3))
    pil = ImageEnhance.Color(pil).enhance(rng.uniform(0.8, 1.2))
    if rng.random() < 0.25:
        pil = pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.8))))
    return np.asarray(pil.convert("RGB"))


def _perspective(pil, rng: np.random.Generator, strength: float):
    from PIL import Image

    w, h = pil.size
    dx, dy = strength * w, strength * h
    corners = [(rng.uniform(0, dx), rng.uniform(0, dy)), (w - rng.uniform(0, dx), rng.uniform(0, dy)),
               (w - rng.uniform(0, dx), h - rng.uniform(0, dy)), (rng.uniform(0, dx), h - rng.uniform(0, dy))]
    target = [(0, 0), (w, 0), (w, h), (0, h)]
    a = []
    for (x, y), (u, v) in zip(target, corners):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.asarray(a, np.float64), np.asarray([c for p in corners for c in p], np.float64))
    return pil.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR,
                         fillcolor=(255, 255, 255))


def source_summary(data: Path, skus: list[str], train: list[TrainImage], held: list[TrainImage],
                   held_out_by: str = "order") -> dict:
    """The card's account of the data: counts, and which photos were held out (by content) and how."""
    return {"catalogue": str(Path(data).resolve()), "skus": len(skus), "train_images": len(train),
            "held_out_images": len(held), "primary_images": sum(it.primary for it in train),
            "held_out_by": held_out_by, "held_out_sha256": sorted(it.sha256 for it in held if it.sha256)}


def training_photos(trained: TrainedEmbedder) -> tuple[set[str], set[str]]:
    """(sha256 of every image the embedder was trained on, sha256 of the photos it held out), read
    from the catalogue its card names: tuning on the first would flatter the embedder."""
    catalogue = Path(trained.card["data"]["catalogue"])
    if not (catalogue / "catalog.sqlite3").is_file():
        raise NotFoundError(f"{trained.folder}: the catalogue it was trained on ({catalogue}) is gone; "
                            "its held-out photos cannot be told apart")
    stored = stored_images(Settings(data=catalogue))
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
