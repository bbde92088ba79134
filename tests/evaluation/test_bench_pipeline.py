"""The speed report's Markdown (the measuring itself runs in `skulens bench`, not in tests)."""

from evaluation.bench_pipeline import bench_markdown


def test_bench_markdown_tables():
    query = {"queries": 3, "photos": 2, "cold": {"decode": 5.0, "embed": 900.0, "total": 1500.0},
             "warm": {"decode": {"p50": 1.0, "p95": 2.0, "n": 3}, "background": {"p50": 0.4, "p95": 0.5, "n": 3},
                      "embed": {"p50": 80.0, "p95": 90.0, "n": 3}},
             "end_to_end": {"p50": 100.0, "p95": 120.0, "n": 3}}
    index = {"images": 4, "seconds": 2.0, "images_per_s": 2.0, "per_stage_ms": {"detect": 10.0, "embed": 5.0}}
    q, i = bench_markdown(query, index)
    assert "| embed | 900 | 80.0 | 90.0 |" in q
    assert "| background | – | 0.4 | 0.5 |" in q  # no cold figure: shown as a dash, not nan
    assert "| **end to end** | 1500 | 100 | 120 |" in q
    assert "2.00 images/s" in i and "| detect | 10.0 |" in i
    assert bench_markdown(None, None) == ("", "")
    runs = [dict(index, workers=1), dict(index, workers=2, seconds=1.0, images_per_s=4.0)]
    _, i = bench_markdown(None, {**index, "workers": 1, "runs": runs})
    assert "| 1 | 4 | 2.0 | 2.00 |" in i and "| 2 | 4 | 1.0 | 4.00 |" in i and "headline run (1 workers" in i


def test_embedder_bench_table_names_each_runtime_and_its_change_from_torch():
    from evaluation.bench_embedder import embed_bench_markdown

    rows = [{"runtime": "torch", "embedder": "e", "batch1_p50_ms": 40.0, "batch1_p95_ms": 50.0, "batch": 32,
             "images_per_s": 10.0, "r1": 0.70, "r1_change": 0.0},
            {"runtime": "onnx-int8", "embedder": "e-int8", "batch1_p50_ms": 9.0, "batch1_p95_ms": 11.0, "batch": 32,
             "images_per_s": 80.0, "r1": 0.69, "r1_change": -0.01}]
    text = embed_bench_markdown({"rows": rows, "split": "val", "queries": 296, "gallery": 81, "latency_calls": 200})
    assert "over 200 calls" in text and "| onnx-int8 | e-int8 | 9.0 | 11.0 | 80.0 | 0.690 | -0.010 |" in text
    assert "dynamic" not in text  # the note on dynamic quantisation comes with its row only
    rows.append({**rows[1], "runtime": "onnx-int8-dynamic", "embedder": "e-int8-dynamic", "batch1_p50_ms": 75.0})
    text = embed_bench_markdown({"rows": rows, "split": "val", "queries": 296, "gallery": 81, "latency_calls": 200})
    assert "| onnx-int8-dynamic | e-int8-dynamic | 75.0 |" in text and "not a runtime skulens offers" in text
