"""The sampler thread: samples a `Target` at a steady rate into a `SampleLog`.

A plain `threading.Thread` (no UI toolkit), used by the live view and headless alike.
Samples follow a deadline schedule (sample k is due at start + k/rate), so the rate does not
drift by the time each sample takes; a sample more than one interval late is counted as late
and the schedule skips ahead rather than bursting.

In blocking mode (the default) the thread seizes R's main thread with ptrace and stops it
only while a sample is copied. Everything about ptrace happens on this thread, as Linux
requires, and the target is detached on every way out of `run()`.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from array import array
from collections.abc import Callable
from enum import Enum
from typing import TypeVar

from sampler.errors import SampleError
from sampler.errors import TargetGoneError
from sampler.errors import TornSampleError
from sampler.errors import XrtopError
from sampler.model import SampleLog
from sampler.model import SamplerStats
from sampler.model import Stack
from sampler.ptrace import IdlePolling
from sampler.ptrace import Tracer
from sampler.ptrace import bound_to_one_shared_cpu
from sampler.rstack import RawSample
from sampler.target import Target
from sampler.target import layout_discriminator
from sampler.target import verify_layout

MIN_HZ = 1.0
MAX_HZ = 2000.0
_LIVENESS_EVERY = 0.25  # seconds between checks that the PID is still the same process
# Longest sleep between looks at the stop request in blocking mode (the tracer's sleep is
# not interruptible by `stop()`).
_LONGEST_SLEEP = 0.05
_T = TypeVar("_T")
# Reads of one sample in nonblocking mode before it is dropped as torn. R builds a deep
# stack one call every microsecond or two, so three tries in a row (~30 us each at 37
# frames) could all land inside one build-up (0.8 % of samples dropped); eight span about
# a quarter of a millisecond, well within a sample's period even at 1000 Hz, and a moment
# represented by one a little later biases a profile less than a moment left out.
_TORN_TRIES = 8
# In blocking mode the thread wakes this long before a sample is due and runs the stopped
# half once while R runs (`StackReader.warm`), so that when R is stopped the code, the
# kernel's paths and R's page tables are in this CPU's caches: a stop after a sleep costs
# half as much again otherwise. The sample is taken right after, a few microseconds early.
_WARM_LEAD = 0.00005
_PR_SET_TIMERSLACK = 29
#: A longer PTRACE_CONT means this thread lost its CPU meanwhile (`_while_stopped`);
#: normally it takes 3-5 us, 20 at the 99th percentile.
_RESUME_TAKES_AT_MOST = 0.0002


class State(Enum):
    """Where the sampler is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    EXITED = "target exited"
    DETACHED = "detached"
    FAILED = "failed"


def _tight_timer_slack() -> None:
    """Ask the kernel to wake this thread on time (the default slack is 50 us)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


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
        self._period = 1.0 / rate_hz
        self._stat_fd: int | None = None
        self.last_stack: Stack | None = None
        #: The target's wait status when this thread reaped its exit (the tracer's waitpid
        #: takes it even from the real parent when xrtop launched the target itself).
        self.exit_status: int | None = None

    # -- control, from any thread ---------------------------------------------------------

    @property
    def rate_hz(self) -> float:
        """The requested sampling rate."""
        return 1.0 / self._period

    @property
    def shares_one_cpu(self) -> bool:
        """Whether R and this thread can only run on one and the same CPU (known once
        attached; see `sampler.ptrace.bound_to_one_shared_cpu`)."""
        return self._shares_one_cpu

    @property
    def polls_idle(self) -> bool:
        """Whether idle CPUs poll during this sampler's stops (while it samples; see
        `IdlePolling`)."""
        return self._idle_polling.active

    def set_rate(self, hz: float) -> None:
        """Change the sampling rate; takes effect from the next sample."""
        hz = min(max(hz, MIN_HZ), MAX_HZ)
        self._period = 1.0 / hz
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

    def _sample(self, tracer: Tracer | None) -> tuple[Stack, float]:
        """One sample, and the seconds the target was stopped for it (0 without stops)."""
        reader = self.target.reader
        stopped = 0.0
        if tracer is not None:
            # While stopped: one process_vm_readv of what the last samples needed (the
            # snapshot), a quick check that it has everything, and the registers unless R
            # was running right before; decode after resuming. The copies are ours, so
            # decoding them later sees the stack exactly as it was at the stop. When the
            # check fails, the rest is read now, still stopped, so the sample is of this
            # very moment either way.
            reader.warm()
            # Registers only tell whether R waited in a system call (idle): not worth a
            # system call in the stop when /proc says R runs right now (`running()`).
            regs = not tracer.running()
            (got, raw), have_regs, stopped = self._while_stopped(tracer, self._snapshot, regs)
            if raw is None:
                raw = reader.decode_snapshot(got)
            if raw is None:
                # Only if the check and the decoder disagree (a bug): sample again.
                captured, have_regs, again = self._while_stopped(tracer, reader.capture, regs)
                raw, stopped = captured, stopped + again
            raw.idle = have_regs and tracer.was_in_syscall()
            self.stop_times.append(stopped)
        else:
            # Without a stop, R runs on while the chain is read: if its head moved, the
            # copy may mix two stacks. Each snapshot reads the head first and again last,
            # in the same system call, so a copy R changed meanwhile is known at once; it
            # is read again right away (a few microseconds later R has usually finished
            # the calls or returns it was making), and dropped and counted only when every
            # try was torn (see _TORN_TRIES).
            raw = None
            for _ in range(_TORN_TRIES):
                got = reader.snapshot()
                torn = reader.snapshot_torn(got)
                if torn:
                    continue
                raw = reader.decode_snapshot(got) if torn is not None else None
                if raw is None:
                    # The copy lacks something: read the rest, and check the head after.
                    raw = reader.capture()
                    if reader.read_globals()[0] != raw.head:
                        raw = None
                        continue
                break
            if raw is None:
                raise TornSampleError("the stack changed while it was read")
            raw.idle = self._thread_sleeping()
        return reader.finish(raw), stopped

    def _while_stopped(
        self, tracer: Tracer, read: Callable[[], _T], regs: bool = True
    ) -> tuple[_T, bool, float]:
        """`read()` while the target is stopped, then (with `regs`) its registers saved:
        the result, whether the registers were saved, and the seconds the target was
        stopped. Idle CPUs poll from before the stop to after it (`IdlePolling`)."""
        polling = self._idle_polling
        polling.on()
        try:
            began = time.perf_counter()
            tracer.stop()
            try:
                result = read()
                have_regs = regs and tracer.save_registers()
            finally:
                resuming = time.perf_counter()
                tracer.resume()
                resumed = time.perf_counter()
                # R runs again within resume(), a call of microseconds. One that takes much
                # longer lost this thread's CPU on its way out, to R itself when they share
                # one: R ran on meanwhile, so the stop is counted to the call's start.
                ended = resumed if resumed - resuming < _RESUME_TAKES_AT_MOST else resuming
                stopped = ended - began
        finally:
            polling.off()
        return result, have_regs, stopped

    def _snapshot(self) -> tuple[int, RawSample | None]:
        """The snapshot's byte count, and the sample decoded now if the snapshot lacks
        something (`None`: decode it after resuming). Call while the target is stopped."""
        reader = self.target.reader
        got = reader.snapshot()
        return got, None if reader.snapshot_complete(got) else reader.decode_stopped(got)

    def _stopped_capture(
        self, tracer: Tracer | None
    ) -> Callable[[], tuple[RawSample, bool | None]] | None:
        """A layout-checking capture that stops the target around the reads."""
        if tracer is None:
            return None
        target = self.target

        def capture() -> tuple[RawSample, bool | None]:
            return target.reader.capture(), layout_discriminator(target)

        return lambda: self._while_stopped(tracer, capture)[0]

    def _thread_sleeping(self) -> bool:
        """Whether R's main thread sleeps (nonblocking mode reads /proc, not registers)."""
        try:
            if self._stat_fd is None:
                self._stat_fd = os.open(
                    f"/proc/{self.target.pid}/task/{self.target.pid}/stat", os.O_RDONLY
                )
            data = os.pread(self._stat_fd, 512, 0)
            return data.rsplit(b")", 1)[1].split()[0] in (b"S", b"D")
        except OSError:
            return False

    def run(self) -> None:
        """Attach, sample until told to stop, detach. Never raises."""
        tracer: Tracer | None = None
        end_state = State.DETACHED
        try:
            _tight_timer_slack()
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
            try:
                verify_layout(self.target, self._stopped_capture(tracer))
            except XrtopError as err:
                self.attach_error = err
                self.state = State.FAILED
                return
            self.state = State.RUNNING
            with self._lock:
                self._stats.started_at = time.monotonic()
            self.ready.set()
            end_state = self._loop(tracer)
        except Exception as err:  # a bug must not leave the target stopped or traced
            with self._lock:
                self._stats.count_error("internal", f"{type(err).__name__}: {err}")
            end_state = State.FAILED
        finally:
            self._idle_polling.close()
            if tracer is not None:
                tracer.detach()
                self.exit_status = tracer.exit_status
            if self._stat_fd is not None:
                os.close(self._stat_fd)
            with self._lock:
                if self._stats.started_at:  # zero when it never got to sample
                    self._stats.elapsed = time.monotonic() - self._stats.started_at
            if self.state is not State.FAILED or end_state is State.FAILED:
                self.state = end_state
            self.ready.set()
            if self.on_end is not None:
                self.on_end(self.state)

    def _loop(self, tracer: Tracer | None) -> State:
        stats = self._stats
        started = stats.started_at
        deadline_end = started + self.duration if self.duration else None
        next_due = started
        next_liveness = started + _LIVENESS_EVERY
        log, lock, monotonic = self.log, self._lock, time.monotonic
        # Blocking mode wakes a little early to warm the caches (see `_sample`).
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
                    tracer.sleep(_LONGEST_SLEEP)
                next_due = time.monotonic()
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
                    tracer.sleep(min(wait, _LONGEST_SLEEP))
                # Short waits sleep (precise); long ones wait on the event (stoppable).
                elif wait > 0.02:
                    self._stop_event.wait(wait)
                else:
                    time.sleep(wait)
                continue
            period = self._period
            if now - next_due > period:
                with lock:
                    stats.late += 1
                next_due = now
            next_due += period
            try:
                stack, stopped = self._sample(tracer)
            except TargetGoneError:
                return State.EXITED
            except SampleError as err:
                with lock:
                    stats.count_error(err.kind, str(err))
                continue
            taken = monotonic()
            with lock:
                stats.stopped_total += stopped
                if stopped > stats.stopped_max:
                    stats.stopped_max = stopped
                if stack.names or stack.gc:
                    stats.samples += 1
                    if stack.idle:
                        stats.idle += 1
                    if stack.gc:
                        stats.gc += 1
                else:
                    stats.empty += 1
                    if stack.idle:
                        stats.idle += 1
                stats.last_sample_at = taken
            log.add(stack, taken)
            self.last_stack = stack
            on_sample = self.on_sample
            if on_sample is not None:
                on_sample(stack)
        return State.DETACHED
