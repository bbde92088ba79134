"""What the command modules share: the consoles, the settings the root callback read, the engine,
the progress bar.  It imports none of the command modules."""

from __future__ import annotations

import sys
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


def progress_bar() -> tuple[Progress, Callable[[str, int, int], None]]:
    """A rich progress bar on stderr (plain lines when stderr is not a terminal) and its
    ``update(stage, done, total)`` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err, disable=not err.is_terminal)
    tasks: dict[str, TaskID] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done)
        if not err.is_terminal and (done == total or done % 100 == 0):
            err.print(f"{stage}: {done}/{total}", highlight=False)

    return bar, update


def eval_stages(current: Settings, embedder: str | None = None):
    """Stages whose background masks persist in <data>/eval, so re-analysis is cheap.

    ``embedder``: a trained embedder's folder, or 'imagenet'; default: the data directory's."""
    from evaluation.mask_cache import cached_mask_stages
    from pipeline.build import named_embedder

    return cached_mask_stages(current, trained=named_embedder(embedder))
