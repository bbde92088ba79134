"""The job runner on a real SQLite job table: life cycle, per-row errors, failures, restarts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.errors import InvalidInputError, NotFoundError
from pipeline.jobs import Job, JobRunner, JobStore, Progress, RowError


def count_rows(folder: Path, report) -> Progress:
    """A job whose input is one file per row; a row named bad-* is skipped with a reason."""
    progress = Progress()
    for row in sorted(folder.iterdir()):
        progress.done += 1
        if row.name.startswith("bad"):
            progress.errors.append(RowError(row.name, "unreadable"))
        progress.counts = {"indexed": progress.done - len(progress.errors), "skipped": len(progress.errors)}
        report(progress)
    return progress


def write_rows(names: list[str]):
    def prepare(folder: Path) -> int:
        for name in names:
            (folder / name).write_text("x")
        return len(names)
    return prepare


def runner(tmp_path: Path, handler=count_rows) -> JobRunner:
    return JobRunner(JobStore(tmp_path / "jobs.sqlite3"), tmp_path / "jobs", {"import": handler}, report_every_s=0)


def test_a_job_runs_to_done_with_its_row_errors_and_its_input_removed(tmp_path):
    jobs = runner(tmp_path)
    job = jobs.submit("import", write_rows(["a", "b", "bad-c"]))
    assert job.state == "queued" and job.total == 3
    assert jobs.wait_idle()
    done = jobs.store.get(job.id)
    assert done.state == "done" and done.done == 3 and done.finished
    assert done.counts == {"indexed": 2, "skipped": 1}
    assert done.errors == (RowError("bad-c", "unreadable"),)
    assert done.rate is not None and done.eta_s is None
    assert not (tmp_path / "jobs" / job.id).exists()
    assert [j.id for j in jobs.store.recent()] == [job.id]
    jobs.close()


def test_bad_input_makes_no_job_and_leaves_no_folder(tmp_path):
    jobs = runner(tmp_path)

    def refuse(folder: Path) -> int:
        (folder / "half").write_text("x")
        raise InvalidInputError("the manifest is empty")

    with pytest.raises(InvalidInputError):
        jobs.submit("import", refuse)
    assert jobs.store.recent() == [] and list((tmp_path / "jobs").iterdir()) == []
    with pytest.raises(NotFoundError):
        jobs.store.get("0123456789abcdef")
    jobs.close()


def test_a_failing_job_is_failed_with_its_reason_and_the_next_one_runs(tmp_path):
    def broken(folder: Path, report) -> Progress:
        if (folder / "boom").exists():
            raise InvalidInputError("row 1: no such column")
        return count_rows(folder, report)

    jobs = runner(tmp_path, broken)
    first = jobs.submit("import", write_rows(["boom"]))
    second = jobs.submit("import", write_rows(["a"]))
    assert jobs.wait_idle()
    assert jobs.store.get(first.id).state == "failed" and "no such column" in jobs.store.get(first.id).error
    assert jobs.store.get(second.id).state == "done"
    jobs.close()


def test_a_job_cut_short_by_shutdown_runs_again_on_the_next_start(tmp_path):
    started, release = threading.Event(), threading.Event()

    def slow(folder: Path, report) -> Progress:
        progress = Progress()
        for row in sorted(folder.iterdir()):
            started.set()
            release.wait(10)
            progress.done += 1
            report(progress)  # raises JobStopped once the runner is closing
        return progress

    jobs = runner(tmp_path, slow)
    job = jobs.submit("import", write_rows(["a", "b", "c"]))
    queued = jobs.submit("import", write_rows(["d"]))
    assert started.wait(10)
    closing = threading.Thread(target=jobs.close)
    closing.start()
    release.set()
    closing.join(10)
    assert jobs.store.get(job.id).state == "running"  # as a killed process would leave it
    assert jobs.store.get(queued.id).state == "queued"

    again = runner(tmp_path, count_rows)
    assert {j.id for j in again.resume()} == {job.id, queued.id}
    assert again.wait_idle()
    for j in (job, queued):
        after = again.store.get(j.id)
        assert after.state == "done" and after.done == j.total and "resumed after a restart" in after.note
    again.close()


def test_an_unfinished_job_whose_input_is_gone_is_interrupted(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = store.create("import", 5)
    store.update(job.id, state="running", done=2)
    (tmp_path / "jobs" / ".new-abc").mkdir(parents=True)  # a submission cut short before its answer
    jobs = JobRunner(store, tmp_path / "jobs", {"import": count_rows})
    assert jobs.resume() == []
    after = store.get(job.id)
    assert after.state == "interrupted" and "submit it again" in after.error
    assert not (tmp_path / "jobs" / ".new-abc").exists()
    jobs.close()


def test_job_states_are_checked():
    with pytest.raises(ValueError, match="job state"):
        Job("x", "import", "halfway", 0.0, 1)
