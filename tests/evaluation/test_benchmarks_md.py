from evaluation.benchmarks_md import refresh_summary, update_section, with_variant


def test_sections_are_replaced_in_place_and_ordered(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    update_section(path, "speed-query", "Query speed", "| a |\n")
    update_section(path, "quality-G1", "G1", "first\n")
    update_section(path, "quality-G1", "G1", "second\n")
    text = path.read_text()
    assert text.startswith("# skulens benchmarks")
    assert "second" in text and "first" not in text
    assert text.index("## G1") < text.index("## Query speed")
    assert text.count("<!-- section:quality-G1 -->") == 1
    assert "*Machine:*" in text and "*Command:*" in text


def test_a_variant_sits_right_after_its_own_section(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    for key in ("quality-G2", "quality-G1-mask-detector", "zzz-unknown", "quality-G1"):
        update_section(path, key, key, "body\n")
    text = path.read_text()
    order = [text.index(f"## {k}\n") for k in ("quality-G1", "quality-G1-mask-detector", "quality-G2", "zzz-unknown")]
    assert order == sorted(order)


def test_a_named_run_gets_its_own_key_and_title():
    assert with_variant("embedder-training", "Embedder training", None) == ("embedder-training", "Embedder training")
    assert with_variant("quality-G2", "Quality: G2 (val)", "v2, No masks/OCR") == (
        "quality-G2-v2-no-masks-ocr", "Quality: G2 (val), v2, No masks/OCR")


QUALITY = """Split **val**, 296 queries; default configuration: all signals, tuned weights (weights {...}).

| configuration | recall@1 | recall@5 | map |
|---|---|---|---|
| embedding, full photo | 0.375 | 0.686 | 0.529 |
| all signals, tuned weights | 0.429 | 0.770 | 0.587 |
"""
QUERY = """| stage | cold first call ms | warm p50 ms | warm p95 ms |
|---|---|---|---|
| decode | 35 | 1.4 | 1.9 |
| **end to end** | 7485 | 599 | 866 |
"""


def test_the_summary_follows_the_sections_it_is_built_from(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    update_section(path, "quality-G1", "Quality: G1 (val)", QUALITY)
    update_section(path, "speed-query", "Speed: query path", QUERY)
    update_section(path, "speed-index", "Speed: indexing", "30 images in 103.0 s: **0.29 images/s** (...).\n")
    text = path.read_text()
    assert text.count("<!-- summary -->") == 1 and text.index("## Summary") < text.index("## Quality: G1 (val)")
    assert "| G1 | val | default | all signals, tuned weights | 0.429 | 0.587 |" in text
    assert "| query, end to end (warm p50) | 599 ms |" in text and "| 0.29 images/s |" in text
    update_section(path, "quality-G1", "Quality: G1 (val)", QUALITY.replace("0.429", "0.500"))
    text = path.read_text()
    assert "| 0.500 | 0.587 |" in text and "0.429" not in text and text.count("## Summary") == 1


def test_refreshing_the_summary_changes_no_section(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    update_section(path, "quality-G1", "Quality: G1 (val)", QUALITY)
    before = path.read_text()
    refresh_summary(path)
    assert path.read_text() == before
