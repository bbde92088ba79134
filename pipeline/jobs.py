"""Long catalogue work as jobs: recorded in ``<data>/jobs.sqlite3``, run one at a time by a worker thread.

A job is acknowledged once its input is on disk (``<data>/jobs/<id>/``) and its row is committed.
Nothing acknowledged is lost on a restart: a job that was queued or running when the process
stopped runs again when the next one starts (an import is incremental, so the rows it had done
come back as unchanged), and its ``note`` says so.  A job whose input has gone is marked
``interrupted``.  The input folder is removed when the job ends; its row and outcome stay.
"""

from __future__ import annotations

import json
import logging
import queue
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import NotFoundError, SkulensError, StorageError
from pipeline.database import Database

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed", "interrupted")
KEEP_ERRORS = 1000
"""At most this many per-row errors are kept on a job (the count says how many there were)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL,
    started_at REAL, finished_at REAL, total INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0,
    counts TEXT NOT NULL DEFAULT '{}', errors TEXT NOT NULL DEFAULT '[]', error TEXT, note TEXT);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
"""


@dataclass(frozen=True)
class RowError:
    item: str
    reason: str


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: str
    created_at: float
    total: int
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: tuple[RowError, ...] = ()
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"expected a job state in {STATES}, got {self.state!r}")

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "interrupted")

    @property
    def rate(self) -> float | None:
        """Rows per second so far (None before the first row)."""
        if self.started_at is None or self.done == 0:
            return None
        return self.done / max((self.finished_at or time.time()) - self.started_at, 1e-3)

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return None if rate is None or self.finished else max(self.total - self.done, 0) / rate


@dataclass
class Progress:
    """What a running job reports: rows done, counts by outcome and the rows that failed."""

    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)


class JobStopped(SkulensError):
    """The process is shutting down: the job stops between rows and runs again on the next start."""


class JobStore(Database):
    """The ``jobs`` table in its own SQLite file beside the catalogue."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._conn = self._open(self.path)
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open the job database {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._init_readers()

    def create(self, kind: str, total: int) -> Job:
        job = Job(uuid.uuid4().hex[:16], kind, "queued", time.time(), total)
        with self._lock:
            self._conn.execute("INSERT INTO jobs(id, kind, state, created_at, total) VALUES (?,?,?,?,?)",
                               (job.id, kind, job.state, job.created_at, total))
        return job

    def update(self, job_id: str, **fields: object) -> None:
        """Set columns of one job (``counts`` and ``errors`` as Python values)."""
        if "errors" in fields:
            errors: list[RowError] = fields["errors"]  # type: ignore[assignment]
            fields["errors"] = json.dumps([[e.item, e.reason] for e in errors[:KEEP_ERRORS]])
        if "counts" in fields:
            fields["counts"] = json.dumps(fields["counts"])
        names = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._conn.execute(f"UPDATE jobs SET {names} WHERE id = ?", (*fields.values(), job_id))

    def get(self, job_id: str) -> Job:
        row = self._read().execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no job {job_id!r}")
        return _job(row)

    def recent(self, limit: int = 20) -> list[Job]:
        rows = self._read().execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_job(r) for r in rows.fetchall()]

    def unfinished(self) -> list[Job]:
        rows = self._read().execute(f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('queued', 'running') "
                                    "ORDER BY created_at")
        return [_job(r) for r in rows.fetchall()]


_COLUMNS = "id, kind, state, created_at, total, done, counts, errors, started_at, finished_at, error, note"


def _job(row: tuple) -> Job:
    (job_id, kind, state, created_at, total, done, counts, errors, started_at, finished_at, error, note) = row
    return Job(job_id, kind, state, created_at, total, done, json.loads(counts),
               tuple(RowError(item, reason) for item, reason in json.loads(errors)),
               started_at, finished_at, error, note)


Handler = Callable[[Path, Callable[[Progress], None]], Progress]
"""Runs a job from its input folder, calling back with its progress between rows (which may raise
:class:`JobStopped`); returns the final progress."""


class JobRunner:
    """Runs the jobs of one data directory in submission order, one at a time, in a worker thread."""

    def __init__(self, store: JobStore, root: Path, handlers: dict[str, Handler],
                 report_every_s: float = 1.0) -> None:
        self.store = store
        self.root = Path(root)
        self.handlers = handlers
        self.report_every_s = report_every_s
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="skulens-jobs", daemon=True)
        self._thread.start()

    def submit(self, kind: str, prepare: Callable[[Path], int]) -> Job:
        """Make a job: ``prepare(folder)`` writes its input into a new folder and returns its row count
        (an error there removes the folder and no job is made)."""
        if kind not in self.handlers:
            raise ValueError(f"no handler for jobs of kind {kind!r}")
        staging = self.root / f".new-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            total = prepare(staging)
            job = self.store.create(kind, total)
            staging.rename(self.root / job.id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._queue.put(job.id)
        log.info("job %s (%s, %d rows) queued", job.id, kind, total)
        return job

    def resume(self) -> list[Job]:
        """Queue again the jobs a previous process left unfinished; returns them."""
        resumed = []
        for job in self.store.unfinished():
            if (self.root / job.id).is_dir():
                note = "resumed after a restart" + (f" (at row {job.done} of {job.total})" if job.done else "")
                self.store.update(job.id, state="queued", note=note)
                self._queue.put(job.id)
                resumed.append(job)
                log.info("job %s: %s", job.id, note)
            else:
                self.store.update(job.id, state="interrupted", finished_at=time.time(),
                                  error="cut short by a restart, and its input is gone: submit it again")
        for stale in self.root.glob(".new-*"):  # a submission cut short before it was acknowledged
            shutil.rmtree(stale, ignore_errors=True)
        return resumed

    def close(self, timeout: float | None = None) -> None:
        """Stop after the current row; an unfinished job runs again on the next start."""
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every queued job has ended (for tests and the CLI)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.05)
        return False

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            try:
                if job_id is None or self._stop.is_set():
                    return
                self._run(self.store.get(job_id))
            except Exception:  # a broken job row must not stop the jobs after it
                log.exception("job %s could not run", job_id)
            finally:
                self._queue.task_done()

    def _run(self, job: Job) -> None:
        folder = self.root / job.id
        started = time.time()
        self.store.update(job.id, state="running", started_at=started, done=0)
        last = [0.0]

        def report(progress: Progress) -> None:
            if self._stop.is_set():
                raise JobStopped("shutting down")
            if time.monotonic() - last[0] >= self.report_every_s:
                last[0] = time.monotonic()
                self.store.update(job.id, done=progress.done, counts=progress.counts, errors=progress.errors)

        try:
            final = self.handlers[job.kind](folder, report)
        except JobStopped:
            log.info("job %s stopped by shutdown; it runs again on the next start", job.id)
            return
        except SkulensError as exc:
            self.store.update(job.id, state="failed", finished_at=time.time(), error=str(exc))
            log.warning("job %s failed: %s", job.id, exc)
        except Exception as exc:
            self.store.update(job.id, state="failed", finished_at=time.time(), error=f"internal error: {exc}")
            log.exception("job %s failed", job.id)
        else:
            self.store.update(job.id, state="done", finished_at=time.time(), done=final.done,
                              counts=final.counts, errors=final.errors)
            log.info("job %s done in %.1f s: %s", job.id, time.time() - started, final.counts)
        shutil.rmtree(folder, ignore_errors=True)
