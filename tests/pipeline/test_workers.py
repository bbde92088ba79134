"""Imports queued on a real PostgreSQL catalogue and run by real `skulens worker` processes (vectors
on a real Milvus Lite server, image files in a shared folder): two workers share one import, and a
worker killed mid-part leaves its part to another; nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.settings import IndexSettings, IngestSettings, Settings, StoreSettings
from pipeline.imports import KIND, prepare_import
from pipeline.job_queue import QueuedJobs
from pipeline.store import open_store
from tests.conftest import CATALOGUE, make_catalogue, new_collection

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.postgres, pytest.mark.milvus]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def deployment(tmp_path, postgres_url, milvus_server) -> Settings:
    return Settings(data=tmp_path / "api", store=StoreSettings(url=postgres_url),
                    index=IndexSettings(uri=milvus_server.uri, collection=new_collection()),
                    files={"root": tmp_path / "shared"}, ingest=IngestSettings(part_rows=1, stalled_s=3))


def start_worker(settings: Settings, folder: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "SKULENS_STORE__URL": settings.store.url or "", "SKULENS_INDEX__URI": settings.index.uri or "",
           "SKULENS_INDEX__COLLECTION": settings.index.collection, "SKULENS_FILES__ROOT": str(settings.files.root),
           "SKULENS_INGEST__STALLED_S": "3", "SKULENS_INGEST__PROGRESS_EVERY_S": "0"}
    return subprocess.Popen([sys.executable, "-m", "service.cli", "--data", str(folder), "worker", "--name", name],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(folder.parent / f"{name}.log", "wb"))


def submit(settings: Settings, catalogue: Path):
    store = open_store(settings)
    jobs = QueuedJobs(settings, store)  # what an API replica holds
    manifest = "sku,image,title\n" + "".join(f"{sku},{sku}.jpg,{sku.title()}\n" for sku in CATALOGUE)
    uploads = {f"{sku}.jpg": (catalogue / f"{sku}.jpg").read_bytes() for sku in CATALOGUE}
    job = jobs.submit(KIND, lambda folder: prepare_import(folder, manifest.encode(), uploads))
    return store, jobs, job


def wait_for(check, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def stop(*workers: subprocess.Popen) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(60)
        except subprocess.TimeoutExpired:
            w.kill()


def test_two_workers_share_an_import_part_by_part(deployment, tmp_path):
    store, jobs, job = submit(deployment, make_catalogue(tmp_path / "catalog"))
    assert jobs.store.get(job.id).state == "queued" and (deployment.files.root / "jobs" / job.id).is_dir()
    workers = [start_worker(deployment, tmp_path / f"w{n}", f"w{n}") for n in (1, 2)]
    try:
        done = wait_for(lambda: jobs.store.get(job.id).finished)
        final = jobs.store.get(job.id)
        assert done and final.state == "done", (final, (tmp_path / "w1.log").read_text()[-3000:])
        assert final.done == final.total == 4 and final.counts == {"indexed": 4, "unchanged": 0, "skipped": 0}
        ran = {r[0] for r in store._rows("SELECT worker FROM job_parts WHERE job_id = ?", (job.id,))}
        assert ran == {"w1", "w2"}  # both took parts
        assert store.count()[:2] == (4, 4)
        assert wait_for(lambda: not (deployment.files.root / "jobs" / job.id).exists(), 10)  # input removed
    finally:
        stop(*workers)
        jobs.close()
        store.close()


def test_a_worker_killed_mid_part_leaves_it_to_another(deployment, tmp_path):
    store, jobs, job = submit(deployment, make_catalogue(tmp_path / "catalog"))
    first = start_worker(deployment, tmp_path / "w1", "w1")
    second = None
    try:
        running = wait_for(lambda: store._rows("SELECT start FROM job_parts WHERE job_id = ? AND state = 'running'",
                                               (job.id,)))
        assert running, (tmp_path / "w1.log").read_text()[-3000:]
        first.kill()  # SIGKILL mid-part: no goodbye, no heartbeat
        first.wait()
        second = start_worker(deployment, tmp_path / "w2", "w2")
        assert wait_for(lambda: jobs.store.get(job.id).finished), (tmp_path / "w2.log").read_text()[-3000:]
        final = jobs.store.get(job.id)
        assert final.state == "done" and final.done == final.total == 4
        assert final.note and "run again" in final.note
        assert store.count()[:2] == (4, 4)
    finally:
        stop(first, *([second] if second else []))
        jobs.close()
        store.close()
