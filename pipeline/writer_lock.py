"""One writing process per data directory: an exclusive ``flock`` on ``<data>/writer.lock``.

Two processes writing one catalogue would each hold their own in-memory index and overwrite each
other's index file.  The lock is the operating system's, so it goes with the process (a killed
writer leaves no stale lock).  Within one process it is shared: engines opened one after another
(or side by side) on the same directory by the same program count their holds.  Read-only engines
(``skulens search`` while ``skulens serve`` runs) take no lock.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
from pathlib import Path

from core.errors import DataDirectoryBusyError, StorageError

LOCK_NAME = "writer.lock"

_held: dict[Path, list] = {}  # data directory -> [file descriptor, holds]
_guard = threading.Lock()


def acquire(data: Path) -> Path:
    """Hold the writer lock of ``data`` (a directory) for this process; returns the key to release."""
    key = Path(data).resolve()
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return key
        path = key / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create the lock file {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise DataDirectoryBusyError(
                f"the data directory {key} is in use by {holder}: one process writes to a catalogue at a time. "
                "Stop it first, or make the change through its HTTP API (`skulens search` can run beside it)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({_command()})\n".encode(), 0)
        _held[key] = [fd, 1]
        return key


def release(key: Path) -> None:
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]
            os.close(entry[0])  # closing the descriptor drops the lock


def _command() -> str:
    """This process's command line, shortened (``skulens --data shop serve``)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    line = " ".join([name, *sys.argv[1:]])
    return line if len(line) <= 160 else line[:157] + "..."
