"""Imports as jobs on a queue, for a catalogue on PostgreSQL: run by ``skulens worker`` processes on
any number of machines, not by the API process that took them.

The queue is procrastinate's (PostgreSQL-backed, MIT licence), in the catalogue's database.  An
import is split into parts of ``ingest.part_rows`` manifest rows; each part is one queued task, so
several workers share one import.  A job and its parts are rows of ``jobs`` and ``job_parts`` in the
same database, so any API replica answers ``GET /v1/jobs/{id}``.  The job's input (manifest and
images) is written under the file store's root (``jobs/<id>/``), the folder every node mounts.

Nothing acknowledged is lost: the job, its parts and its input are committed before the import
answers; a worker killed mid-part stops sending heartbeats, and every worker looks for such stalled
tasks (``ingest.stalled_s``) and queues them again, so another worker redoes the part (the rows it
had written come back as unchanged: imports are incremental).  The worker that finishes a job's last
part removes its input folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from core.errors import NotFoundError
from core.settings import Settings
from pipeline.jobs import KEEP_ERRORS, Job, Progress, RowError
from pipeline.store_postgres import PostgresStore

log = logging.getLogger(__name__)

TASK = "skulens.import_part"
QUEUE = "skulens-imports"
_SCHEMA_LOCK = 7_261_930_502


def make_app(url: str, handler: Callable[[str, int], None] | None = None):
    """The procrastinate app on the catalogue's database, with the import task registered (``handler``
    runs it: a worker's; without one, the app only queues)."""
    try:
        import procrastinate
    except ImportError as exc:
        from core.errors import MissingDependencyError

        raise MissingDependencyError("import workers need procrastinate: pip install 'skulens[distributed]'") from exc
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    app.task(name=TASK, queue=QUEUE, pass_context=False)(handler or _not_in_this_process)
    return app


def _not_in_this_process(job_id: str, start: int) -> None:
    raise RuntimeError("imports run in `skulens worker`, which registers its own handler")


def ensure_queue_schema(store: PostgresStore, app) -> None:
    """procrastinate's tables, made once (under an advisory lock: processes may start together)."""
    with store._transaction() as tx:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
        if tx.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is None:
            log.info("%s: creating the job queue's tables (procrastinate)", store.path)
            from importlib.resources import files

            tx.execute(files("procrastinate.sql").joinpath("schema.sql").read_text())


class PgJobStore:
    """Jobs and their parts in the catalogue's PostgreSQL database, read as :class:`Job`."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    def create(self, kind: str, total: int, parts: list[tuple[int, int]]) -> Job:
        job = Job(uuid.uuid4().hex[:16], kind, "queued", time.time(), total)
        with self.store._transaction() as tx:
            tx.execute("INSERT INTO jobs(id, kind, created_at, total) VALUES (?,?,?,?)",
                       (job.id, kind, job.created_at, total))
            for start, stop in parts:
                tx.execute("INSERT INTO job_parts(job_id, start, stop) VALUES (?,?,?)", (job.id, start, stop))
        return job

    def part_stop(self, job_id: str, start: int) -> int:
        row = self.store._row("SELECT stop FROM job_parts WHERE job_id = ? AND start = ?", (job_id, start))
        if row is None:
            raise NotFoundError(f"job {job_id!r} has no part at row {start}")
        return int(row[0])

    def part_started(self, job_id: str, start: int, worker: str) -> None:
        with self.store._transaction() as tx:
            tx.execute("UPDATE job_parts SET state = 'running', started_at = ?, worker = ?, done = 0,"
                       " attempts = attempts + 1 WHERE job_id = ? AND start = ?", (time.time(), worker, job_id, start))

    def part_progress(self, job_id: str, start: int, progress: Progress) -> None:
        with self.store._transaction() as tx:
            tx.execute("UPDATE job_parts SET done = ?, counts = ?, errors = ? WHERE job_id = ? AND start = ?",
                       (progress.done, json.dumps(progress.counts), _errors_json(progress.errors), job_id, start))

    def part_ended(self, job_id: str, start: int, progress: Progress | None, error: str | None) -> bool:
        """Record a part's end; True when it was the job's last one (its input may go)."""
        with self.store._transaction() as tx:
            tx.execute("SELECT id FROM jobs WHERE id = ? FOR UPDATE", (job_id,))  # parts end one at a time
            if progress is not None:
                tx.execute("UPDATE job_parts SET state = 'done', finished_at = ?, done = ?, counts = ?, errors = ?"
                           " WHERE job_id = ? AND start = ?", (time.time(), progress.done, json.dumps(progress.counts),
                                                               _errors_json(progress.errors), job_id, start))
            else:
                tx.execute("UPDATE job_parts SET state = 'failed', finished_at = ?, error = ? WHERE job_id = ? AND "
                           "start = ?", (time.time(), error, job_id, start))
            left = tx.execute("SELECT COUNT(*) FROM job_parts WHERE job_id = ? AND state NOT IN ('done', 'failed')",
                              (job_id,)).fetchone()[0]
        return int(left) == 0

    def get(self, job_id: str) -> Job:
        jobs = self._jobs("WHERE id = ?", (job_id,))
        if not jobs:
            raise NotFoundError(f"no job {job_id!r}")
        return jobs[0]

    def recent(self, limit: int = 20) -> list[Job]:
        return self._jobs("ORDER BY created_at DESC LIMIT ?", (limit,))

    def _jobs(self, tail: str, args: tuple) -> list[Job]:
        rows = self.store._rows(f"SELECT id, kind, created_at, total FROM jobs {tail}", args)
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        parts: dict[str, list[tuple]] = {}
        for p in self.store._rows("SELECT job_id, state, done, counts, errors, started_at, finished_at, error, attempts"
                                  f" FROM job_parts WHERE job_id IN ({marks}) ORDER BY start", [r[0] for r in rows]):
            parts.setdefault(p[0], []).append(p[1:])
        return [_job(r, parts.get(r[0], [])) for r in rows]


def _errors_json(errors: list[RowError]) -> str:
    return json.dumps([[e.item, e.reason] for e in errors[:KEEP_ERRORS]])


def _job(row: tuple, parts: list[tuple]) -> Job:
    """A job as its parts add up: done when all are, failed when one failed, running once one began."""
    job_id, kind, created_at, total = row
    states = [p[0] for p in parts]
    counts: Counter[str] = Counter()
    errors: list[RowError] = []
    for p in parts:
        counts.update(json.loads(p[2]))
        errors += [RowError(item, reason) for item, reason in json.loads(p[3])]
    failed = [p[6] for p in parts if p[0] == "failed"]
    if all(s == "done" for s in states):
        state = "done"
    elif failed and all(s in ("done", "failed") for s in states):
        state = "failed"
    else:
        state = "running" if any(s != "queued" for s in states) else "queued"
    starts = [p[4] for p in parts if p[4] is not None]
    retried = sum(max(p[7] - 1, 0) for p in parts)
    return Job(job_id, kind, state, created_at, total, sum(p[1] for p in parts), dict(counts),
               tuple(errors[:KEEP_ERRORS]), min(starts) if starts else None,
               max(p[5] for p in parts) if state in ("done", "failed") and parts else None,
               "; ".join(failed) or None,
               f"{retried} part(s) run again after a worker stopped" if retried else None)


class QueuedJobs:
    """What the service's import routes use (as :class:`pipeline.jobs.JobRunner` for the embedded
    catalogue): jobs queued for ``skulens worker`` processes."""

    def __init__(self, settings: Settings, store: PostgresStore) -> None:
        from pipeline.files import FileStore

        self.settings = settings
        self.root = FileStore.of(settings).root / "jobs"
        self.store = PgJobStore(store)
        self.app = make_app(settings.store.url or "")
        ensure_queue_schema(store, self.app)
        self.app.open()

    def submit(self, kind: str, prepare: Callable[[Path], int]) -> Job:
        """Write the job's input under the shared root, record it and its parts, and queue the parts."""
        from pipeline.imports import part_bounds

        staging = self.root / f".new-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            total = prepare(staging)
            parts = part_bounds(staging, self.settings.ingest.part_rows)
            job = self.store.create(kind, total, parts)
            staging.rename(self.root / job.id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        task = self.app.tasks[TASK]
        for start, _ in parts:
            task.defer(job_id=job.id, start=start)
        log.info("job %s (%s, %d rows in %d parts) queued for the workers", job.id, kind, total, len(parts))
        return job

    def resume(self) -> list[Job]:
        return []  # the workers keep the queue

    def close(self, timeout: float | None = None) -> None:
        self.app.close()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(j.finished for j in self.store.recent(100)):
                return True
            time.sleep(0.1)
        return False
