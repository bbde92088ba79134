"""The load/kill report: numbers computed from hand-made results."""

from __future__ import annotations

from collections import Counter

from evaluation.loadtest import KillResult, LoadResult, load_markdown


def test_load_figures_and_server_errors():
    r = LoadResult(4, 2, 2.0, [100.0, 200.0, 300.0, 400.0], Counter({200: 3, 503: 1}), Counter({201: 2, 500: 1}))
    assert r.percentile(50) == 250.0 and r.server_errors == 2
    text = load_markdown(r, None, 81)
    assert "| 4 | 2 | 2 | 2.00 | 250 |" in text and "| 2 |\n" in text


def test_kill_report_says_what_failed():
    good = KillResult(10, [], 5, 81, 40, 40, 200, 10, 20.0, False)
    assert good.ok and "every acknowledged write survived" in load_markdown(None, good, 81)
    lost = KillResult(10, ["ACK-0003"], 5, 81, 40, 38, 200, 10, 20.0, True)
    text = load_markdown(None, lost, 81)
    assert not lost.ok and "**FAILED**: ACK-0003" in text and "had already finished" in text
