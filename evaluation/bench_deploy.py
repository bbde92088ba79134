"""``skulens bench-deploy``: skulens past one machine, measured with real processes on loopback
against a PostgreSQL server and a Milvus server the caller runs.

- **Replicas**: two ``skulens serve`` processes on one fresh database and collection; a product
  written through A (``POST /v1/products`` with a photo), then searched for by its one-off title
  word through B until B answers with it: the time from A's answer to B's first answer with it.
- **Workers**: one import of real photos (one product each) queued on a fresh database, run by 1
  then 2 ``skulens worker`` processes (models loaded before the clock starts): images/s.
- **Migrate**: data directories moved into fresh databases and collections (``skulens migrate``):
  every table's rows before and after, and the time.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from core.errors import SkulensError
from core.settings import IngestSettings, Settings

log = logging.getLogger(__name__)


@dataclass
class Servers:
    """Where the caller's servers are: a PostgreSQL URL whose user may create databases, a Milvus URI."""

    postgres: str
    milvus: str
    root: Path
    tag: str = field(default_factory=lambda: time.strftime("%m%d%H%M%S"))

    def fresh(self, name: str) -> dict[str, str]:
        """A new database and collection (and file root) named ``name``: their settings as environment."""
        import psycopg

        name = f"bench_{name}_{self.tag}"
        with psycopg.connect(self.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0')
        url = self.postgres.rsplit("/", 1)[0] + "/" + name
        return {"SKULENS_STORE__URL": url, "SKULENS_INDEX__URI": self.milvus, "SKULENS_INDEX__COLLECTION": name,
                "SKULENS_FILES__ROOT": str(self.root / name / "files")}


def settings_of(env: dict[str, str], data: Path) -> Settings:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return Settings(data=data)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- replicas ---------------------------------------------------------------------------------------
@dataclass
class Visibility:
    writes: int
    write_ms: list[float]
    visible_ms: list[float]


def replicas(servers: Servers, photos: list[Path], writes: int) -> Visibility:
    from evaluation.loadtest import new_server

    env = servers.fresh("replicas")
    a, b = (new_server(servers.root / f"replica-{x}-{servers.tag}") for x in "ab")
    for s in (a, b):
        s.env = env
        s.start()
    out = Visibility(writes, [], [])
    try:
        with a.client(write=True) as ca, b.client() as cb:
            for i in range(writes):
                word, photo = f"zvq{i:04d}", photos[i % len(photos)]
                product = {"sku": f"VIS-{i:04d}", "title": f"{word} visibility probe"}
                t0 = time.perf_counter()
                res = ca.post("/v1/products", data={"product": json.dumps(product)},
                              files=[("file", (photo.name, photo.read_bytes(), "image/jpeg"))])
                res.raise_for_status()
                t1 = time.perf_counter()
                while True:
                    found = cb.post("/v1/search/text", json={"text": word, "k": 1}).json()
                    if [m["sku"] for m in found["results"]] == [product["sku"]]:
                        break
                    if time.perf_counter() - t1 > 30:
                        raise SkulensError(f"{product['sku']} written through A was not found through B in 30 s")
                    time.sleep(0.005)
                out.write_ms.append((t1 - t0) * 1000)
                out.visible_ms.append((time.perf_counter() - t1) * 1000)
    finally:
        a.stop()
        b.stop()
    return out


# -- workers ----------------------------------------------------------------------------------------
@dataclass
class WorkerRun:
    workers: int
    threads: int | None
    images: int
    seconds: float
    state: str
    pinned: bool = False

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def start_worker(env: dict[str, str], data: Path, name: str, threads: int | None, core: int | None) -> subprocess.Popen:
    """A worker process; with ``core``, held to that CPU core (as one machine of its own would be)."""
    extra = {} if threads is None else {"SKULENS_MODELS__THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
                                        "SKULENS_INGEST__WORKERS": "1", "SKULENS_OCR__PARALLEL": "false"}
    data.mkdir(parents=True, exist_ok=True)

    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})

    return subprocess.Popen([sys.executable, "-m", "service.cli", "-v", "--data", str(data), "worker", "--name", name],
                            env={**os.environ, **env, **extra}, stdout=subprocess.DEVNULL,
                            stderr=open(data / "worker.log", "wb"), preexec_fn=pin)


def wait_ready(proc: subprocess.Popen, log_file: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while "takes import parts" not in log_file.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SkulensError(f"the worker did not start; see {log_file}")
        time.sleep(0.5)


def workers(servers: Servers, photos: list[Path], n: int, threads: int | None, part_rows: int,
            pin: bool = False) -> WorkerRun:
    """``pin``: worker k runs on core k only (one core per worker, as one machine per worker)."""
    from pipeline.imports import KIND, prepare_import
    from pipeline.job_queue import QueuedJobs
    from pipeline.store_postgres import PostgresStore

    env = servers.fresh(f"workers{n}t{threads or 0}{'p' if pin else ''}")
    folder = servers.root / f"workers{n}t{threads or 0}{'p' if pin else ''}-{servers.tag}"
    cores = sorted(os.sched_getaffinity(0))
    procs = [start_worker(env, folder / f"w{k}", f"w{k}", threads, cores[k % len(cores)] if pin else None)
             for k in range(n)]
    settings = settings_of(env, folder / "api")
    settings = settings.model_copy(update={"ingest": IngestSettings(part_rows=part_rows)})
    store = PostgresStore(settings.store.url or "", settings.store)
    jobs = QueuedJobs(settings, store)
    try:
        for k, p in enumerate(procs):
            wait_ready(p, folder / f"w{k}" / "worker.log")
        manifest = "sku,image,title\n" + "".join(f"P{i:05d},{p.name},product {i}\n" for i, p in enumerate(photos))
        uploads = {p.name: p.read_bytes() for p in photos}
        t0 = time.perf_counter()
        job = jobs.submit(KIND, lambda f: prepare_import(f, manifest.encode(), uploads))
        while not (final := jobs.store.get(job.id)).finished:
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(120)
        jobs.close()
        store.close()
    return WorkerRun(n, threads, len(photos), seconds, final.state, pin)


# -- migrate ----------------------------------------------------------------------------------------
@dataclass
class MigrateRun:
    data: Path
    seconds: float
    counts: dict[str, tuple[int, int]]
    index: tuple[int, int] | None
    complete: bool


def migrations(servers: Servers, folders: list[Path]) -> list[MigrateRun]:
    from pipeline.migrate import migrate

    runs = []
    for n, folder in enumerate(folders):
        env = servers.fresh(f"migrate{n}")
        target = settings_of({k: v for k, v in env.items() if k != "SKULENS_FILES__ROOT"}, folder)
        t0 = time.perf_counter()
        report = migrate(Settings(data=folder), target)
        runs.append(MigrateRun(folder, time.perf_counter() - t0, report.counts, report.index, report.complete))
    return runs


# -- quality ----------------------------------------------------------------------------------------
@dataclass
class Parity:
    """One protocol's ``skulens eval --json`` reports on the embedded default and on PostgreSQL + Milvus."""

    protocol: str
    split: str
    queries: int
    embedded: dict[str, float]
    distributed: dict[str, float]
    same_rank: int
    same_top: int


def _report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SkulensError(f"cannot read the eval report {path}: {exc}") from exc
    missing = {"protocol", "split", "queries", "metrics", "per_query"} - set(report if isinstance(report, dict) else ())
    if missing:
        raise SkulensError(f"{path} is not a `skulens eval --json` report of G1 or G2 (no {', '.join(sorted(missing))})")
    return report


def parity(embedded: Path, distributed: Path) -> Parity:
    """Compare two reports of one protocol, query by query (the SKU's rank and the top three)."""
    a, b = (_report(Path(p)) for p in (embedded, distributed))
    if (a["protocol"], a["split"], a["queries"]) != (b["protocol"], b["split"], b["queries"]):
        raise SkulensError(f"{embedded} and {distributed} are not reports of the same protocol, split and queries")
    qa, qb = ({q["path"]: q for q in r["per_query"]} for r in (a, b))
    if set(qa) != set(qb):
        raise SkulensError(f"{embedded} and {distributed} rank different photos")
    return Parity(a["protocol"], a["split"], a["queries"], a["metrics"], b["metrics"],
                  sum(qa[k].get("rank") == qb[k].get("rank") for k in qa),
                  sum(qa[k].get("top") == qb[k].get("top") for k in qa))


# -- the section ------------------------------------------------------------------------------------
def parity_markdown(quality: Sequence[Parity]) -> str:
    out = ["The same protocol, embedder and weights on the embedded default (SQLite + FAISS) and on PostgreSQL + "
           "Milvus (`skulens eval --json` on each, the second on a fresh database and collection; commands in "
           "docs/evaluation.md), compared query by query.", "",
           "| protocol | split | queries | R@1 embedded / distributed | R@5 | R@10 | mAP | R@1 difference | "
           "same rank of the right SKU | same top 3 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for q in quality:
        e, d = q.embedded, q.distributed

        def both(key: str) -> str:
            return f"{e[key]:.3f} / {d[key]:.3f}"
        out.append(f"| {q.protocol} | {q.split} | {q.queries} | {both('recall@1')} | {both('recall@5')} | "
                   f"{both('recall@10')} | {both('map')} | {abs(e['recall@1'] - d['recall@1']):.3f} | "
                   f"{q.same_rank} of {q.queries} | {q.same_top} of {q.queries} |")
    return "\n".join(out) + "\n"


def markdown(vis: Visibility | None, runs: list[WorkerRun], moved: list[MigrateRun]) -> str:
    out = []
    if vis is not None:
        v, w = np.asarray(vis.visible_ms), np.asarray(vis.write_ms)
        out += ["### A write through replica A, seen through replica B", "",
                f"{vis.writes} products written through A (`POST /v1/products`, one photo each), each then searched for "
                "through B by its title word until B answers with it (B polls every 5 ms; its follower looks for "
                "writes every `store.follow_s` = 0.25 s).", "",
                "| writes | write through A p50 / p95 ms | seen through B p50 / p95 / max ms |", "|---|---|---|",
                f"| {vis.writes} | {np.percentile(w, 50):.0f} / {np.percentile(w, 95):.0f} | "
                f"{np.percentile(v, 50):.0f} / {np.percentile(v, 95):.0f} / {v.max():.0f} |", ""]
    if runs:
        base = {(r.threads, r.pinned): r.rate for r in runs if r.workers == 1}
        out += ["### Ingest workers", "",
                "One import of real photos (one product each), queued on a fresh database and collection, run by "
                "`skulens worker` processes on this machine; the clock runs from the submission to the job's end, "
                "the workers' models loaded before. *threads 1*: each worker's models on one CPU thread "
                "(`SKULENS_MODELS__THREADS=1`: torch, OpenCV and every onnxruntime session) analysing one image at a "
                "time (`SKULENS_INGEST__WORKERS=1`, OCR not parallel), as a worker on a one-core machine; *default*: "
                "each worker as configured (two images at a time, each onnxruntime session on half the cores). "
                "*one core each*: worker k held to CPU core k (sched_setaffinity), as one machine per worker would be; otherwise the workers share both cores.", "",
                "| workers | threads | cores | images | seconds | images/s | vs one worker | job |",
                "|---|---|---|---|---|---|---|---|"]
        for r in runs:
            one = base.get((r.threads, r.pinned))
            ratio = f"{r.rate / one:.2f}x" if one else "-"
            out.append(f"| {r.workers} | {r.threads or 'default'} | {'one core each' if r.pinned else 'shared'} | "
                       f"{r.images} | {r.seconds:.1f} | {r.rate:.2f} | {ratio} | {r.state} |")
        out.append("")
    if moved:
        out += ["### skulens migrate", "", "| data directory | seconds | products | images | vectors | keypoints | "
                "cached analyses | meta | Milvus vectors | every row accounted for |", "|---|---|---|---|---|---|---|---|---|---|"]
        for m in moved:
            c = m.counts

            def pair(key: str) -> str:
                return f"{c[key][0]:,} -> {c[key][1]:,}"
            milvus = f"{m.index[0]:,} -> {m.index[1]:,}" if m.index else "-"
            out.append(f"| `{m.data}` | {m.seconds:.1f} | {pair('products')} | {pair('images')} | {pair('vectors')} | "
                       f"{pair('keypoints')} | {pair('features')} | {pair('meta')} | {milvus} | "
                       f"{'yes' if m.complete else 'NO'} |")
        out.append("")
    return "\n".join(out)
