"""BENCHMARKS.md: each measuring command owns one marked section and rewrites only that.

Sections are kept in a fixed order so the file reads well however often commands run.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shlex
import sys
from pathlib import Path

from evaluation.benchmarks_summary import summary

ORDER = ("quality-G1", "quality-G2", "quality-C1", "quality-K1", "speed-query", "speed-index", "embedder-training", "speed-embedder", "speed-vectors",
         "service-load", "deploy", "dedup-grocery", "dedup-ukbench", "dedup-scale", "detector", "words")
HEADER = ("# skulens benchmarks\n\nWritten by `skulens eval ... --benchmarks BENCHMARKS.md`, `skulens bench` and "
          "`skulens bench-service`; "
          "each section says the machine, the date and the command that produced it. Quality figures come from "
          "the split named in each section; weights are never tuned on that split.\n")


def machine_line() -> str:
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:  # pragma: no cover
        gpu = "unknown GPU"
    mem = ""
    if hasattr(os, "sysconf"):
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores{mem}, {gpu}"


def stamp() -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "skulens " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return f"*Machine:* {machine_line()}. *Date:* {now}. *Command:* `{cmd}`\n"


def _place(key: str) -> tuple[int, str]:
    """Sections in ORDER; a variant (``quality-G1-mask-detector``) right after its own (``quality-G1``)."""
    for i, known in enumerate(ORDER):
        if key == known or key.startswith(known + "-"):
            return i, "" if key == known else key
    return len(ORDER), key


def with_variant(key: str, title: str, variant: str | None) -> tuple[str, str]:
    """A named non-default run's section key and title, beside the default one's."""
    if not variant:
        return key, title
    return key + "-" + re.sub(r"[^a-z0-9]+", "-", variant.lower()).strip("-"), f"{title}, {variant}"


def _read(path: Path) -> tuple[str, dict[str, str]]:
    """The file's head (before the summary and sections) and its sections by key."""
    text = path.read_text() if path.exists() else HEADER
    sections = dict(re.findall(r"<!-- section:(\S+) -->\n(.*?)<!-- /section -->\n", text, flags=re.S))
    head = re.sub(r"<!-- summary -->.*?<!-- /summary -->\n*", "", text.split("<!-- section:", 1)[0], flags=re.S)
    return head.rstrip() + "\n\n", sections


def _write(path: Path, head: str, sections: dict[str, str]) -> None:
    keys = sorted(sections, key=_place)
    ordered = {k: sections[k] for k in keys}
    out = head + summary(ordered) + "".join(f"<!-- section:{k} -->\n{b}<!-- /section -->\n" for k, b in ordered.items())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(out)
    tmp.replace(path)


def update_section(path: Path, key: str, title: str, body: str) -> None:
    """Replace (or add) the section ``key`` of the Markdown file at ``path``, and rebuild the summary
    table at its top."""
    path = Path(path)
    head, sections = _read(path)
    sections[key] = f"## {title}\n\n{stamp()}\n{body.rstrip()}\n\n"
    _write(path, head, sections)


def refresh_summary(path: Path) -> None:
    """Rebuild the summary table from the sections as they are (no section changes)."""
    path = Path(path)
    _write(path, *_read(path))
