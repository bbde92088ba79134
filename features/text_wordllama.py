"""Text to vectors with WordLlama (``wordllama``, MIT): the average of a text's token embeddings
(256-d, the Llama 2 vocabulary), as unit vectors. Words of like meaning land near each other
("crimson" near "red"), which no full-text index gives. The files come from the model cache
(``skulens models fetch`` copies them from the wheel and checks them); nothing is downloaded."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from core.errors import MissingDependencyError
from core.models import model_path
from core.settings import ModelSettings

log = logging.getLogger(__name__)

WEIGHTS, TOKENIZER = "wordllama-256", "wordllama-tokenizer"


class WordLlamaTextEmbedder:
    """``embed(texts) -> (n, 256) float32``: unit vectors; a text with no word gives a zero vector."""

    name = "wordllama-l2-supercat-256"
    dim = 256

    def __init__(self, models: ModelSettings) -> None:
        self.models = models
        self._lock = threading.Lock()
        self._model = None

    def _load(self):
        with self._lock:
            if self._model is None:
                try:
                    from safetensors import safe_open
                    from tokenizers import Tokenizer
                    from wordllama.inference import WordLlamaInference
                except ImportError as exc:
                    raise MissingDependencyError("the wordllama package is not installed: `pip install wordllama` "
                                                 "(or `make setup`)") from exc
                cache = Path(self.models.cache_dir)
                weights, tokenizer = model_path(WEIGHTS, cache), model_path(TOKENIZER, cache)
                with safe_open(str(weights), framework="np", device="cpu") as f:
                    table = f.get_tensor("embedding.weight")
                self._model = WordLlamaInference(table, Tokenizer.from_file(str(tokenizer)))
                log.info("loaded WordLlama (%d tokens x %d)", *table.shape)
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        worded = [i for i, t in enumerate(texts) if any(c.isalnum() for c in t)]
        if worded:
            vectors = np.asarray(self._load().embed([texts[i] for i in worded], norm=False), np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out[worded] = vectors / np.maximum(norms, 1e-12)
        return out
