"""bench-deploy's section: the quality comparison query by query, and the tables' shape (the servers'
runs themselves are measured by the command; the deployment is tested in tests/service/test_deployment.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import SkulensError
from evaluation.bench_deploy import MigrateRun, WorkerRun, markdown, parity, parity_markdown


def report(path: Path, ranks: list[int | None], tops: list[list[str]], split: str = "val") -> Path:
    per_query = [{"path": f"q{i}.jpg", "label": "A", "rank": r, "top": t} for i, (r, t) in enumerate(zip(ranks, tops))]
    r1 = sum(r == 1 for r in ranks) / len(ranks)
    path.write_text(json.dumps({"protocol": "G1", "split": split, "queries": len(ranks), "per_query": per_query,
                                "metrics": {"recall@1": r1, "recall@5": 1.0, "recall@10": 1.0, "map": 0.5}}))
    return path


def test_parity_counts_the_queries_ranked_alike(tmp_path: Path) -> None:
    a = report(tmp_path / "a.json", [1, 2, 1], [["A", "B"], ["B", "A"], ["A", "C"]])
    b = report(tmp_path / "b.json", [1, 1, 1], [["A", "B"], ["A", "B"], ["A", "D"]])
    p = parity(a, b)
    assert (p.queries, p.same_rank, p.same_top) == (3, 2, 1)
    md = parity_markdown([p])
    assert "| G1 | val | 3 | 0.667 / 1.000 |" in md and "| 0.333 | 2 of 3 | 1 of 3 |" in md


def test_parity_refuses_reports_of_different_runs(tmp_path: Path) -> None:
    a = report(tmp_path / "a.json", [1, 2], [["A"], ["B"]])
    b = report(tmp_path / "b.json", [1, 2], [["A"], ["B"]], split="test")
    with pytest.raises(SkulensError, match="same protocol"):
        parity(a, b)


def test_worker_ratios_are_against_one_worker_of_the_same_kind() -> None:
    runs = [WorkerRun(1, 1, 60, 60.0, "succeeded"), WorkerRun(2, 1, 60, 33.3, "succeeded"),
            WorkerRun(1, None, 60, 30.0, "succeeded"), WorkerRun(2, None, 60, 30.0, "succeeded")]
    md = markdown(None, runs, [MigrateRun(Path("d"), 2.0, {k: (3, 3) for k in ("products", "images", "vectors",
                                          "keypoints", "features", "meta")}, (6, 6), True)])
    assert "| 2 | 1 | shared | 60 | 33.3 | 1.80 | 1.80x | succeeded |" in md
    assert "| 2 | default | shared | 60 | 30.0 | 2.00 | 1.00x | succeeded |" in md
    assert "| yes |" in md


def test_parity_names_a_file_that_is_not_an_eval_report(tmp_path: Path) -> None:
    good = report(tmp_path / "a.json", [1], [["A"]])
    (tmp_path / "bad.json").write_text('{"metrics": {}}')
    with pytest.raises(SkulensError, match=r"bad.json is not a `skulens eval --json` report .*per_query"):
        parity(good, tmp_path / "bad.json")
    with pytest.raises(SkulensError, match="cannot read the eval report"):
        parity(good, tmp_path / "missing.json")
