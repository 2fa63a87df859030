"""The sampler thread: samples a `Target` at a steady rate into a `SampleLog`.

A plain `threading.Thread` (no UI toolkit), used by the live view and headless alike.
Samples follow `sampler.schedule`: one per period, each at a random instant of its own period
(so that a workload's own rhythm cannot bias the shares), on a grid that does not drift by
the time samples take; a sample more than a period late is counted as late and the grid
starts over rather than bursting.

In blocking mode (the default) the thread seizes R's main thread with ptrace and stops it
only while a sample is copied. Everything about ptrace happens on this thread, as Linux
requires, and the target is detached on every way out of `run()`.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable
from enum import Enum

from sampler.affinity import bound_to_one_shared_cpu
from sampler.affinity import tight_timer_slack
from sampler.capture import StoppedCapture
from sampler.capture import sample_running
from sampler.errors import SampleError
from sampler.errors import TargetGoneError
from sampler.errors import XrtopError
from sampler.idlepoll import IdlePolling
from sampler.model import SampleLog
from sampler.model import SamplerStats
from sampler.model import Stack
from sampler.procstat import SleepProbe
from sampler.ptrace import Tracer
from sampler.schedule import Schedule
from sampler.target import Target
from sampler.target import verify_layout

MIN_HZ = 1.0
MAX_HZ = 2000.0
_LIVENESS_EVERY = 0.25  # seconds between checks that the PID is still the same process
# Longest sleep between looks at the stop request in blocking mode (the tracer's sleep is
# not interruptible by `stop()`).
LONGEST_SLEEP = 0.05
# In blocking mode the thread wakes this long before a sample is due and runs the stopped
# half once while R runs (`StackReader.warm`), so that when R is stopped the code, the
# kernel's paths and R's page tables are in this CPU's caches: a stop after a sleep costs
# half as much again otherwise. The sample is taken right after, a few microseconds early.
_WARM_LEAD = 0.00005


class State(Enum):
    """Where the sampler is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    EXITED = "target exited"
    DETACHED = "detached"
    FAILED = "failed"


def count_sample(stats: SamplerStats, stack: Stack, stopped: float, taken: float) -> None:
    """Count one sample of `stack`, taken at `taken` (monotonic) with the target stopped
    `stopped` seconds for it, into `stats` (hold the lock that guards them)."""
    stats.stopped_total += stopped
    if stopped > stats.stopped_max:
        stats.stopped_max = stopped
    if stack.names or stack.gc:
        stats.samples += 1
        if stack.gc:
            stats.gc += 1
    else:
        stats.empty += 1
    if stack.idle:
        stats.idle += 1
    stats.last_sample_at = taken


class SamplerThread(threading.Thread):
    """Samples one target until stopped, the target exits, or `duration` passes."""

    def __init__(
        self,
        target: Target,
        log: SampleLog,
        *,
        rate_hz: float,
        blocking: bool = True,
        poll_idle: bool = True,
        duration: float | None = None,
        on_sample: Callable[[Stack], None] | None = None,
        on_end: Callable[[State], None] | None = None,
    ) -> None:
        """Prepare; `start()` attaches (ptrace) and begins sampling.

        `poll_idle` (blocking mode): keep idle CPUs polling during each stop where xrtop may
        (`IdlePolling`), so R runs again at once when continued.
        """
        super().__init__(name=f"xrtop-sampler-{target.pid}", daemon=True)
        self.target = target
        self.log = log
        self.blocking = blocking
        self.poll_idle = poll_idle
        #: Opened by `run()` in blocking mode with `poll_idle`, closed when it ends.
        self._idle_polling = IdlePolling(None)
        self._shares_one_cpu = False
        self.duration = duration
        self.on_sample = on_sample
        self.on_end = on_end
        self.state = State.STARTING
        self.attach_error: XrtopError | None = None
        self.ready = threading.Event()
        self._stop_event = threading.Event()
        self._stats = SamplerStats(requested_hz=rate_hz)
        self._lock = threading.Lock()
        #: Seconds the target was stopped, per sample (blocking mode).
        self.stop_times = array("f")
        self._schedule = Schedule(1.0 / rate_hz)
        self._sleep_probe = SleepProbe(target.pid)
        self.last_stack: Stack | None = None
        #: The target's wait status when this thread reaped its exit (the tracer's waitpid
        #: takes it even from the real parent when xrtop launched the target itself).
        self.exit_status: int | None = None

    # -- control, from any thread ---------------------------------------------------------

    @property
    def rate_hz(self) -> float:
        """The requested sampling rate."""
        return 1.0 / self._schedule.period

    @property
    def shares_one_cpu(self) -> bool:
        """Whether R and this thread can only run on one and the same CPU (known once
        attached; see `sampler.affinity.bound_to_one_shared_cpu`)."""
        return self._shares_one_cpu

    @property
    def polls_idle(self) -> bool:
        """Whether idle CPUs poll during this sampler's stops (while it samples; see
        `IdlePolling`)."""
        return self._idle_polling.active

    def set_rate(self, hz: float) -> None:
        """Change the sampling rate; takes effect from the next sample."""
        hz = min(max(hz, MIN_HZ), MAX_HZ)
        self._schedule.period = 1.0 / hz
        with self._lock:
            self._stats.requested_hz = hz

    def stats(self) -> SamplerStats:
        """A consistent copy of the counters."""
        with self._lock:
            copy = self._stats.copy()
        if self.state is State.RUNNING:
            copy.elapsed = time.monotonic() - copy.started_at
        return copy

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling, detach from the target, and wait for the thread to end."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until attached; re-raise an attach error here, in the caller's thread."""
        self.ready.wait(timeout)
        if self.attach_error is not None:
            raise self.attach_error

    # -- the sampling loop ---------------------------------------------------------------

    def _wait(self, wait: float, sleep: Callable[[float], None] | None) -> None:
        """Wait `wait` seconds for the next sample: through `sleep` when given (a tracer's,
        which wakes for the target's signals), else short waits sleep (precise) and long
        ones wait on the stop event (stoppable)."""
        if sleep is not None:
            sleep(min(wait, LONGEST_SLEEP))
        elif wait > 0.02:
            self._stop_event.wait(wait)
        else:
            time.sleep(wait)

    def _next_due(self, now: float, due: float) -> float:
        """When the sample after the one `due` (taken at `now`) is due (`Schedule.next`);
        counts that one as late when it was."""
        next_due, late = self._schedule.next(now, due)
        if late:
            with self._lock:
                self._stats.late += 1
        return next_due

    def _sample_running(self) -> tuple[Stack, float]:
        """One sample without stopping the target (and 0 seconds stopped)."""
        reader = self.target.reader
        return reader.finish(sample_running(reader, self._sleep_probe.sleeping)), 0.0

    def run(self) -> None:
        """Attach, sample until told to stop, detach. Never raises."""
        tracer: Tracer | None = None
        end_state = State.DETACHED
        try:
            tight_timer_slack()
            if self.blocking:
                try:
                    tracer = Tracer(self.target.pid)
                except TargetGoneError:
                    end_state = State.EXITED  # exited before the first sample: not an error
                    return
                except XrtopError as err:
                    self.attach_error = err
                    self.state = State.FAILED
                    return
            self._shares_one_cpu = bound_to_one_shared_cpu(self.target.pid)
            if tracer is not None and self.poll_idle:
                self._idle_polling = IdlePolling()
            self.target.reader.set_recheck_head(tracer is None)
            capture = None
            if tracer is not None:
                capture = StoppedCapture(
                    tracer, self.target.reader, self._idle_polling, self.stop_times
                )
            try:
                if capture is not None:
                    capture.verify_layout(self.target)
                else:
                    verify_layout(self.target)
            except XrtopError as err:
                self.attach_error = err
                self.state = State.FAILED
                return
            self.state = State.RUNNING
            with self._lock:
                self._stats.started_at = time.monotonic()
            self.ready.set()
            end_state = self._loop(tracer, capture)
        except Exception as err:  # a bug must not leave the target stopped or traced
            with self._lock:
                self._stats.count_error("internal", f"{type(err).__name__}: {err}")
            end_state = State.FAILED
        finally:
            self._idle_polling.close()
            if tracer is not None:
                tracer.detach()
                self.exit_status = tracer.exit_status
            self._sleep_probe.close()
            with self._lock:
                if self._stats.started_at:  # zero when it never got to sample
                    self._stats.elapsed = time.monotonic() - self._stats.started_at
            if self.state is not State.FAILED or end_state is State.FAILED:
                self.state = end_state
            self.ready.set()
            if self.on_end is not None:
                self.on_end(self.state)

    def _loop(self, tracer: Tracer | None, capture: StoppedCapture | None) -> State:
        stats = self._stats
        started = stats.started_at
        deadline_end = started + self.duration if self.duration else None
        next_due = self._schedule.start(started)
        next_liveness = started + _LIVENESS_EVERY
        log, lock, monotonic = self.log, self._lock, time.monotonic
        # One sample, and the seconds the target was stopped for it.
        sample = capture.sample if capture is not None else self._sample_running
        # Blocking mode wakes a little early to warm the caches (`StoppedCapture.sample`).
        lead = _WARM_LEAD if tracer is not None else 0.0
        while not self._stop_event.is_set():
            now = monotonic()
            if deadline_end is not None and now >= deadline_end:
                return State.DETACHED
            if now >= next_liveness:
                next_liveness = now + _LIVENESS_EVERY
                if not self.target.alive():
                    return State.EXITED
            if tracer is not None and tracer.user_stopped:
                # Someone stopped R (SIGSTOP, Ctrl-Z): its stack cannot change, and R's own
                # Rprof takes no samples then either. Interrupting it would only make the
                # kernel run it: wait for the SIGCONT instead, then sample on schedule.
                try:
                    tracer.pass_signals()
                except TargetGoneError:
                    return State.EXITED
                if tracer.user_stopped:
                    tracer.sleep(LONGEST_SLEEP)
                next_due = self._schedule.start(time.monotonic())
                continue
            wait = next_due - now - lead
            if wait > 0:
                if deadline_end is not None:
                    wait = min(wait, deadline_end - now)
                if tracer is not None:
                    # Signals the target gets between samples hold it stopped until they
                    # are handed on: hand them on now, and wake for the next one.
                    try:
                        tracer.pass_signals()
                    except TargetGoneError:
                        return State.EXITED
                self._wait(wait, tracer.sleep if tracer is not None else None)
                continue
            next_due = self._next_due(now, next_due)
            try:
                stack, stopped = sample()
            except TargetGoneError:
                return State.EXITED
            except SampleError as err:
                with lock:
                    stats.count_error(err.kind, str(err))
                continue
            taken = monotonic()
            with lock:
                count_sample(stats, stack, stopped, taken)
            log.add(stack, taken)
            self.last_stack = stack
            on_sample = self.on_sample
            if on_sample is not None:
                on_sample(stack)
        return State.DETACHED
