"""Pick the compute device once, and say why when falling back."""

from __future__ import annotations

import logging
from functools import lru_cache

log = logging.getLogger(__name__)


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
