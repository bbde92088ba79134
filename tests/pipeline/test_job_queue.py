"""How a queued import's parts add up to the job the API reports (pure; the queue itself runs
against real PostgreSQL and real workers in test_workers.py)."""

from __future__ import annotations

import json

import pytest

from pipeline.imports import part_bounds
from pipeline.job_queue import _job

ROW = ("j1", "import", 100.0, 6)


def part(state: str, done: int = 0, counts: dict | None = None, errors: list | None = None, started: float | None = None,
         finished: float | None = None, error: str | None = None, attempts: int = 0) -> tuple:
    return (state, done, json.dumps(counts or {}), json.dumps(errors or []), started, finished, error, attempts)


@pytest.mark.parametrize("states, expected", [
    (["queued", "queued"], "queued"),
    (["running", "queued"], "running"),
    (["done", "queued"], "running"),
    (["done", "done"], "done"),
    (["done", "failed"], "failed"),
    (["failed", "running"], "running"),
])
def test_a_job_is_as_far_as_its_parts(states, expected):
    parts = [part(s, started=1.0 if s != "queued" else None, finished=2.0 if s in ("done", "failed") else None,
                  error="boom" if s == "failed" else None, attempts=int(s != "queued")) for s in states]
    job = _job(ROW, parts)
    assert job.state == expected
    assert job.finished == (expected in ("done", "failed"))
    assert (job.error == "boom") == ("failed" in states)  # a failed part says so while the others run


def test_counts_rows_and_errors_add_up_and_a_rerun_part_is_noted():
    job = _job(ROW, [part("done", 3, {"indexed": 2, "skipped": 1}, [["row 3", "bad image"]], 1.0, 5.0, attempts=2),
                     part("done", 3, {"indexed": 3, "skipped": 0}, [], 2.0, 4.0, attempts=1)])
    assert (job.done, job.total, job.counts) == (6, 6, {"indexed": 5, "skipped": 1})
    assert [(e.item, e.reason) for e in job.errors] == [("row 3", "bad image")]
    assert (job.started_at, job.finished_at) == (1.0, 5.0)
    assert job.note == "1 part(s) run again after a worker stopped"


def test_an_import_is_cut_into_parts_of_whole_rows(tmp_path):
    from pipeline.imports import MANIFEST

    (tmp_path / MANIFEST).write_text("sku,image\n" + "".join(f"S{i},s{i}.jpg\n" for i in range(7)))
    for i in range(7):
        (tmp_path / f"s{i}.jpg").write_bytes(b"x")
    assert part_bounds(tmp_path, 3) == [(0, 3), (3, 6), (6, 7)]
    assert part_bounds(tmp_path, 10) == [(0, 7)]
    (tmp_path / MANIFEST).write_text("sku,image\nS0,missing.jpg\n")  # every row skipped: one empty part reports them
    assert part_bounds(tmp_path, 3) == [(0, 0)]
