"""How words are folded, so that typed words, printed words, merchant text and filters meet:
lower-case ASCII letters and digits only, accents stripped (as the catalogue's FTS index folds them)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_FOLD = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})
_NOT_TOKEN = re.compile(r"[^a-z0-9]+")
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")


@lru_cache(maxsize=1 << 16)  # a catalogue's words repeat: its start-up folds millions of them
def normalise(word: str) -> str:
    """Lowercase ASCII letters and digits only: ``"Mjölk!"`` -> ``"mjolk"``."""
    if word.isascii():  # nothing to decompose or fold
        return _NOT_TOKEN.sub("", word.lower())
    decomposed = unicodedata.normalize("NFKD", word)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NOT_TOKEN.sub("", stripped.lower().translate(_FOLD))


def clean_word(text: str) -> str:
    """A word as read, without surrounding punctuation or whitespace: ``"(Arla!"`` -> ``"Arla"``."""
    return _EDGE_PUNCT.sub("", text.strip())
