"""`embedder train --hours`: the budget is a limit, not a point to pass by an epoch."""

from __future__ import annotations

from training.embedder import another_epoch_fits


def test_another_epoch_runs_only_when_its_expected_end_is_within_the_budget():
    # 9 epochs of 376 s (held-out check included) leave 216 s of an hour: a 10th would end at 3,760 s
    assert not another_epoch_fits(9 * 376.0, 9, 1.0)
    assert another_epoch_fits(8 * 376.0, 8, 1.0)  # the 9th ends at 3,384 s
    assert another_epoch_fits(1800.0, 1, 1.0)  # one half-hour epoch: a second ends exactly at the hour


def test_the_mean_epoch_so_far_judges_the_next_one():
    # a slow first epoch (600 s) and two of 200 s: the mean, 333 s, puts the 4th's end at 1,333 s
    assert another_epoch_fits(1000.0, 3, 0.4)  # 1,440 s
    assert not another_epoch_fits(1000.0, 3, 0.35)  # 1,260 s


def test_without_a_budget_every_planned_epoch_runs():
    assert another_epoch_fits(1e9, 1, None)
