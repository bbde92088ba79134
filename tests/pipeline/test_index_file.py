"""The index file behind the database: background saves, and catching up after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from core.catalog import Product
from core.settings import IndexSettings
from fusion.faiss_index import FaissIndex, IndexSnapshot
from pipeline.index_file import IndexFile, build_index, open_index
from pipeline.store import CatalogStore
from tests.pipeline.test_store import DIM, image

INDEX = "index/vectors.faiss"


def write(store: CatalogStore, sku: str, n_images: int = 2):
    return store.write_product(Product(sku, title=sku), [image(f"{sku}-{i}") for i in range(n_images)], True)


def neighbours(index: FaissIndex, queries: np.ndarray) -> np.ndarray:
    return index.search(queries, 5)[1]


def fresh(store: CatalogStore, settings: IndexSettings) -> FaissIndex:
    return build_index(store, settings, DIM)


@pytest.mark.parametrize("kind", ["flat", "ivf", "ivf-sq8", "ivf-sq4", "hnsw"])
def test_an_old_index_file_catches_up_with_the_database(tmp_path, kind):
    settings = IndexSettings(kind=kind)
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    for i in range(30):
        write(store, f"SKU-{i}")
    index, stale = open_index(tmp_path / INDEX, store, settings, DIM)
    assert stale and len(index) == store.count()[2]
    index.save(tmp_path / INDEX, store.generation())
    # later writes that never reached the file (the process was killed before its next save)
    for i in range(30, 36):
        write(store, f"SKU-{i}")
    store.delete_product("SKU-3")
    store.delete_image("SKU-4", store.images("SKU-4")[0].id)
    write(store, "SKU-5", n_images=3)  # replaced images: old vectors gone, new ones added

    caught, stale = open_index(tmp_path / INDEX, store, settings, DIM)

    assert stale
    np.testing.assert_array_equal(caught.ids(), store.vector_ids())
    queries = store.vectors(DIM)[1][::7]
    np.testing.assert_array_equal(neighbours(caught, queries), neighbours(fresh(store, settings), queries))
    store.close()


def test_an_index_saved_after_the_last_write_is_used_as_it_is(tmp_path):
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    write(store, "A")
    index, _ = open_index(tmp_path / INDEX, store, IndexSettings(), DIM)
    index.save(tmp_path / INDEX, store.generation())
    again, stale = open_index(tmp_path / INDEX, store, IndexSettings(), DIM)
    assert not stale and again.generation == store.generation()
    store.close()


def test_an_unreadable_index_file_is_rebuilt(tmp_path):
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    write(store, "A")
    (tmp_path / "index").mkdir()
    (tmp_path / INDEX).write_bytes(os.urandom(2048))
    (tmp_path / INDEX).with_suffix(".json").write_text('{"generation": 1, "dim": 8, "ntotal": 2}')
    index, stale = open_index(tmp_path / INDEX, store, IndexSettings(), DIM)
    assert stale
    np.testing.assert_array_equal(index.ids(), store.vector_ids())
    store.close()


def test_writes_mark_the_file_and_the_saver_writes_it_within_the_interval(tmp_path):
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    write(store, "A")
    index, _ = open_index(tmp_path / INDEX, store, IndexSettings(), DIM)
    lock = threading.RLock()
    saver = IndexFile(tmp_path / INDEX, store, IndexSettings(save_interval_s=0.2), lambda: index, lock)
    result = write(store, "B")
    index.add(result.added_ids, result.added_vectors)
    saver.changed()
    assert FaissIndex.load(tmp_path / INDEX, IndexSettings(), None, DIM) is None  # not written yet
    deadline = time.monotonic() + 10
    while (saved := FaissIndex.load(tmp_path / INDEX, IndexSettings(), None, DIM)) is None:
        assert time.monotonic() < deadline, "the saver never wrote the index"
        time.sleep(0.05)
    assert saved.generation == store.generation() and len(saved) == store.count()[2] == 8
    saver.close()
    store.close()


def test_a_save_holds_the_lock_while_it_copies_the_index_not_while_it_writes_it(tmp_path, monkeypatch):
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    write(store, "A")
    index, _ = open_index(tmp_path / INDEX, store, IndexSettings(), DIM)
    lock = threading.RLock()
    saver = IndexFile(tmp_path / INDEX, store, IndexSettings(save_interval_s=60), lambda: index, lock)
    writing, release = threading.Event(), threading.Event()
    real_write = IndexSnapshot.write

    def slow_write(self, path):  # a disk that takes its time
        writing.set()
        release.wait(10)
        real_write(self, path)

    monkeypatch.setattr(IndexSnapshot, "write", slow_write)
    saver.changed()
    flushing = threading.Thread(target=saver.flush)
    flushing.start()
    assert writing.wait(10)
    got = lock.acquire(timeout=2)  # a write to the catalogue is not kept waiting by the disk
    assert got
    result = write(store, "B")  # changed after the copy: the next save writes it
    index.add(result.added_ids, result.added_vectors)
    saver.changed()
    lock.release()
    release.set()
    flushing.join(10)
    saved = FaissIndex.load(tmp_path / INDEX, IndexSettings(), None, DIM)
    assert saved is not None and len(saved) == 4  # the copy taken before "B"
    saver.close()
    saved = FaissIndex.load(tmp_path / INDEX, IndexSettings(), None, DIM)
    assert saved is not None and len(saved) == 8 and saved.generation == store.generation()
    store.close()


def test_a_read_only_index_file_is_never_written(tmp_path):
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    write(store, "A")
    index, _ = open_index(tmp_path / INDEX, store, IndexSettings(), DIM)
    reader = IndexFile(tmp_path / INDEX, store, IndexSettings(save_interval_s=0), lambda: index,
                       threading.RLock(), read_only=True)
    reader.changed()
    reader.close()
    assert not (tmp_path / INDEX).exists()
    store.close()


WRITER = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from core.catalog import Product
    from core.settings import IndexSettings
    from pipeline.index_file import IndexFile, open_index
    from pipeline.store import CatalogStore
    from tests.pipeline.test_store import DIM, image

    root = Path(sys.argv[1])
    store = CatalogStore(root / "catalog.sqlite3")
    index, _ = open_index(root / "index/vectors.faiss", store, IndexSettings(), DIM)
    saver = IndexFile(root / "index/vectors.faiss", store, IndexSettings(save_interval_s=3600), lambda: index,
                      threading.RLock())
    for i in range(40):
        result = store.write_product(Product(f"NEW-{i}"), [image(f"new-{i}")], True)
        index.add(result.added_ids, result.added_vectors)
        saver.changed()
    removed = store.delete_product("OLD-0")
    index.remove(removed)
    saver.changed()
    print("written", flush=True)
    time.sleep(600)
""")


def test_writes_acknowledged_before_a_kill_are_in_the_index_after_it(tmp_path):
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    for i in range(5):
        write(store, f"OLD-{i}")
    index, _ = open_index(tmp_path / INDEX, store, IndexSettings(), DIM)
    index.save(tmp_path / INDEX, store.generation())
    store.close()

    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    store = CatalogStore(tmp_path / "catalog.sqlite3")
    assert store.count()[0] == 44
    index, stale = open_index(tmp_path / INDEX, store, IndexSettings(), DIM)
    assert stale
    np.testing.assert_array_equal(index.ids(), store.vector_ids())
    new = store.vectors_by_id(store.vector_ids()[-3:], DIM)
    assert index.search(new, 1)[1][:, 0].tolist() == store.vector_ids()[-3:].tolist()
    store.close()
