"""Pick the compute device once, and say why when falling back."""

from __future__ import annotations

import logging
import os
from functools import lru_cache

log = logging.getLogger(__name__)


def onnx_threads(setting: int) -> int:
    """Threads each onnxruntime session of a process runs on: the setting (``models.threads``), else
    half the cores the process may use. A process analyses two images at once (``ingest.workers``,
    ``service.inference_threads``); onnxruntime's own default, a thread per core for every session,
    has the two analyses' sessions spin against each other (on 2 cores it halved indexing speed)."""
    if setting > 0:
        return setting
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


@lru_cache(maxsize=None)
def resolve_device(setting: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; explicit values are checked."""
    import torch  # imported here so that the edges never import torch themselves

    if setting == "auto":
        if torch.cuda.is_available():
            return "cuda"
        log.info("no CUDA device visible to torch; running models on the CPU")
        return "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %r requested but torch sees no CUDA device; falling back to the CPU", setting)
        return "cpu"
    return setting
