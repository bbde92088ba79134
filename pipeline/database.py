"""SQLite plumbing shared by the catalogue store and the feature caches: one writer connection
under a lock, one reader per thread (WAL), and the ``features`` table of per-image analyses cached
by key (content hash + the settings that shaped them)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from core.errors import StorageError


class Database:
    """One SQLite file: a writer connection (used under ``_lock``) and one reader per thread.

    In WAL mode each reader sees the last committed state, so a reader never sees half of a
    write in progress on the writer connection, and reads do not wait for writes.
    """

    path: Path
    _conn: sqlite3.Connection
    _lock: threading.Lock | threading.RLock

    def _open(self, path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _init_readers(self) -> None:
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _read(self) -> sqlite3.Connection:
        """This thread's read connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._conn.close()


class FeatureTable(Database):
    """Per-image analyses cached by key (content hash + settings) in a ``features`` table."""

    def cached_features(self, key: str) -> bytes | None:
        row = self._read().execute("SELECT value FROM features WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def cache_features(self, key: str, value: bytes) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO features(key, value, created_at) VALUES (?,?,?)",
                               (key, value, time.time()))


class FeatureCache(FeatureTable):
    """A feature cache in its own SQLite file, shared by several data directories (evaluation)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._open(self.path)
            self._conn.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, value BLOB NOT NULL,"
                               " created_at REAL NOT NULL)")
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open the feature cache {path}: {exc}") from exc
        self._lock = threading.Lock()
        self._init_readers()


def read_meta(path: Path, key: str) -> str | None:
    """One ``meta`` value of a catalogue database, read without opening it for writing (None when absent)."""
    if not Path(path).is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot read the catalogue database {path}: {exc}") from exc
    return None if row is None else row[0]
