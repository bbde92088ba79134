"""Fine-tune the EfficientNet-Lite2 embedder on a shop's catalogue (``skulens embedder train``).

Metric learning as the field does it (pytorch-metric-learning): batches of several images per
SKU, the Proxy-Anchor loss (one learnt proxy per SKU) or the Multi-Similarity loss with its online
miner, starting from the ImageNet weights.  The stem and early blocks stay frozen (they see
edges and textures, which transfer), the later blocks and the head learn; batch-norm statistics
stay ImageNet's (batches are small).  The ImageNet classifier is kept, and a distillation term
holds its outputs near the original network's, so the visual tags stay meaningful.  After every
epoch the held-out photos are matched against the SKUs' primary images (R@1, whole photo), and
the best epoch is kept.
"""

from __future__ import annotations

import copy
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.devices import resolve_device
from core.errors import InvalidInputError
from core.naming import TrainedEmbedder
from core.settings import ModelSettings
from features.embed_efficientnet import DIM, INPUT_SIZE, embedding_module, letterbox, load_network
from pipeline.embedder_files import write_card
from training.embedder_data import SkuBatches, TrainImage, augment, view

log = logging.getLogger(__name__)

LOSSES = ("multi-similarity", "proxy-anchor")
HOLDOUTS = ("visits", "order")
PROXY_LR_SCALE = 100.0  # proxies learn this much faster than the network (as in the Proxy-Anchor paper)

LICENCE = ("Apache-2.0 (fine-tuned from the ImageNet EfficientNet-Lite2 weights, Apache-2.0); "
           "training images: the shop's own catalogue")


@dataclass(frozen=True)
class EmbedderTrainSettings:
    epochs: int = 15
    hours: float | None = None  # stop before an epoch that would pass this (one epoch always runs)
    skus_per_batch: int = 8
    images_per_sku: int = 4
    with_primary: bool = True  # each SKU's catalogue picture in every draw of that SKU
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    train_from_block: int = 7  # blocks before this one stay frozen (21 blocks in all)
    keep_tags: float = 1.0  # weight of the distillation term that keeps the ImageNet tags
    loss: str = "proxy-anchor"  # one learnt proxy per SKU; or "multi-similarity" (pairs mined in each batch)
    crop_share: float = 0.5  # share of views taken from the main box rather than the whole image
    holdout: float = 0.1
    holdout_by: str = "order"  # the last share of each SKU's photos, or "visits": one whole shop visit per SKU
    image_size: int = INPUT_SIZE
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.skus_per_batch < 2 or self.images_per_sku < 2:
            raise InvalidInputError(f"expected epochs >= 1, >= 2 SKUs per batch and >= 2 images per SKU, got {self}")
        if not 0 <= self.train_from_block <= 21:
            raise InvalidInputError(f"expected train_from_block in 0..21, got {self.train_from_block}")
        if self.loss not in LOSSES:
            raise InvalidInputError(f"expected a loss among {', '.join(LOSSES)}, got {self.loss!r}")
        if not 0 <= self.holdout < 0.5:
            raise InvalidInputError(f"expected a held-out share in [0, 0.5), got {self.holdout}")
        if self.holdout_by not in HOLDOUTS:
            raise InvalidInputError(f"expected photos held out by {' or '.join(HOLDOUTS)}, got {self.holdout_by!r}")


class _Split:
    """The network cut in two: a frozen trunk (stem + early blocks) and a trainable top."""

    def __init__(self, net, first: int) -> None:
        self.net, self.first = net, first

    def trunk(self, x):
        n = self.net
        x = n._swish(n._bn0(n._conv_stem(x)))
        for block in n._blocks[:self.first]:
            x = block(x)
        return x

    def top(self, x):
        n = self.net
        for block in n._blocks[self.first:]:
            x = block(x)
        pooled = n._swish(n._bn1(n._conv_head(x))).mean(dim=(2, 3))
        return pooled, n._fc(pooled)

    def trainable(self) -> list:
        n = self.net
        mods = list(n._blocks[self.first:]) + [n._conv_head, n._bn1]
        if self.first == 0:
            mods += [n._conv_stem, n._bn0]
        return [p for m in mods for p in m.parameters()]


def _to_tensor(images: list[np.ndarray], size: int):
    import torch

    batch = np.stack([letterbox(im, size) for im in images]).astype(np.float32)
    return torch.from_numpy((batch.transpose(0, 3, 1, 2) - 127.0) / 128.0)


def embed_items(module, items: list[TrainImage], size: int, device: str, batch: int = 32) -> np.ndarray:
    """L2-normalised embeddings of whole images (no augmentation)."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(items), batch):
            x = _to_tensor([it.image for it in items[start:start + batch]], size).to(device)
            out.append(module(x)[0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def visit_vectors(images: list[np.ndarray], embedder, progress=None, batch: int = 32) -> np.ndarray:
    """``embedder``'s L2-normalised embeddings of whole images, in batches: what
    :func:`training.embedder_data.visit_cluster` groups a SKU's photos into shop visits by.
    ``embedder train --holdout-by visits`` and ``tune --protocol G2`` both pass the pipeline's
    ImageNet embedder (its features see the shelf, light and framing a visit shares)."""
    out = []
    for start in range(0, len(images), batch):
        out.append(embedder.embed(images[start:start + batch])[0])
        if progress is not None:
            progress("visits", min(start + batch, len(images)), len(images))
    v = np.concatenate(out) if out else np.zeros((0, DIM), np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def holdout_recall(module, train: list[TrainImage], held: list[TrainImage], size: int, device: str) -> float | None:
    """R@1 of held-out photos against each SKU's primary image (whole images, cosine)."""
    primaries = [it for it in train if it.primary]
    if not held or not primaries:
        return None
    g = embed_items(module, primaries, size, device)
    q = embed_items(module, held, size, device)
    best = np.asarray([primaries[i].label for i in np.argmax(q @ g.T, axis=1)])
    return round(float(np.mean(best == np.asarray([it.label for it in held]))), 4)


def _loss(settings: EmbedderTrainSettings, classes: int, device: str):
    """The metric-learning loss and its online miner (None for Proxy-Anchor, which needs none)."""
    from pytorch_metric_learning import losses, miners

    if settings.loss == "proxy-anchor":
        return losses.ProxyAnchorLoss(classes, DIM, margin=0.1, alpha=32).to(device), None
    return losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5), miners.MultiSimilarityMiner(0.1)


class _Trainer:
    """One training run: the network, its frozen copy (for the tag term), optimiser, loss and batches."""

    def __init__(self, train: list[TrainImage], models: ModelSettings, settings: EmbedderTrainSettings) -> None:
        import torch

        torch.manual_seed(settings.seed)
        self.train, self.settings = train, settings
        self.rng = np.random.default_rng(settings.seed)
        self.device = resolve_device(settings.device if settings.device != "auto" else models.device)
        self.net = load_network(None, models).to(self.device)
        teacher = copy.deepcopy(self.net).eval()
        for p in list(self.net.parameters()) + list(teacher.parameters()):
            p.requires_grad_(False)
        self.student, self.master = _Split(self.net, settings.train_from_block), _Split(teacher, settings.train_from_block)
        params = self.student.trainable()
        for p in params:
            p.requires_grad_(True)
        self.loss_fn, self.miner = _loss(settings, 1 + max(it.label for it in train), self.device)
        groups = [{"params": params}]
        if settings.loss == "proxy-anchor":
            groups.append({"params": list(self.loss_fn.parameters()), "lr": settings.learning_rate * PROXY_LR_SCALE,
                           "weight_decay": 0.0})
        self.optimiser = torch.optim.AdamW(groups, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        self.batches = SkuBatches(train, settings.skus_per_batch, settings.images_per_sku, settings.with_primary,
                                  settings.seed)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimiser,
                                                                    T_max=settings.epochs * len(self.batches))
        self.module = embedding_module(self.net)

    def step(self, idx: list[int]) -> float:
        import torch
        import torch.nn.functional as F

        s, train = self.settings, self.train
        x = _to_tensor([augment(view(train[i], self.rng, s.crop_share), self.rng) for i in idx], s.image_size)
        x = x.to(self.device)
        labels = torch.as_tensor([train[i].label for i in idx], device=self.device)
        with torch.no_grad():
            h = self.student.trunk(x)
            _, target = self.master.top(h)
        pooled, logits = self.student.top(h)
        emb = F.normalize(pooled, dim=1)
        loss = self.loss_fn(emb, labels, self.miner(emb, labels)) if self.miner else self.loss_fn(emb, labels)
        if s.keep_tags > 0:  # keep the ImageNet classifier's answers (softened, T = 2)
            kl = F.kl_div(F.log_softmax(logits / 2, 1), F.softmax(target / 2, 1), reduction="batchmean") * 4
            loss = loss + s.keep_tags * kl
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        self.scheduler.step()
        return loss.item()

    def epoch(self, number: int, progress=None) -> dict:
        t0, total = time.perf_counter(), 0.0
        self.net.eval()  # batch-norm statistics stay ImageNet's; dropout and drop-connect off
        for b, idx in enumerate(self.batches):
            total += self.step(idx)
            if progress is not None:
                progress(f"epoch {number}/{self.settings.epochs}", b + 1, len(self.batches))
        return {"epoch": number, "loss": round(total / len(self.batches), 4),
                "seconds": round(time.perf_counter() - t0, 1)}


def another_epoch_fits(spent: float, epochs_done: int, hours: float | None) -> bool:
    """Whether one more epoch, as long as the mean of those done (held-out check included), ends
    within ``hours`` of the first one's start; always true without a budget."""
    return not hours or spent + spent / max(epochs_done, 1) <= hours * 3600


def train_embedder(train: list[TrainImage], held: list[TrainImage], folder: Path, models: ModelSettings,
                   settings: EmbedderTrainSettings, source: dict, progress=None) -> TrainedEmbedder:
    """Train, keep the best epoch (by held-out R@1; the last without a held-out set), and write
    ``folder/model.pt`` with its card."""
    if not train:
        raise InvalidInputError("the catalogue has no images to train on")
    run = _Trainer(train, models, settings)
    size, device = settings.image_size, run.device
    history = [{"epoch": 0, "held_out_r1": holdout_recall(run.module, train, held, size, device)}]
    best_r1, best_state, best_epoch = history[0]["held_out_r1"], copy.deepcopy(run.net.state_dict()), 0
    log.info("before training: held-out R@1 %s", best_r1)
    t_start = time.perf_counter()
    for number in range(1, settings.epochs + 1):
        row = run.epoch(number, progress)
        row["held_out_r1"] = r1 = holdout_recall(run.module, train, held, size, device)
        history.append(row)
        log.info("epoch %d: loss %.4f, %.0f s, held-out R@1 %s", number, row["loss"], row["seconds"], r1)
        if r1 is None or best_r1 is None or r1 >= best_r1:
            best_r1, best_state, best_epoch = r1, copy.deepcopy(run.net.state_dict()), number
        spent = time.perf_counter() - t_start
        if number < settings.epochs and not another_epoch_fits(spent, number, settings.hours):
            log.info("stopping after epoch %d of %d: another (about %.0f s) would pass the %.2f h budget",
                     number, settings.epochs, spent / number, settings.hours)
            break
    return _save(folder, best_state, history, best_epoch, best_r1, settings, source, device)


def _save(folder: Path, state: dict, history: list[dict], best_epoch: int, best_r1: float | None,
          settings: EmbedderTrainSettings, source: dict, device: str) -> TrainedEmbedder:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.cpu() for k, v in state.items()}, folder / "model.pt.part")
    (folder / "model.pt.part").replace(folder / "model.pt")
    epochs_run = [h for h in history if h["epoch"] > 0]
    card = {
        "version": int(folder.name.removeprefix("v")) if folder.name.startswith("v") else 0,
        "settings": asdict(settings), "data": source, "licence": LICENCE,
        "metrics": {"history": history, "best_epoch": best_epoch, "held_out_r1": best_r1,
                    "held_out_r1_before": history[0]["held_out_r1"],
                    "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in epochs_run])), 1),
                    "epochs_run": len(epochs_run)},
        "machine": {"device": device, "torch": torch.__version__, "platform": platform.platform(),
                    "threads": torch.get_num_threads()},
    }
    return write_card(folder, card)
