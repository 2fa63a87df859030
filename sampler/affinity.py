"""Where the sampler thread and R may run: CPU affinity and the thread's timer slack."""

from __future__ import annotations

import os

from sampler import libc

_PR_SET_TIMERSLACK = 29


def bound_to_one_shared_cpu(tid: int) -> bool:
    """Whether the calling thread and thread `tid` may both run on one and the same CPU
    only (False when their affinities cannot be read)."""
    try:
        ours = os.sched_getaffinity(0)
        return len(ours) == 1 and os.sched_getaffinity(tid) == ours
    except OSError:
        return False


def tight_timer_slack() -> None:
    """Ask the kernel to wake the calling thread on time (the default slack is 50 us)."""
    libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
