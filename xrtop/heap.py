"""Short pauses of Python's cyclic garbage collector with a big profile in memory (#27).

A full collection walks every object the collector tracks. With an hour of samples (a
`Stack` per distinct stack, the aggregates' counters and rows) that took 80 ms on a small
machine and up to 200 ms under load, in the middle of whatever key the user had pressed.
The profile's data is freed by reference counting (it holds no reference cycles: see
`sampler.model.CallTree`), so once an aggregate is built, everything alive is moved out of
the collector's sight (`gc.freeze`): later full collections walk only what was made since.
Small profiles are left alone: their collections are short anyway.

The UI makes objects of its own all the time (Textual keeps the lines it rendered), and
they too made a full collection take 40-100 ms after a few view switches: between keys,
when many tracked objects are not frozen, they are collected (a short collection: the rest
is frozen) and what survives is frozen too (`tidy`).
"""

from __future__ import annotations

import gc
import time

#: Below this many distinct stacks a full collection is short: nothing is frozen.
FREEZE_FROM_STACKS = 10_000
#: A live session keeps finding new stacks: freeze again after this many more.
REFREEZE_STACKS = 5_000
#: Between keys, collect and freeze again once this many tracked objects are not frozen,
#: looking at most every TIDY_EVERY_S seconds.
TIDY_FROM_OBJECTS = 20_000
TIDY_EVERY_S = 0.5


class HeapSettler:
    """Freezes the heap after a big aggregate is built (see the module's docstring)."""

    def __init__(self) -> None:
        """Nothing frozen yet."""
        self._frozen: tuple[object, int] | None = None
        self._tidied = 0.0

    def settle(self, aggregate: object, stacks: int) -> bool:
        """Freeze what is alive now when `aggregate` (the one shown, over `stacks` distinct
        stacks) is big and new since the last freeze, or the stacks grew by
        REFREEZE_STACKS; whether it froze."""
        if stacks < FREEZE_FROM_STACKS:
            return False
        frozen = self._frozen
        if frozen is not None and frozen[0] is aggregate and stacks - frozen[1] < REFREEZE_STACKS:
            return False
        gc.collect(1)  # the young garbage cycles are freed rather than frozen for good
        gc.freeze()
        self._frozen = (aggregate, stacks)
        return True

    def tidy(self) -> bool:
        """Between keys, after a freeze: when TIDY_FROM_OBJECTS tracked objects are not
        frozen, collect them and freeze what survives; whether it did."""
        now = time.monotonic()
        if self._frozen is None or now - self._tidied < TIDY_EVERY_S:
            return False
        self._tidied = now
        if len(gc.get_objects()) < TIDY_FROM_OBJECTS:  # the frozen ones are not listed
            return False
        gc.collect()
        gc.freeze()
        return True
