"""What the command modules share: the consoles, the settings the root callback read, the engine,
the progress bar.  It imports none of the command modules."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import Progress, TaskID

from core.settings import Settings

out = Console() if sys.stdout.isatty() else Console(width=160)  # piped tables: no cramped wrapping
err = Console(stderr=True)


class _State:
    settings: Settings | None = None


state = _State()


def settings() -> Settings:
    """The settings of this run: the root callback's (``--data`` applied), else the environment's."""
    return state.settings or Settings()


def engine(read_only: bool = False):
    """An engine over the data directory, with the stages the settings ask for (close it after use).
    ``read_only``: for searching beside a process that writes (``skulens serve``)."""
    from pipeline.build import build_stages
    from pipeline.engine import Engine

    current = settings()
    return Engine(current, build_stages(current), read_only=read_only)


LINE_EVERY_S = 10.0
"""Without a terminal, a progress line at most this often (and at the end)."""


def progress_bar() -> tuple[Progress, Callable[[str, int, int], None]]:
    """A rich progress bar on stderr (plain lines when stderr is not a terminal) and its
    ``update(stage, done, total)`` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err, disable=not err.is_terminal)
    tasks: dict[str, TaskID] = {}
    started: dict[str, float] = {}
    last_line = [0.0]

    def update(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total, rate="")
            started[stage] = now
        elapsed = now - started[stage]
        rate = done / elapsed if elapsed > 0 and done else 0.0
        bar.update(tasks[stage], completed=done, rate=f"{rate:.2f}/s" if rate else "")
        if not err.is_terminal and (done == total or now - last_line[0] >= LINE_EVERY_S):
            last_line[0] = now
            left = f", about {_duration((total - done) / rate)} left" if rate and done < total else ""
            err.print(f"{stage}: {done}/{total}" + (f", {rate:.2f}/s" if rate else "") + left, highlight=False)

    return bar, update



def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def eval_stages(current: Settings, embedder: str | None = None):
    """Stages whose background masks persist in <data>/eval, so re-analysis is cheap.

    ``embedder``: a trained embedder's folder, or 'imagenet'; default: the data directory's."""
    from evaluation.mask_cache import cached_mask_stages
    from pipeline.build import named_embedder

    return cached_mask_stages(current, trained=named_embedder(embedder))
