"""The summary table that opens BENCHMARKS.md, rebuilt from the sections below it whenever a
benchmark command rewrites one: quality per protocol and configuration (the default row of each
quality section), query latency, ingest rate and service throughput."""

from __future__ import annotations

import re

_DEFAULT = re.compile(r"default configuration: ([^(;]+?) \(")
_SPLIT = re.compile(r"\(([a-z]+)\)")


def _table(body: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the first Markdown table in a section body."""
    lines = [ln for ln in body.splitlines() if ln.startswith("|")]
    if len(lines) < 3:
        return [], []
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    return cells[0], [row for row in cells[2:] if len(row) == len(cells[0])]


def _cell(header: list[str], row: list[str], *names: str) -> str:
    for name in names:
        if name in header:
            return row[header.index(name)]
    return "–"


def _title(body: str) -> str:
    return body.splitlines()[0].removeprefix("## ").strip()


def quality_row(key: str, body: str) -> str | None:
    """``| protocol | split | run | configuration | R@1 | mAP |`` for one quality section."""
    found = _DEFAULT.search(body)
    header, rows = _table(body)
    if found is None or not rows:
        return None
    name = found.group(1).strip()
    row = next((r for r in rows if r[0] == name), None)
    if row is None:
        return None
    title = _title(body)  # 'Quality: G1 (val), fine-tuned embedder'
    protocol = key.split("-")[1]
    split = _SPLIT.search(title)
    run = title.split("), ", 1)[1] if "), " in title else "default"
    return (f"| {protocol} | {split.group(1) if split else '–'} | {run} | {name} | "
            f"{_cell(header, row, 'recall@1', 'precision@1')} | {_cell(header, row, 'map')} |")


def speed_rows(sections: dict[str, str]) -> list[str]:
    rows = []
    if (body := sections.get("speed-query")) is not None:
        header, table = _table(body)
        end = next((r for r in table if "end to end" in r[0]), None)
        if end is not None:
            rows.append(f"| query, end to end (warm p50) | {_cell(header, end, 'warm p50 ms')} ms | {_title(body)} |")
    if (body := sections.get("speed-index")) is not None:
        found = re.search(r"\*\*([\d.]+) images/s\*\*", body)
        if found:
            rows.append(f"| ingest (catalogue images) | {found.group(1)} images/s | {_title(body)} |")
    if (body := sections.get("service-load")) is not None:
        header, table = _table(body)
        if table:
            rate, clients = _cell(header, table[0], "throughput /s"), _cell(header, table[0], "clients")
            rows.append(f"| service photo searches ({clients} clients) | {rate} /s | {_title(body)} |")
    if (body := sections.get("words")) is not None:
        found = re.search(r"embedding a typed query ([\d.]+) ms", body)
        if found:
            rows.append(f"| embedding a typed query (word space) | {found.group(1)} ms | {_title(body)} |")
    return rows


def summary(sections: dict[str, str]) -> str:
    """The summary block for ``sections`` (key -> section body, as in the file)."""
    quality = [r for k, b in sections.items() if k.startswith("quality-") and (r := quality_row(k, b))]
    text = ("## Summary\n\nRebuilt from the sections below by every benchmark command; each section has the "
            "machine, date and command. Quality: the default configuration's row of each quality section "
            "(G1/G2: recall@1; C1/K1: precision@1).\n\n"
            "| protocol | split | run | configuration | R@1 / P@1 | mAP |\n|---|---|---|---|---|---|\n"
            + "\n".join(quality) + "\n\n| speed | figure | section |\n|---|---|---|\n" + "\n".join(speed_rows(sections)))
    return f"<!-- summary -->\n{text}\n<!-- /summary -->\n\n"
