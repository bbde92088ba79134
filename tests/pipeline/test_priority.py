"""SearchFirst: background analyses wait while photo searches are analysed, never past their bound."""

from __future__ import annotations

import threading
import time

from pipeline.priority import SearchFirst


def test_no_search_no_wait():
    gate = SearchFirst()
    assert gate.wait_turn(5.0) < 0.05 and gate.searching_now == 0


def test_a_background_turn_waits_for_the_searches_to_end():
    gate = SearchFirst()
    waited: list[float] = []
    with gate.searching(), gate.searching():
        worker = threading.Thread(target=lambda: waited.append(gate.wait_turn(10.0)))
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive() and gate.searching_now == 2  # still waiting
    worker.join(5)
    assert not worker.is_alive() and 0.25 < waited[0] < 5


def test_the_wait_is_bounded_and_zero_turns_it_off():
    gate = SearchFirst()
    with gate.searching():
        t0 = time.monotonic()
        assert 0.15 <= gate.wait_turn(0.2) < 2 and time.monotonic() - t0 < 2
        assert gate.wait_turn(0) == 0.0
    assert gate.searching_now == 0
