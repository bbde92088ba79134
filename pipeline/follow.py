"""Following writes other processes make to a shared catalogue (API replicas and workers on one
PostgreSQL database): a thread that asks the store every ``store.follow_s`` seconds whether its
generation moved, and if so has the engine apply the change log (:meth:`Engine.catch_up`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Follower:
    def __init__(self, catch_up: Callable[[], int], interval_s: float) -> None:
        self._catch_up = catch_up
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skulens-follower", daemon=True)

    def start(self) -> "Follower":
        self._thread.start()
        return self

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval_s):
            try:
                self._catch_up()
            except Exception:  # the database away for a moment: say so once, keep trying
                if not failing:
                    log.exception("cannot follow the catalogue's writes; trying again every %.2f s", self.interval_s)
                failing = True
            else:
                if failing:
                    log.info("following the catalogue's writes again")
                failing = False

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
