"""SIGCHLD held in the process's queue, so the sampler thread can sleep until R stops.

The kernel announces every stop of a tracee to its tracer with SIGCHLD. A program that
blocks SIGCHLD in all its threads (`queue_child_signals()`, from the main thread before it
starts any) lets the sampler thread sleep until either its next sample or such a stop
(`sampler.ptrace.Tracer.sleep()`) instead of waking every 2 ms to look, and lets
`Tracer.stop()` sleep until the stop it asked for without giving up the GIL
(`wait_child_signal`).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
from collections.abc import Iterator

from sampler import libc

CHILD_SIGNALS = {signal.SIGCHLD}


def queue_child_signals() -> None:
    """Block SIGCHLD in the calling thread and so in every thread it starts afterwards.

    Call from the main thread before any other thread starts. The signals then wait in the
    process's queue, where `Tracer.sleep()` picks them up; nothing in xrtop needs SIGCHLD's
    default action (which is to ignore it). Start children in `child_signals_unblocked()`.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_SIGNALS)


def child_signals_queued() -> bool:
    """Whether the calling thread has SIGCHLD blocked (see `queue_child_signals()`)."""
    return signal.SIGCHLD in signal.pthread_sigmask(signal.SIG_BLOCK, ())


@contextlib.contextmanager
def child_signals_unblocked() -> Iterator[None]:
    """Unblock SIGCHLD in this thread meanwhile: a child started here inherits the mask,
    and a launched program must get the signal mask it would have without xrtop."""
    was_blocked = child_signals_queued()
    if was_blocked:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, CHILD_SIGNALS)
    try:
        yield
    finally:
        if was_blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_SIGNALS)


def _signal_set(signals: set[signal.Signals]) -> ctypes.Array[ctypes.c_char]:
    mask = ctypes.create_string_buffer(128)  # sigset_t: 1024 bits in glibc and musl
    for signum in signals:
        libc.sigaddset(mask, int(signum))
    return mask


_CHILD_SIGNAL_SET = _signal_set(CHILD_SIGNALS)
_NO_WAIT = ctypes.byref(libc.Timespec(0, 0))


def wait_child_signal(seconds: float) -> None:
    """Sleep until SIGCHLD (blocked in the calling thread) or `seconds` (< 1) pass, keeping
    the GIL (`signal.sigtimedwait` would let the other threads take it). Zero seconds: take
    a pending SIGCHLD, if any, without sleeping."""
    timeout = _NO_WAIT if seconds <= 0 else ctypes.byref(libc.Timespec(0, int(seconds * 1e9)))
    libc.sigtimedwait(_CHILD_SIGNAL_SET, None, timeout)
