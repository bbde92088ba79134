"""Shoppers first: catalogue analyses in the background give way to photo searches.

On a machine of two cores, an import's analyses and a shopper's photo search share the same CPU: an
import beside eight searching clients halved their throughput.  A photo search marks itself while
its photo is analysed (:meth:`SearchFirst.searching`); an import's worker asks for its turn before
each image (:meth:`SearchFirst.wait_turn`) and waits while any search is being analysed, but never
longer than a bound, so an import still moves under a steady stream of searches, and runs at full
speed the moment they stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class SearchFirst:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._searching = 0

    @property
    def searching_now(self) -> int:
        """Photo searches being analysed at this moment."""
        return self._searching

    @contextmanager
    def searching(self) -> Iterator[None]:
        """Hold while a photo search's analysis runs."""
        with self._changed:
            self._searching += 1
        try:
            yield
        finally:
            with self._changed:
                self._searching -= 1
                if not self._searching:
                    self._changed.notify_all()

    def wait_turn(self, max_wait_s: float) -> float:
        """Wait until no photo search is being analysed, or ``max_wait_s`` seconds; returns the
        seconds waited (0 at once when none is)."""
        if max_wait_s <= 0:
            return 0.0
        start = time.monotonic()
        with self._changed:
            self._changed.wait_for(lambda: not self._searching, timeout=max_wait_s)
        return time.monotonic() - start
