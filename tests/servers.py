"""Real servers the tests start on loopback, torn down after: PostgreSQL (initdb into a temporary
folder, a free port).  Nothing here is faked: the store tests run against the server the Debian
package ``postgresql`` installs (``make system`` installs it)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them off PATH), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(folders[-1]) if folders else None


def _end(process: subprocess.Popen | None, folder: Path) -> None:
    """Stop a server process (SIGTERM, then SIGKILL after 20 s) and remove its folder."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(folder, ignore_errors=True)


class PostgresServer:
    """One throw-away PostgreSQL cluster: trust authentication on 127.0.0.1 only, no fsync."""

    def __init__(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL's initdb is not installed (Debian package postgresql; `make system`)")
        self.bin = bin_dir
        # its own folder in the system's temporary folder (as root the server's user must reach it,
        # which pytest's private temporary folders do not allow); removed by stop()
        self.folder = Path(tempfile.mkdtemp(prefix="skulens-pg-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        # PostgreSQL refuses to run as root: as root, run it as the package's own user
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> "PostgresServer":
        data = self.folder / "pgdata"
        if self._as:
            shutil.chown(self.folder, "postgres", "postgres")
        log = self.folder / "initdb.log"
        with open(log, "wb") as out:
            subprocess.run([*self._as, str(self.bin / "initdb"), "-D", str(data), "-U", "skulens", "-A", "trust",
                            "-E", "UTF8", "--locale=C", "--no-sync"], check=True, stdout=out, stderr=out)
        self.process = subprocess.Popen(
            [*self._as, str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.folder),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "server.log", "wb"))
        self._wait()
        return self

    def _wait(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process is not None and self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{log}") from None
                time.sleep(0.1)

    def url(self, database: str = "skulens") -> str:
        return f"postgresql://skulens@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None, replace: bool = False) -> str:
        """A new database, empty or a copy of ``template`` (a database nobody is connected to); with
        ``replace``, one of that name is dropped first. Its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if replace:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def stop(self) -> None:
        _end(self.process, self.folder)  # SIGTERM: a "smart" shutdown would wait for the pools' connections
        self.process = None


class MilvusLiteServer:
    """Milvus Lite's gRPC server (the PyPI package milvus-lite) on a free loopback port, over a
    temporary data folder: the API a Milvus standalone server speaks."""

    def __init__(self) -> None:
        import sys

        self.program = Path(sys.executable).parent / "milvus-lite"
        if not self.program.exists():
            raise FileNotFoundError(f"{self.program} is not installed (pip install milvus-lite; `make venv`)")
        self.folder = Path(tempfile.mkdtemp(prefix="skulens-milvus-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "MilvusLiteServer":
        self.process = subprocess.Popen(
            [str(self.program), "server", "--data-dir", str(self.folder / "data"), "--host", "127.0.0.1",
             "--port", str(self.port)], stdout=open(self.folder / "server.log", "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"Milvus Lite did not start on port {self.port}:\n{log}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        _end(self.process, self.folder)  # SIGTERM: a "smart" shutdown would wait for the pools' connections
        self.process = None
