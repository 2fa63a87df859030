"""The sampler's schedule (sampler.schedule): one sample per period, at a random instant of it."""

from __future__ import annotations

import random

from sampler.schedule import Schedule

PERIOD = 0.01


def _on_time_dues(schedule: Schedule, start: float, count: int) -> list[float]:
    """`count` due times, each sample taken exactly when due."""
    dues = [schedule.start(start)]
    while len(dues) < count:
        dues.append(schedule.next(dues[-1], dues[-1])[0])
    return dues


def test_each_sample_is_due_within_its_own_period() -> None:
    # GIVEN a schedule starting at 100 s, its samples taken when due
    dues = _on_time_dues(Schedule(PERIOD, random.Random(1).random), 100.0, 2000)
    # THEN the first is due at once, and sample k within [start + (k - 1/2) T, + (k + 1/2) T)
    assert dues[0] == 100.0
    for k, due in enumerate(dues[1:], start=1):
        assert 100.0 + (k - 0.5) * PERIOD <= due < 100.0 + (k + 0.5) * PERIOD
    # AND the instants are spread over the period, not at its middle
    offsets = [(due - 100.0) / PERIOD - k for k, due in enumerate(dues[1:], start=1)]
    assert min(offsets) < -0.45 and max(offsets) > 0.45


def test_rate_does_not_drift_by_the_time_samples_take() -> None:
    # GIVEN samples that each take 40 % of a period after they were due
    schedule = Schedule(PERIOD, random.Random(2).random)
    due = schedule.start(0.0)
    for _ in range(999):
        due, late = schedule.next(due + 0.4 * PERIOD, due)
        assert not late
    # THEN the 1000th sample (k = 999) is still due within its own period: no drift
    assert 998.5 * PERIOD <= due < 999.5 * PERIOD


def test_a_late_sample_starts_the_grid_over() -> None:
    # GIVEN a sample taken 3 periods after it was due
    schedule = Schedule(PERIOD, lambda: 0.5)  # (the middle of each period)
    due = schedule.start(0.0)
    due, late = schedule.next(0.0, due)
    assert (due, late) == (PERIOD, False)
    due, late = schedule.next(due + 3 * PERIOD, due)
    # THEN it is counted late, and the next is due a period after it, not in a burst
    assert late
    assert due == PERIOD + 4 * PERIOD


def test_a_loop_in_step_with_the_rate_is_sampled_for_its_time() -> None:
    # GIVEN a loop whose iteration takes exactly three periods, spending its first tenth in
    # one function: a schedule of fixed instants (start + k T, started mid-way through that
    # tenth's complement) would never see that function, or see it every third sample
    iteration = 3 * PERIOD
    dues = _on_time_dues(Schedule(PERIOD, random.Random(3).random), 0.5 * PERIOD, 30_000)
    in_function = sum(1 for due in dues if due % iteration < 0.1 * iteration)
    # THEN the function gets its tenth of the samples
    assert abs(in_function / len(dues) - 0.1) < 0.01
