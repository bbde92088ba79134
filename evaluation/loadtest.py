"""Load and fault runs against a real ``skulens serve`` on loopback (``skulens bench-service``).

- **Load**: N searches from C concurrent clients while a merchant client keeps adding and deleting
  products; throughput, latency percentiles, status codes (5xx must be zero).
- **Kill**: a merchant makes acknowledged writes while a bulk import runs; the server is killed
  with SIGKILL mid-import and restarted; every acknowledged write must be there, the vector index
  and the database must agree, and searches must work.

The server runs as a child process on a fresh data directory, with API keys set, so the runs
go through the same code, auth and limits as production.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from core.errors import SkulensError

READY_TIMEOUT_S = 300


@dataclass
class Server:
    data: Path
    port: int
    read_key: str
    write_key: str
    log: Path
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Settings of its own (e.g. a PostgreSQL catalogue), as environment variables."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.env, "SKULENS_API_READ_KEYS": self.read_key, "SKULENS_API_WRITE_KEYS": self.write_key}
        cmd = [sys.executable, "-m", "service.cli", "serve", "--data", str(self.data), "--host", "127.0.0.1",
               "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SkulensError(f"the server exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SkulensError(f"the server was not ready within {READY_TIMEOUT_S} s; see {self.log}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, write: bool = False) -> httpx.Client:
        key = self.write_key if write else self.read_key
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_server(root: Path) -> Server:
    root.mkdir(parents=True, exist_ok=True)
    return Server(root / "data", free_port(), secrets.token_hex(16), secrets.token_hex(16), root / "server.log")


def manifest_for(images: list[tuple[str, Path]]) -> tuple[bytes, list[tuple[str, tuple[str, bytes, str]]]]:
    """A CSV manifest (one SKU per image) and its multipart image parts."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["sku", "image", "title"])
    parts = []
    for sku, path in images:
        name = f"{sku}{path.suffix.lower()}"
        w.writerow([sku, name, sku.replace("-", " ")])
        parts.append(("file", (name, path.read_bytes(), "application/octet-stream")))
    return buf.getvalue().encode(), parts


def submit_import(server: Server, images: list[tuple[str, Path]]) -> dict:
    """Queue a bulk import; returns the job as ``POST /v1/import`` answered it."""
    manifest, parts = manifest_for(images)
    with server.client(write=True) as c:
        res = c.post("/v1/import", files=[("manifest", ("catalog.csv", manifest, "text/csv")), *parts])
        res.raise_for_status()
        return res.json()


def wait_job(server: Server, url: str, timeout_s: float = 3600) -> dict:
    """Poll a job until it has ended; returns it."""
    end = time.monotonic() + timeout_s
    with server.client(write=True) as c:
        while time.monotonic() < end:
            job = c.get(url).json()
            if job["state"] in ("done", "failed", "interrupted"):
                return job
            time.sleep(0.5)
    raise SkulensError(f"the job {url} did not end within {timeout_s:.0f} s")


def import_catalog(server: Server, images: list[tuple[str, Path]]) -> dict:
    """Import and wait for the job to end; returns its final state."""
    job = wait_job(server, submit_import(server, images)["url"])
    if job["state"] != "done":
        raise SkulensError(f"the import job {job['id']} ended {job['state']}: {job['error']}")
    return job


# -- load -------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    searches: int
    clients: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter
    merchant_ops: Counter = field(default_factory=Counter)
    beside_rows: int = 0  # rows of the import job run beside the searches (0: none)
    beside_done: int = 0  # of them, done when the last search answered
    beside_state: str | None = None

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500) + \
            sum(n for s, n in self.merchant_ops.items() if isinstance(s, int) and s >= 500)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def run_load(server: Server, photos: list[Path], searches: int, clients: int, merchant_image: Path,
             beside: list[tuple[str, Path]] | None = None) -> LoadResult:
    """``searches`` photo searches from ``clients`` while a merchant writes; with ``beside``, an import
    job of those images is queued first and runs during the searches."""
    job = submit_import(server, beside) if beside else None
    jobs = iter(range(searches))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    merchant: Counter = Counter()
    done = threading.Event()
    blobs = [(p.name, p.read_bytes()) for p in photos]

    def shopper() -> None:
        with server.client() as c:
            while True:
                with lock:
                    i = next(jobs, None)
                if i is None:
                    return
                name, data = blobs[i % len(blobs)]
                t0 = time.perf_counter()
                try:
                    status = c.post("/v1/search", files={"file": (name, data, "image/jpeg")}, data={"k": "10"}).status_code
                except httpx.HTTPError:
                    status = 599
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(ms)
                    statuses[status] += 1

    def merchant_loop() -> None:
        image = merchant_image.read_bytes()
        n = 0
        with server.client(write=True) as c:
            while not done.is_set():
                sku = f"LOAD-{n:04d}"
                for method, url, kw in (
                    ("PUT", f"/v1/products/{sku}", {"json": {"title": f"load test {n}", "tags": ["load"]}}),
                    ("POST", f"/v1/products/{sku}/images", {"files": [("file", ("m.jpg", image, "image/jpeg"))]}),
                    ("DELETE", f"/v1/products/{sku}", {}),
                ):
                    try:
                        merchant[c.request(method, url, **kw).status_code] += 1
                    except httpx.HTTPError:
                        merchant[599] += 1
                n += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=shopper) for _ in range(clients)]
    m = threading.Thread(target=merchant_loop)
    m.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    done.set()
    m.join()
    result = LoadResult(searches, clients, seconds, latencies, statuses, merchant)
    if job is not None:
        with server.client(write=True) as c:
            now = c.get(job["url"]).json()
        result.beside_rows, result.beside_done, result.beside_state = now["total"], now["done"], now["state"]
    return result


# -- kill -------------------------------------------------------------------------------------
@dataclass
class KillResult:
    acknowledged: int
    missing: list[str]
    imported_after_restart: int
    import_rows: int
    db_vectors: int
    index_vectors: int
    search_status: int
    search_results: int
    kill_after_s: float
    import_done_before_kill: bool
    import_job_state: str | None = None  # the acknowledged import's state after the restart (None: never acknowledged)
    import_job_note: str | None = None

    @property
    def ok(self) -> bool:
        return not self.missing and self.db_vectors == self.index_vectors and self.search_status == 200 \
            and self.search_results > 0 and self.import_job_state in (None, "done")


def run_kill(server: Server, import_images: list[tuple[str, Path]], merchant_image: Path, query: Path,
             kill_after_s: float) -> KillResult:
    """SIGKILL the server ``kill_after_s`` into a bulk import while a merchant writes; restart; check."""
    acknowledged: list[str] = []
    stop = threading.Event()
    image = merchant_image.read_bytes()

    def merchant_loop() -> None:
        n = 0
        with server.client(write=True) as c:
            while not stop.is_set():
                sku = f"ACK-{n:04d}"
                try:
                    if c.put(f"/v1/products/{sku}", json={"title": f"acknowledged {n}"}).status_code != 200:
                        break
                    res = c.post(f"/v1/products/{sku}/images", files=[("file", ("a.jpg", image, "image/jpeg"))])
                    if res.status_code == 201:
                        acknowledged.append(sku)
                except httpx.HTTPError:
                    return  # the server is gone: this write was never acknowledged
                n += 1

    import_done = threading.Event()
    queued: list[dict] = []

    def importer() -> None:
        try:
            queued.append(submit_import(server, import_images))
            wait_job(server, queued[0]["url"])
            import_done.set()
        except httpx.HTTPError:
            pass  # killed mid-import: expected

    threads = [threading.Thread(target=importer), threading.Thread(target=merchant_loop)]
    for t in threads:
        t.start()
    time.sleep(kill_after_s)
    done_before_kill = import_done.is_set()
    server.kill()
    stop.set()
    for t in threads:
        t.join(120)
    server.start()
    job_after = wait_job(server, queued[0]["url"]) if queued else None  # an acknowledged import resumes
    with server.client() as c:
        missing = []
        for sku in acknowledged:
            res = c.get(f"/v1/products/{sku}")
            if res.status_code != 200 or not res.json()["images"]:
                missing.append(sku)
        ready = c.get("/readyz").json()
        imported, offset = 0, 0
        while True:
            page = c.get("/v1/products", params={"limit": 500, "offset": offset}).json()
            imported += sum(1 for p in page["items"] if p["sku"].startswith("IMP-") and p["images"])
            offset += 500
            if offset >= page["total"]:
                break
        res = c.post("/v1/search", files={"file": (query.name, query.read_bytes(), "image/jpeg")})
        n_results = len(res.json().get("results", [])) if res.status_code == 200 else 0
    return KillResult(len(acknowledged), missing, imported, len(import_images), ready["vectors"],
                      ready["index_vectors"], res.status_code, n_results, kill_after_s, done_before_kill,
                      None if job_after is None else job_after["state"], None if job_after is None else job_after["note"])


# -- report -----------------------------------------------------------------------------------
def load_markdown(load: LoadResult | None, kill: KillResult | None, catalogue: int) -> str:
    out = []
    if load is not None:
        codes = ", ".join(f"{s}: {n}" for s, n in sorted(load.statuses.items()))
        ops = ", ".join(f"{s}: {n}" for s, n in sorted(load.merchant_ops.items()))
        out += [
            f"Load: {load.searches} photo searches (`POST /v1/search`, k=10) from {load.clients} concurrent clients, "
            f"while one merchant client looped PUT product -> POST image -> DELETE product; catalogue of "
            f"{catalogue} products; server with its default 2 inference threads.\n",
            "| searches | clients | wall s | throughput /s | p50 ms | p95 ms | p99 ms | 5xx |",
            "|---|---|---|---|---|---|---|---|",
            f"| {load.searches} | {load.clients} | {load.seconds:.0f} | {load.searches / load.seconds:.2f} | "
            f"{load.percentile(50):.0f} | {load.percentile(95):.0f} | {load.percentile(99):.0f} | "
            f"{load.server_errors} |",
            "",
            f"Search status codes: {codes}. Merchant requests by status: {ops}.",
            "",
        ]
        if load.beside_rows:
            out += [f"An import job of {load.beside_rows} other images was queued just before the searches and ran "
                    f"beside them: {load.beside_done} of its rows were done when the last search answered (job "
                    f"{load.beside_state} then).", ""]
    if kill is not None:
        out += [
            f"Kill: SIGKILL {kill.kill_after_s:g} s into a bulk import of {kill.import_rows} images while a "
            "merchant client made writes one by one; then restart.\n",
            "| acknowledged writes | missing after restart | import job after restart | imported | DB vectors "
            "| index vectors | search after restart |",
            "|---|---|---|---|---|---|---|",
            f"| {kill.acknowledged} | {len(kill.missing)} | {kill.import_job_state or 'never acknowledged'} "
            f"({kill.import_job_note or 'no note'}) | {kill.imported_after_restart} of {kill.import_rows} | "
            f"{kill.db_vectors} | {kill.index_vectors} | {kill.search_status}, {kill.search_results} results |",
            "",
            ("The import had already finished when the server was killed: use a later --kill-after or a larger "
             "catalogue.\n" if kill.import_done_before_kill else ""),
            "Result: " + ("every acknowledged write survived, the acknowledged import finished after the restart; index and database agree; search works."
                          if kill.ok else "**FAILED**: " + ", ".join(kill.missing[:5])),
        ]
    return "\n".join(out) + "\n"
