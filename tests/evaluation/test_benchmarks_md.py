from evaluation.benchmarks_md import update_section, with_variant


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
