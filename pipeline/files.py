"""Where catalogue image files live: one small interface over a folder.

By default the folder is the data directory (files at ``<data>/images/ab/<sha256>.<ext>``); with
``files.root`` set it is another folder, e.g. a shared mount every node of a deployment sees. The
database names each file by the same relative path either way. (An object store can come behind
this interface later.)
"""

from __future__ import annotations

import threading
from pathlib import Path

from core.settings import Settings


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def of(cls, settings: Settings) -> "FileStore":
        """The file store ``settings`` name: ``files.root``, else the data directory."""
        return cls(settings.files.root if settings.files.root is not None else settings.data)

    def path(self, rel: str) -> Path:
        """Where the file named ``rel`` (as the database names it) is."""
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def read(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def put(self, rel: str, data: bytes) -> None:
        """Write ``data`` as ``rel`` unless it is there already (content-addressed names: the same
        name is the same bytes); atomic, and safe when two writers store the same picture at once."""
        path = self.path(rel)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")  # a name of its own per writer
        tmp.write_bytes(data)
        tmp.replace(path)

    def delete(self, rel: str) -> None:
        self.path(rel).unlink(missing_ok=True)
