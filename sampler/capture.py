"""One sample's capture: stop R, copy what changes as it runs, resume; then finish the copy.

This is where a sample is taken, for the sampler thread and `xrtop dump` alike. A sample has
two halves, so that R stays stopped as briefly as possible:

- stopped (`StoppedCapture.sample`): the stack reader's snapshot, one `process_vm_readv`
  of what the last samples needed (`sampler.rstack`), a check that it holds the whole
  chain, and R's registers unless it was running right before; all copies of our own.
- resumed: the copies are decoded and named (`StackReader.decode_snapshot`, `finish`).

Copies taken while stopped belong in `StoppedCapture.sample`'s stop and their decoding after
`resume()`: e.g. whole spans of R's C stack and byte-code node stack, or the registers and
stack for unwinding native frames.
Without stops (`--nonblocking`) `sample_running` reads R as it runs and drops torn copies.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import TypeVar

from sampler.errors import TornSampleError
from sampler.errors import XrtopError
from sampler.idlepoll import IdlePolling
from sampler.model import Stack
from sampler.ptrace import Tracer
from sampler.rstack import RawSample
from sampler.rstack import StackReader
from sampler.target import Target
from sampler.target import layout_discriminator
from sampler.target import verify_layout

if TYPE_CHECKING:
    from sampler.nativecapture import NativeCopy  # imported by Target.set_native, if asked

_T = TypeVar("_T")
#: A longer PTRACE_CONT means this thread lost its CPU meanwhile (`while_stopped`);
#: normally it takes 3-5 us, 20 at the 99th percentile.
_RESUME_TAKES_AT_MOST = 0.0002
# Reads of one sample in nonblocking mode before it is dropped as torn. R builds a deep
# stack one call every microsecond or two, so three tries in a row (~30 us each at 37
# frames) could all land inside one build-up (0.8 % of samples dropped); eight span about
# a quarter of a millisecond, well within a sample's period even at 1000 Hz, and a moment
# represented by one a little later biases a profile less than a moment left out.
_TORN_TRIES = 8
#: Spans of R's stacks (sampler.spans) take over from the snapshot plan once its misses
#: (a count that decays by a tenth per sample) exceed this: about one sample in five
#: missing, where a miss, which reads the contexts the plan lacks a stride at a time, costs
#: more than spans would. A plan that recognises a stack costs a half to a third of a span
#: copy, so a loop's lone detours (a call to `Sys.time()`) keep it. Before R 4.4 each R
#: call takes 6-20 KB of C stack, so a span of varied code is 0.4-1.1 MB, yet one read of
#: it costs less than a miss (bench/span_cost.py, host R 4.2 and R 4.0); from 4.4 closure
#: calls from byte code keep their contexts on R's node stack, under 100 bytes apart.
_PLAN_MISSES_FOR_SPANS = 2.0
#: While spans are copied, the plan is tried again every this many samples, if the last
#: stack had at most _PLAN_PROBE_DEPTH contexts (a miss reads each context the plan lacks:
#: 35 ms at 2,500 frames on R 4.6).
_PLAN_PROBE_EVERY = 50
_PLAN_PROBE_DEPTH = 200


class StoppedCapture:
    """Samples one target by stopping its traced thread around the copies.

    Call from the thread that seized the target (`Tracer`).
    """

    def __init__(
        self,
        tracer: Tracer,
        reader: StackReader,
        idle_polling: IdlePolling | None = None,
        stop_times: array[float] | None = None,
    ) -> None:
        """Sample through `tracer` and `reader`; idle CPUs poll during stops with
        `idle_polling` (see `IdlePolling`); each sample's stop adds its seconds to
        `stop_times`."""
        self.tracer = tracer
        self.reader = reader
        self.idle_polling = idle_polling or IdlePolling(None)
        self.stop_times = stop_times if stop_times is not None else array("f")
        # Whether span snapshots work here (they need the registers), and how often the
        # plan missed lately (a decaying count, see `_plan_holds`).
        self._spans_work = True
        self._plan_misses = 0.0
        self._since_probe = 0
        self._last_contexts = 0
        #: Samples copied as spans (the others by the snapshot plan).
        self.span_samples = 0
        #: The registers and stack the last stop copied for native frames (`--native`).
        self._native_copy: NativeCopy | None = None

    def sample(self) -> tuple[Stack, float]:
        """One sample, and the seconds the target was stopped for it.

        While stopped: the snapshot, a quick check that it has everything, and the
        registers unless R was running right before; decoded after resuming. The copies
        are ours, so decoding them later sees the stack exactly as it was at the stop.
        When the check fails, the rest is read still stopped, so the sample is of this very
        moment either way.
        """
        reader, tracer = self.reader, self.tracer
        # With lines every planned copy is decoded while stopped (not a miss: the plan also
        # copies the srcref regions, which a span copy would read one by one), so spans
        # only without lines.
        spans = reader.spans is not None and self._spans_work and reader.lines is None
        self._native_copy = None
        if spans and not self._plan_holds():
            # The registers come first: the stack pointer bounds the C-stack span.
            regs = True
            self.span_samples += 1
            span_read = self._with_native(self._span_snapshot, True)
            (got, raw, have_regs), _, stopped = self.while_stopped(span_read, False)
        else:
            if not tracer.held:  # (stopped already, R has nothing to gain from it)
                reader.warm()
            # Registers only tell whether R waited in a system call (idle): not worth a
            # system call in the stop when /proc says R runs right now (`running()`), nor
            # a second one when the native copy saves them.
            regs = reader.native is None and not tracer.running()
            plan_read = self._with_native(self._snapshot, False)
            (got, raw), have_regs, stopped = self.while_stopped(plan_read, regs)
            have_regs = have_regs or self._native_copy is not None
            if spans:
                self._plan_misses = 0.9 * self._plan_misses + (raw is not None)
        if raw is None:
            raw = reader.decode_snapshot(got)
        if raw is None:
            # Only if the check and the decoder disagree (a bug): sample again.
            captured, have_regs, again = self.while_stopped(
                self._with_native(reader.capture, False), regs
            )
            have_regs = have_regs or self._native_copy is not None
            raw, stopped = captured, stopped + again
        raw.idle = have_regs and tracer.was_in_syscall()
        self._last_contexts = raw.contexts
        self.stop_times.append(stopped)
        stack = reader.finish(raw)
        if reader.native is not None and self._native_copy is not None:
            stack = reader.native.mixed(stack, raw, self._native_copy)
        return stack, stopped

    def _with_native(self, read: Callable[[], _T], spans_copied: bool) -> Callable[[], _T]:
        """`read`, followed by the native copy when native frames are wanted (`--native`):
        into `_native_copy`, for `NativeFrames.mixed` after resuming."""
        native = self.reader.native
        if native is None:
            return read

        def read_and_copy() -> _T:
            result = read()
            self._native_copy = native.copy(self.tracer, spans_copied and self._spans_work)
            return result

        return read_and_copy

    def while_stopped(self, read: Callable[[], _T], regs: bool = True) -> tuple[_T, bool, float]:
        """`read()` while the target is stopped, then (with `regs`) its registers saved:
        the result, whether the registers were saved, and the seconds the target was
        stopped. Idle CPUs poll from before the stop to after it (`IdlePolling`)."""
        polling = self.idle_polling
        tracer = self.tracer
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

    def _plan_holds(self) -> bool:
        """Whether this sample reads the snapshot plan rather than spans: while the plan
        held nearly every recent stack (a loop's, recognised), it costs least; once it
        misses (about one sample in five), spans do, and every _PLAN_PROBE_EVERY-th sample
        tries the plan again, so that a loop that starts is noticed (its misses teach the
        plan the loop's stacks), unless the last stack was too deep for a miss to be cheap."""
        if self._plan_misses < _PLAN_MISSES_FOR_SPANS:
            return True
        self._since_probe += 1
        if self._since_probe < _PLAN_PROBE_EVERY or self._last_contexts > _PLAN_PROBE_DEPTH:
            return False
        self._since_probe = 0
        self._plan_misses = _PLAN_MISSES_FOR_SPANS - 0.5  # one more miss: spans again
        return True

    def _span_snapshot(self) -> tuple[int, RawSample | None, bool]:
        """`_snapshot` as spans (`StackReader.snapshot_at`), and whether the registers were
        saved. Call while the target is stopped."""
        reader = self.reader
        if not self.tracer.save_registers():
            self._spans_work = False  # no registers here: snapshots by plan from now on
            return (*self._snapshot(), False)
        got = reader.snapshot_at(self.tracer.stack_pointer())
        reader.read_builtin()
        return got, None if reader.snapshot_complete(got) else reader.decode_stopped(got), True

    def _snapshot(self) -> tuple[int, RawSample | None]:
        """The snapshot's byte count, and the sample decoded now if the snapshot lacks
        something (`None`: decode it after resuming). Call while the target is stopped."""
        reader = self.reader
        got = reader.snapshot()
        reader.read_builtin()
        return got, None if reader.snapshot_complete(got) else reader.decode_stopped(got)

    def verify_layout(self, target: Target, attempts: int = 40) -> None:
        """`sampler.target.verify_layout`, each try taken while the target is stopped."""

        def capture() -> tuple[RawSample, bool | None]:
            return target.reader.capture(), layout_discriminator(target)

        verify_layout(target, lambda: self.while_stopped(capture)[0], attempts=attempts)


def sample_running(reader: StackReader, sleeping: Callable[[], bool]) -> RawSample:
    """One sample read while R runs (`--nonblocking`); `finish` it. `sleeping` says whether
    R's thread sleeps now (the idle flag). Raise TornSampleError when every try was torn.

    If R's head moved while the chain was read, the copy may mix two stacks. Each snapshot
    reads the head first and again last, in the same system call, so a copy R changed
    meanwhile is known at once; it is read again right away (a few microseconds later R has
    usually finished the calls or returns it was making), and dropped only when every try
    was torn (see _TORN_TRIES).
    """
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
                continue
        raw.idle = sleeping()
        return raw
    raise TornSampleError("the stack changed while it was read")


def sample_once(
    target: Target,
    *,
    blocking: bool = True,
    sleeping: Callable[[], bool] = lambda: False,
    timeout: float = 10.0,
) -> Stack:
    """The stack of `target` right now, taken as the sampler thread takes each sample
    (after checking the layout); raise XrtopError when it cannot be read.

    Blocking, it seizes, stops and detaches the target in a short-lived thread of its own:
    ptrace ties a tracee to one thread, and the main thread's signal handling must not
    interrupt it. `sleeping` gives the idle flag without stops.
    """
    result: list[Stack | BaseException] = []

    def take() -> None:
        try:
            if blocking:
                tracer = Tracer(target.pid)
                try:
                    capture = StoppedCapture(tracer, target.reader)
                    capture.verify_layout(target, attempts=10)
                    stack = capture.sample()[0]
                finally:
                    tracer.detach()
            else:
                stack = target.reader.finish(sample_running(target.reader, sleeping))
            result.append(stack)
        except Exception as err:
            result.append(err)

    worker = threading.Thread(target=take, name=f"xrtop-sample-{target.pid}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        raise XrtopError(
            f"could not read the stack of process {target.pid} within {timeout:g} s",
            "The target may be stuck in the kernel; try again.",
        )
    outcome = result[0]
    if isinstance(outcome, XrtopError):
        raise outcome
    if isinstance(outcome, BaseException):
        raise XrtopError(
            f"could not read the stack of process {target.pid}: {outcome}",
            "The target may have exited; try again.",
        )
    return outcome
