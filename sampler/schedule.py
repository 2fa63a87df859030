"""When samples are due: one per period, each at a random instant within its own period.

Sample k is due at a random instant of [start + (k - 1/2) T, start + (k + 1/2) T) for the
period T, drawn uniformly (stratified sampling). Why not at start + k T: a loop whose
iterations take a near multiple of T would be sampled at the same few points of each
iteration for seconds on end, and its shares would be those points', not its time's; and R,
slowed by each stop by an amount that depends on what it runs, can lock the two rhythms
together. Drawn within its own period, a sample is equally likely to land at any instant of
the run whatever the workload's rhythm, and the rate stays exact on average: the schedule
follows the grid, never the time samples took (no drift). A sample taken more than a period
after it was due is late: the grid starts over from then rather than bursting to catch up.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Schedule:
    """The due times of one sampler's samples (not thread-safe: the sampler's own)."""

    def __init__(self, period: float, uniform: Callable[[], float] | None = None) -> None:
        """Samples every `period` seconds on average; `uniform` draws from [0, 1)."""
        self.period = period
        self._uniform = uniform or random.Random().random
        #: The middle of the period the last due time fell in.
        self._grid = 0.0

    def start(self, now: float) -> float:
        """The first due time (`now`: at once); the grid starts over there."""
        self._grid = now
        return now

    def next(self, now: float, due: float) -> tuple[float, bool]:
        """The due time after the sample `due`, taken at `now`, and whether that one was
        late (taken more than a period after it was due: the grid starts over at `now`)."""
        period = self.period
        late = now - due > period
        if late:
            self._grid = now
        self._grid += period
        return self._grid + (self._uniform() - 0.5) * period, late
