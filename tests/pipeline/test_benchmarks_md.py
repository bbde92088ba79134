from pipeline.benchmarks_md import update_section


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
