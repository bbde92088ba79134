"""Shoppers first: catalogue analyses in the background give way to photo searches.

On a machine of two cores, an import's analyses and a shopper's photo search share the same CPU: an
import beside eight searching clients halved their throughput.  A photo search marks itself while it
runs (:meth:`SearchFirst.searching`); an import's worker analyses each image inside
:meth:`SearchFirst.turn`, which waits while any photo search runs, but never longer than a bound
(and past it lets one such analysis through at a time), so an import still moves under a steady
stream of searches, and runs at full speed the moment they stop.
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
        self._forced = False  # a background analysis running although searches are

    @property
    def searching_now(self) -> int:
        """Photo searches running at this moment."""
        return self._searching

    @contextmanager
    def searching(self) -> Iterator[None]:
        """Hold while a photo search runs."""
        with self._changed:
            self._searching += 1
        try:
            yield
        finally:
            with self._changed:
                self._searching -= 1
                self._changed.notify_all()

    @contextmanager
    def turn(self, max_wait_s: float) -> Iterator[float]:
        """Hold while a background analysis runs; entering waits until no photo search is running.
        After ``max_wait_s`` it goes ahead anyway, one such analysis at a time, so an import moves
        under a steady stream of searches without taking more than one core's share from them.
        Yields the seconds waited."""
        start = time.monotonic()
        forced = False
        if max_wait_s > 0:
            with self._changed:
                while self._searching:
                    left = start + max_wait_s - time.monotonic()
                    if left <= 0 and not self._forced:
                        self._forced = forced = True
                        break
                    self._changed.wait(timeout=max(left, 0.05) if left > 0 else None)
        try:
            yield time.monotonic() - start
        finally:
            if forced:
                with self._changed:
                    self._forced = False
                    self._changed.notify_all()
