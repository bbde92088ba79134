"""``skulens worker``: runs the import parts queued on a PostgreSQL catalogue (:mod:`pipeline.job_queue`).

One process runs one part at a time (the analysis stages keep the cores busy); run more processes,
on this machine or others, to import faster.  Each sends procrastinate heartbeats; every worker
queues again the tasks of a worker whose heartbeats stopped for ``ingest.stalled_s`` seconds (one
killed mid-part), so another redoes that part.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
import socket
import time

from core.errors import SkulensError, StorageError
from core.settings import Settings
from pipeline.analysis import Stages
from pipeline.engine import Engine
from pipeline.files import FileStore
from pipeline.imports import run_part
from pipeline.job_queue import QUEUE, TASK, PgJobStore, ensure_queue_schema, make_app
from pipeline.jobs import Progress
from pipeline.store_postgres import PostgresStore

log = logging.getLogger(__name__)


def run_worker(settings: Settings, stages: Stages, name: str | None = None) -> None:
    """Run import parts until stopped (SIGINT or SIGTERM: the part in hand finishes first)."""
    if not settings.store.url:
        raise StorageError("a worker takes its jobs from a PostgreSQL catalogue: set SKULENS_STORE__URL")
    name = name or f"{socket.gethostname()}:{os.getpid()}"
    engine = Engine(settings, stages)
    try:
        store = engine.store
        assert isinstance(store, PostgresStore)
        jobs = PgJobStore(store)
        root = FileStore.of(settings).root / "jobs"
        every = settings.ingest.progress_every_s

        def import_part(job_id: str, start: int) -> None:
            stop = jobs.part_stop(job_id, start)
            jobs.part_started(job_id, start, name)
            last = [0.0]

            def report(progress: Progress) -> None:
                if time.monotonic() - last[0] >= every:
                    last[0] = time.monotonic()
                    jobs.part_progress(job_id, start, progress)

            try:
                engine.catch_up()  # what other workers wrote since: their unchanged rows are not redone
                final = run_part(engine, root / job_id, start, stop, report)
            except SkulensError as exc:
                done = jobs.part_ended(job_id, start, None, f"rows {start}-{stop}: {exc}")
                log.warning("job %s rows %d-%d failed: %s", job_id, start, stop, exc)
            except Exception as exc:  # a bug: the part says so, rather than staying "running" for ever
                done = jobs.part_ended(job_id, start, None, f"rows {start}-{stop}: internal error: {exc}")
                log.exception("job %s rows %d-%d failed", job_id, start, stop)
            else:
                done = jobs.part_ended(job_id, start, final, None)
                log.info("job %s rows %d-%d done: %s", job_id, start, stop, final.counts)
            if done:
                shutil.rmtree(root / job_id, ignore_errors=True)

        app = make_app(settings.store.url, import_part)
        ensure_queue_schema(store, app)
        stages.warmup()  # models in before the first part: a part's time is its rows' 
        log.info("worker %s takes import parts from %s", name, store.path)
        asyncio.run(_serve(app, settings.ingest.stalled_s, name))
    finally:
        engine.close()


async def _serve(app, stalled_s: float, name: str) -> None:
    async with app.open_async():
        watcher = asyncio.create_task(_requeue_stalled(app, stalled_s))
        try:
            await app.run_worker_async(queues=[QUEUE], concurrency=1, name=name, wait=True,
                                       update_heartbeat_interval=max(stalled_s / 4, 0.5),
                                       stalled_worker_timeout=stalled_s, fetch_job_polling_interval=1.0)
        finally:
            watcher.cancel()


async def _requeue_stalled(app, stalled_s: float) -> None:
    """Queue again the tasks of workers whose heartbeats stopped (killed mid-part)."""
    while True:
        await asyncio.sleep(max(stalled_s / 2, 0.5))
        try:
            for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_s, task_name=TASK):
                log.warning("task %s (%s) stalled with its worker: queued again", job.id, job.task_kwargs)
                await app.job_manager.retry_job(job, retry_at=dt.datetime.now(dt.timezone.utc))
            await app.job_manager.prune_stalled_workers(seconds_since_heartbeat=stalled_s)
        except Exception:  # the database away for a moment: the next round tries again
            log.exception("cannot look for stalled import parts")
