"""The vector-index benchmark on a tiny workload: every method runs for real and is reported."""

from __future__ import annotations

import math

import pytest

from evaluation.bench_index import METHODS, IndexBenchRow, bench_vector_indexes, rows_to_markdown


@pytest.fixture(scope="module")
def rows() -> list[IndexBenchRow]:
    return bench_vector_indexes(sizes=[2000], dim=64, n_queries=20)


def test_every_method_has_one_row(rows: list[IndexBenchRow]) -> None:
    assert [r.method for r in rows] == list(METHODS)
    assert all(r.n == 2000 and r.dim == 64 for r in rows)


def test_exact_methods_find_the_exact_top_10(rows: list[IndexBenchRow]) -> None:
    recall = {r.method: r.recall_at_10 for r in rows}
    assert recall["numpy"] == 1.0
    assert recall["flat"] == 1.0


def test_compressed_indexes_are_smaller_than_flat_and_rerank_exactly(rows: list[IndexBenchRow]) -> None:
    by = {r.method: r for r in rows}
    for method in ("ivf-sq8", "ivf-sq4", "pca256-ivf-sq8", "ivf-pq"):
        assert by[method].memory_mb < by["flat"].memory_mb
        assert "re-ranked exactly" in by[method].params
    assert by["ivf-sq8"].recall_at_10 >= by["ivf"].recall_at_10 - 0.05  # re-ranking makes up for the codes


def test_measured_rows_are_sane(rows: list[IndexBenchRow]) -> None:
    for r in rows:
        if r.skipped:  # only annoy may be, when it is not installed
            assert r.method == "annoy" and "annoy not installed" in r.params
            continue
        assert 0.0 <= r.recall_at_10 <= 1.0
        assert 0 < r.query_ms_p50 <= r.query_ms_p95
        assert r.build_s >= 0 and r.memory_mb > 0
        assert "dup@1=" in r.params


def test_markdown_has_a_header_and_one_line_per_row(rows: list[IndexBenchRow]) -> None:
    lines = rows_to_markdown(rows).strip().splitlines()
    assert lines[0].startswith("| method | vectors | build s | memory MB | query p50 ms")
    assert "Recall@10" in lines[0] and "x numpy" in lines[0]
    assert len(lines) == 2 + len(rows)
    assert "| 1.00x |" in lines[2]  # numpy against itself


def test_a_method_that_would_overrun_the_budget_is_reported_skipped() -> None:
    out = bench_vector_indexes(sizes=[200, 20000], dim=8, n_queries=4, methods=["hnsw"], time_budget_s=1e-9)
    assert [r.method for r in out] == ["hnsw", "hnsw"]
    assert all(r.skipped and math.isnan(r.build_s) for r in out)
    assert "—" in rows_to_markdown(out)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="expected methods"):
        bench_vector_indexes(sizes=[100], methods=["lsh"])
    with pytest.raises(ValueError, match="sizes >= 10"):
        bench_vector_indexes(sizes=[5])


@pytest.mark.parametrize(
    ("method", "seconds_at_100k", "left", "skipped"),
    [("flat", 100.0, 1500.0, False), ("ivf", 100.0, 1500.0, True), ("hnsw", 100.0, 1500.0, False),
     ("hnsw", 200.0, 1500.0, True), ("annoy", 10.0, None, False), ("numpy", 1.0, 0.0, True)],
)
def test_budget_extrapolates_from_the_last_size(method: str, seconds_at_100k: float, left: float | None,
                                               skipped: bool) -> None:
    from evaluation.bench_index import _too_slow

    why = _too_slow(method, 1_000_000, {method: (100_000, seconds_at_100k)}, left)
    assert (why is not None) == skipped
