"""Shared fixtures: settings on a temporary data directory, real stages loaded once, tiny images."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.errors import SkulensError
from core.models import model_path
from core.settings import Settings

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def models_missing() -> str | None:
    settings = Settings()
    for name in (settings.embedder.model, settings.background.model, "ppocr-det", "ppocr-rec"):
        try:
            model_path(name, settings.models.cache_dir)
        except SkulensError as exc:
            return str(exc)
    return None


@pytest.fixture(scope="session")
def real_stages():
    """The real default pipeline stages (models load once per test session)."""
    reason = models_missing()
    if reason:
        pytest.skip(reason)
    from pipeline.build import build_stages

    return build_stages(Settings())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data=tmp_path / "data")


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the whole test session (tests/servers.py)."""
    from tests.servers import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


_databases = iter(range(1, 1 << 30))


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a new empty database on the session's PostgreSQL server."""
    return postgres_server.create_database(f"test_{next(_databases)}")


@pytest.fixture(scope="session")
def milvus_server():
    """A real Milvus Lite server for the whole test session (tests/servers.py)."""
    from tests.servers import MilvusLiteServer

    server = MilvusLiteServer().start()
    yield server
    server.stop()


_collections = iter(range(1, 1 << 30))


def new_collection() -> str:
    """A collection name no other test uses."""
    return f"test_{next(_collections)}"


STORE_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
DEPLOYMENTS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
               pytest.param("postgres+milvus", marks=[pytest.mark.postgres, pytest.mark.milvus])]
"""The embedded default (SQLite + FAISS), PostgreSQL with FAISS, and PostgreSQL with Milvus."""


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request) -> str | None:
    """Each catalogue store in turn: None for the data directory's SQLite file, else a PostgreSQL URL."""
    return request.getfixturevalue("postgres_url") if request.param == "postgres" else None


T = TypeVar("T")


def open_together(make: Callable[[], T], n: int = 4) -> list[T]:
    """``make()`` called by ``n`` threads at the same moment (as processes starting together would):
    what they made, or the first error any of them raised."""
    made: list[T] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            made.append(make())
        except BaseException as exc:  # noqa: BLE001 - raised below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    assert len(made) == n, "a thread did not finish in 60 s"
    return made


def product_image(colour: tuple[int, int, int], word: str, shape: str = "box", size: int = 320) -> np.ndarray:
    """A catalogue-style product picture: a coloured shape with a printed word on white."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    m = size // 6
    if shape == "ellipse":
        draw.ellipse((m, m, size - m, size - m), fill=colour)
    else:
        draw.rectangle((m // 2, m, size - m // 2, size - m), fill=colour)
    font = ImageFont.truetype(FONT, size // 9)
    draw.text((size // 2, size // 2), word, fill="white", font=font, anchor="mm")
    return np.asarray(img)


def jpeg_bytes(image: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


CATALOGUE = {
    "ARLA-MILK": ((30, 60, 200), "ARLA", "box"),
    "OATLY-OAT": ((40, 40, 40), "OATLY", "box"),
    "RED-APPLE": ((200, 20, 20), "APPLE", "ellipse"),
    "LIME": ((60, 180, 40), "LIME", "ellipse"),
}


def make_catalogue(folder: Path) -> Path:
    """A flat catalogue folder: <sku>.jpg + <sku>.txt for four made-up products."""
    folder.mkdir(parents=True)
    for sku, (colour, word, shape) in CATALOGUE.items():
        (folder / f"{sku}.jpg").write_bytes(jpeg_bytes(product_image(colour, word, shape)))
        (folder / f"{sku}.txt").write_text(f"{word.title()} product\nA {shape} of colour {colour}.\n")
    return folder
