"""SearchFirst: background analyses wait while photo searches run, never past their bound, and past
it one at a time."""

from __future__ import annotations

import threading
import time

from pipeline.priority import SearchFirst


def test_no_search_no_wait():
    gate = SearchFirst()
    with gate.turn(5.0) as waited:
        assert waited < 0.05 and gate.searching_now == 0


def test_a_background_turn_waits_for_the_searches_to_end():
    gate = SearchFirst()
    waited: list[float] = []

    def background() -> None:
        with gate.turn(10.0) as w:
            waited.append(w)

    with gate.searching(), gate.searching():
        worker = threading.Thread(target=background)
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive() and gate.searching_now == 2  # still waiting
    worker.join(5)
    assert not worker.is_alive() and 0.25 < waited[0] < 5


def test_past_the_bound_one_background_analysis_goes_at_a_time():
    gate = SearchFirst()
    inside: list[int] = []
    running = [0]
    lock = threading.Lock()

    def background() -> None:
        with gate.turn(0.2):
            with lock:
                running[0] += 1
                inside.append(running[0])
            time.sleep(0.3)
            with lock:
                running[0] -= 1

    with gate.searching():  # a search that outlasts them all
        workers = [threading.Thread(target=background) for _ in range(3)]
        t0 = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join(10)
        assert max(inside) == 1 and len(inside) == 3  # forced through, never two at once
        assert time.monotonic() - t0 >= 0.2 + 3 * 0.3 - 0.1
    with gate.turn(0) as waited:  # 0: no waiting
        assert waited < 0.05
