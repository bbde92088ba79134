"""ImageSignals: images' palettes and tags read on demand, in one read per search, in a bounded cache."""

from __future__ import annotations

from core.types import Palette, Tags
from fusion.image_signals import ImageInfo, ImageSignals


def info(sku: str) -> ImageInfo:
    return ImageInfo(sku, Palette.empty(), Tags.empty())


class Stored:
    """The images a catalogue holds, counting what it was asked for."""

    def __init__(self, n: int) -> None:
        self.rows = {i: info(f"SKU-{i}") for i in range(n)}
        self.asked: list[list[int]] = []

    def __call__(self, ids: list[int]) -> dict[int, ImageInfo]:
        self.asked.append(sorted(ids))
        return {i: self.rows[i] for i in ids if i in self.rows}


def test_reads_only_what_it_does_not_hold_in_one_call():
    stored = Stored(10)
    table = ImageSignals(stored)
    got = table.get_many([1, 2, None, 2, 99])
    assert [g.sku if g else None for g in got] == ["SKU-1", "SKU-2", None, "SKU-2", None]
    assert stored.asked == [[1, 2, 99]]
    table.get_many([1, 2, 3])
    assert stored.asked[-1] == [3]
    assert table.get(2) is not None and len(stored.asked) == 2


def test_the_cache_keeps_the_most_recently_used_up_to_its_capacity():
    stored = Stored(10)
    table = ImageSignals(stored, capacity=3)
    table.get_many([0, 1, 2])
    table.get(0)  # used again: kept
    table.get(5)
    assert len(table) == 3
    stored.asked.clear()
    table.get_many([0, 5, 2])
    assert stored.asked == []
    table.get(1)  # evicted above
    assert stored.asked == [[1]]


def test_forgotten_and_put_images_answer_from_the_catalogue_again():
    stored = Stored(5)
    table = ImageSignals(stored)
    table.get_many([0, 1])
    del stored.rows[1]  # the catalogue removed it
    table.forget([1])
    assert table.get(1) is None
    table.put(7, info("NEW"))  # written by the catalogue: no read needed
    assert table.get(7).sku == "NEW" and stored.asked[-1] == [1]


def test_without_a_loader_it_answers_what_was_put():
    table = ImageSignals()
    table.put(1, info("A"))
    assert [g.sku if g else None for g in table.get_many([1, 2])] == ["A", None]
