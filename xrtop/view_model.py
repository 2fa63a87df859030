"""What the live view shows, without any widget: the aggregate over the samples, the
window, the filter, pause, by-line, idle, and the header's status.

`ViewModel` holds the user's choices (`ViewState`) and the aggregates they make of a
`ProfileSource`'s samples; the app asks it what to draw and tells it what the user
pressed. Nothing here needs a terminal, so it is tested with plain function calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sampler.mixed import FrameChoice
from sampler.mixed import is_native
from sampler.model import Aggregate
from sampler.model import FunctionKey
from sampler.model import ProcessRow
from sampler.model import SampleLog
from sampler.model import Stack
from sampler.thread import MAX_HZ
from sampler.thread import MIN_HZ
from sampler.thread import State
from widgets.format import Status
from xrtop.heap import HeapSettler
from xrtop.processes_view import ProcessesView
from xrtop.processes_view import ProcessPart
from xrtop.sources import LiveSource
from xrtop.sources import ProfileSource

#: The "last N seconds" windows `w` cycles through (None = cumulative).
WINDOWS: tuple[float | None, ...] = (None, 10.0, 60.0)
#: Seconds between slices of the aggregates' work done ahead (`ViewModel.fold_ahead`), the
#: seconds a slice may take, and the distinct stacks it takes at a time (about 2 ms of work).
FOLD_AHEAD_S = 0.02
FOLD_AHEAD_SLICE_S = 0.01
FOLD_AHEAD_STACKS = 500
#: Sampling rates `+` and `-` step through.
RATES: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def step_rate(now: float, step: int) -> float:
    """The next rate on the RATES ladder above (`step` > 0) or below `now`."""
    if step > 0:
        return next((r for r in RATES if r > now + 1e-9), MAX_HZ)
    return next((r for r in reversed(RATES) if r < now - 1e-9), MIN_HZ)


def state_text(state: State | None) -> str:
    """How the header names a source's state (None: a recorded file)."""
    return "file (read-only)" if state is None else state.value


@dataclass
class ViewState:
    """What the user chose to see (not what the profile holds)."""

    paused: bool = False
    window: float | None = None
    by_line: bool = False
    include_idle: bool = False
    needle: str = ""
    #: Native frames (`--native` stacks hold them): shown; R's evaluator's among them too.
    native: bool = True
    evaluator: bool = False


class ViewModel:
    """The samples of one source as the user chose to see them.

    A reset, a new source or another process shown starts a new aggregate, filled by the
    next `take_in_new()` (the app's refresh); while paused it is filled at once with the
    frozen samples. Toggling by-line or idle shows the samples counted that way, kept up to
    date between keys (`fold_ahead`), or counts them again from their counts per stack.
    `dirty` says the active view needs drawing again; `tree_reset` that the tree's
    expansion should start afresh when drawn next.

    A source of several processes (`processes`) shows them all merged, or one alone: the
    shown log (`log`) is then not the source's own, and a reset is remembered as a length
    of each process's log and of the merged one.
    """

    def __init__(self, source: ProfileSource | None, include_idle: bool = False) -> None:
        """Show `source` (None: nothing yet), counting idle samples when `include_idle`."""
        self.source = source
        self.processes = _processes_of(source)
        self.view_state = ViewState(include_idle=include_idle)
        #: Samples before this index of the source's log are not counted (nor saved): `r`.
        self.reset_at = 0
        #: With several processes: where `r` left each log (None: the merged one).
        self._reset_marks: dict[int | None, int] = {}
        #: The tree's process level of the aggregates (None: one process shown).
        self._outermost: Callable[[int], FunctionKey] | None = None
        #: (log, stacks scanned, a native frame found) for `_may_hold_native`.
        self._native_scan: tuple[SampleLog | None, int, bool] = (None, 0, False)
        self.agg = self._new_aggregate()
        #: The same samples counted every other way the toggles (by-line, idle) lead to,
        #: by (by_line, include_idle): a toggle shows one at once, and the key after it
        #: finds the next ones ready too. `fold_ahead` keeps them up to date and builds
        #: their function counts and trees; the one shown before a toggle is one of them.
        self._others: dict[tuple[bool, bool], Aggregate] = {}
        self._window_agg: Aggregate | None = None
        #: Window aggregates by length, reused while they cover the same samples (`w`
        #: cycles through them on a file or while paused).
        self._windows: dict[float, Aggregate] = {}
        self._shown_upto = -1
        self._heap = HeapSettler()
        self.dirty = True
        self.tree_reset = True
        #: The missing source references were said once (by line only).
        self.lines_note_given = False
        self._last_state: State | None = None
        self._state_seen = False

    # -- the aggregates -----------------------------------------------------------------------

    @property
    def log(self) -> SampleLog:
        """The samples the views show: the source's, or of the processes shown."""
        if self.processes is not None:
            return self.processes.log()
        return self.source.log if self.source is not None else SampleLog(10000)

    def _start(self) -> int:
        """The first sample of `log` counted (after a reset)."""
        if self.processes is not None:
            return self._reset_marks.get(self.processes.selected, 0)
        return self.reset_at

    def _new_aggregate(self) -> Aggregate:
        vs = self.view_state
        self._outermost = self.processes.outermost() if self.processes is not None else None
        return Aggregate(
            self.log,
            start=self._start(),
            by_line=vs.by_line,
            include_idle=vs.include_idle,
            outermost=self._outermost,
            frames=self._frames(),
        )

    def _frames(self) -> FrameChoice | None:
        """Which frames of each stack are counted (None: all)."""
        vs = self.view_state
        if (vs.native and vs.evaluator) or not self._may_hold_native():
            return None  # no stack to filter: spare every aggregate a pass over each stack
        return FrameChoice(vs.native, vs.evaluator)

    def _may_hold_native(self) -> bool:
        """Whether the samples shown may hold native frames: a live `--native` session, or
        samples that hold one (the stacks are scanned once, as they come)."""
        source = self.source
        if isinstance(source, LiveSource) and source.session.sampling.native:
            return True
        log, scanned, found = self._native_scan
        stacks = self.log.stacks
        if log is not self.log:
            scanned, found = 0, False
        if not found:
            found = any(is_native(n) for stack in stacks[scanned:] for n in stack.names)
        self._native_scan = (self.log, len(stacks), found)
        return found

    def rebuild(self, same_log: bool = True) -> None:
        """Start aggregating again (reset, new source or process).

        While paused, the new aggregate takes in the samples the old one had (another log:
        all it has), so that the frozen display shows the same samples.
        """
        self._show(self._new_aggregate(), same_log)
        self._others = {}

    def _ways(self) -> list[tuple[bool, bool]]:
        """The ways of counting (by_line, include_idle) other than the shown one, those one
        toggle away first: every way a toggle may lead to, now or right after."""
        vs = self.view_state
        ways = [(not vs.by_line, vs.include_idle)]
        if self.source is not None and self.source.idle_known:
            ways += [(vs.by_line, not vs.include_idle), (not vs.by_line, not vs.include_idle)]
        return ways

    def _recount(self) -> None:
        """Show the samples counted the way the view state now says (by-line or idle
        toggled): the aggregate kept for it, else the shown one's counts per stack counted
        again (no sample is read again)."""
        vs, old = self.view_state, self.agg
        agg = self._others.pop((vs.by_line, vs.include_idle), None)
        if agg is None:
            agg = old.recounted(by_line=vs.by_line, include_idle=vs.include_idle)
        self._others[(old.by_line, old.include_idle)] = old
        self._show(agg)
        ways = self._ways()
        self._others = {way: a for way, a in self._others.items() if way in ways}

    def _show(self, agg: Aggregate, same_log: bool = True) -> None:
        upto = self.agg.consumed if same_log else None
        self.agg = agg
        self._window_agg = None
        self._windows = {}
        if self.view_state.paused:
            self._take_in(upto)
        self._shown_upto = -1
        self.dirty = True
        self.tree_reset = True

    def current(self) -> Aggregate:
        """The aggregate the views show: cumulative, or the last-N-seconds window."""
        return self._window_agg if self._window_agg is not None else self.agg

    def take_in_new(self) -> None:
        """Take in the samples that arrived (unless paused); mark the view dirty if any."""
        if self.processes is not None:
            self.processes.sync()
            if self.processes.relabelled():  # rare: once at most per process, early on
                self.rebuild()
                self.tree_reset = False
        if self.view_state.paused:
            return
        self._take_in(None)
        self._heap.settle(self.agg, len(self.agg.log.stacks))
        if self.agg.consumed != self._shown_upto:
            self._shown_upto = self.agg.consumed
            self.dirty = True

    def _take_in(self, stop: int | None) -> None:
        """Update the aggregate up to sample `stop` (None: all), and the window over it."""
        vs = self.view_state
        log = self.agg.log
        self.agg.update(stop)
        if vs.window is None:
            self._window_agg = None
            return
        n = self.agg.consumed
        start = self._start()
        if n > start:
            start = max(start, log.index_at_time(log.times[n - 1] - vs.window))
        old = self._windows.get(vs.window)
        if old is not None and (old.start, old.consumed) == (start, n):
            self._window_agg = old  # the same samples (a file, a pause, w and its refresh)
            return
        window = Aggregate(
            log,
            start=start,
            by_line=vs.by_line,
            include_idle=vs.include_idle,
            outermost=self._outermost,
            frames=self._frames(),
        )
        window.update(n)
        self._window_agg = self._windows[vs.window] = window

    def fold_ahead(self) -> bool:
        """Do a slice of the work the aggregates left for when they are read (the function
        counts, the tree), the shown one first, then count the samples every other way a
        toggle leads to (their function counts, then their trees), so that a key finds it
        done, also right after a toggle; whether some remains. Called on a timer: a slice
        is short, and keys are handled between."""
        ends = time.perf_counter() + FOLD_AHEAD_SLICE_S
        for agg in (self._window_agg, self.agg):
            while agg is not None and agg.fold_due(FOLD_AHEAD_STACKS):
                if time.perf_counter() >= ends:
                    return True
        ways = self._ways()
        for tree in (False, True):  # every way's function counts before any way's tree
            for by_line, include_idle in ways:
                other = self._others.get((by_line, include_idle))
                if other is None:
                    other = self.agg.recounted(by_line=by_line, include_idle=include_idle)
                    self._others[(by_line, include_idle)] = other
                other.update(self.agg.consumed)
                while other.fold_due(FOLD_AHEAD_STACKS, tree=tree):
                    if time.perf_counter() >= ends:
                        return True
        self._heap.tidy()
        return False

    def seconds_per_sample(self, agg: Aggregate) -> float:
        """Wall seconds one sample of `agg` stands for, from the sample times (rates may
        change)."""
        log = agg.log
        first, last = agg.start, agg.consumed - 1
        if last - first >= 1:
            return max(0.0, (log.times[last] - log.times[first]) / (last - first))
        return log.interval_us / 1e6

    def now_stack(self) -> Stack | None:
        """The stack the Now view shows: the latest shown sample while paused, else the
        latest taken."""
        if self.source is None:
            return None
        if self.view_state.paused and self.agg.consumed:
            stack: Stack | None = self.agg.log.stack_at(self.agg.consumed - 1)
        elif self.processes is not None:
            log = self.log
            stack = log.stack_at(len(log) - 1) if len(log) else None
        else:
            stack = self.source.last_stack()
        frames = self._frames()
        return frames(stack) if frames is not None and stack is not None else stack

    def process_list(self) -> tuple[list[ProcessRow], int | None]:
        """The process list, and the PID shown (None: all; no list without several
        processes)."""
        if self.processes is None:
            return [], None
        return self.processes.rows(), self.processes.selected

    def process_parts(self) -> list[ProcessPart]:
        """What of each process saving writes (since the last reset), the target first; empty
        for a source of one process."""
        marks = self._reset_marks
        return [ProcessPart(r.pid, r.label, marks.get(r.pid, 0)) for r in self.process_list()[0]]

    def select_process(self, pid: int | None) -> bool:
        """Show process `pid` alone (None: all, merged); whether that changed anything."""
        if self.processes is None or not self.processes.select(pid):
            return False
        self.rebuild(same_log=False)
        return True

    # -- what the user chose ------------------------------------------------------------------

    def set_source(self, source: ProfileSource | None) -> None:
        """Show `source` from now on, from its first sample, not paused."""
        self.source = source
        self.processes = _processes_of(source)
        self.reset_at = 0
        self._reset_marks = {}
        self.lines_note_given = False
        self.view_state.paused = False
        self.rebuild()

    def toggle_pause(self) -> None:
        """Freeze the display (sampling goes on and new samples wait), or resume."""
        self.view_state.paused = not self.view_state.paused
        self.dirty = True

    def reset(self) -> None:
        """Count (and save) from the next sample on."""
        if self.source is not None:
            self.reset_at = len(self.source.log)
            if self.processes is not None:
                self.processes.sync()
                self._reset_marks = self.processes.lengths()
            self.rebuild()

    def toggle_by_line(self) -> None:
        """Aggregate by function, or by function and source line."""
        self.view_state.by_line = not self.view_state.by_line
        self._recount()

    def toggle_idle(self) -> bool:
        """Count idle samples in the percentages, or leave them out; False (and nothing
        changes) when the source does not know which samples are idle."""
        if self.source is None or not self.source.idle_known:
            return False
        self.view_state.include_idle = not self.view_state.include_idle
        self._recount()
        self.tree_reset = False
        return True

    def toggle_native(self) -> None:
        """Show native frames (`--native`), or R's frames only."""
        self.view_state.native = not self.view_state.native
        self.rebuild()

    def toggle_evaluator(self) -> None:
        """Show R's evaluator's native frames (Rf_eval, bcEval, ...), or hide them."""
        self.view_state.evaluator = not self.view_state.evaluator
        self.rebuild()

    def cycle_window(self) -> None:
        """Cumulative -> last 10 s -> last 60 s -> cumulative."""
        i = WINDOWS.index(self.view_state.window)
        self.view_state.window = WINDOWS[(i + 1) % len(WINDOWS)]
        self._take_in(self.agg.consumed)  # the window over what is shown (also paused)
        self.dirty = True
        self.tree_reset = False

    def set_filter(self, needle: str) -> bool:
        """Show only rows (and tree paths) matching `needle` ("" : all); whether that changed
        the filter (when not, nothing needs drawing again)."""
        needle = needle.strip()
        if needle == self.view_state.needle:
            return False
        self.view_state.needle = needle
        self.dirty = True
        return True

    def unsaved(self, saved_count: int) -> bool:
        """Whether quitting would lose samples: live, some taken since reset, none of
        `saved_count` saves made, and not streamed to a file."""
        source = self.source
        return (
            source is not None
            and source.live
            and not source.stream_path
            and saved_count == 0
            and len(source.log) > self.reset_at
        )

    # -- what to tell the user ----------------------------------------------------------------

    def lines_note_due(self) -> str | None:
        """The note on missing source references, the first time it is known while rows
        are by line (then never again for this source)."""
        if self.source is None or not self.view_state.by_line or self.lines_note_given:
            return None
        note = self.source.lines_note()
        if note is not None:
            self.lines_note_given = True
        return note

    def state_change(self) -> tuple[bool, State | None]:
        """(whether the source's state changed since last asked, the state now)."""
        state = self.source.state() if self.source is not None else None
        changed = not self._state_seen or state is not self._last_state
        self._state_seen = True
        self._last_state = state
        return changed, state

    def status(self) -> Status:
        """The header's content now (a source must be shown)."""
        source = self.source
        assert source is not None
        stats = source.stats()
        cpu, rss = source.usage()
        agg = self.current()
        vs = self.view_state
        return Status(
            title=source.title,
            pid=source.pid,
            r_version=source.r_version,
            state=state_text(source.state()),
            elapsed=stats.elapsed,
            samples=len(self.log),
            shown=agg.samples,
            requested_hz=stats.requested_hz,
            achieved_hz=stats.achieved_hz,
            errors=stats.error_count,
            late=stats.late,
            idle=agg.idle,
            in_range=agg.consumed - agg.start,
            include_idle=agg.include_idle,
            idle_known=source.idle_known,
            gc=agg.gc,
            gc_available=source.gc_available,
            no_source=vs.by_line and self.lines_note_given,
            cpu_percent=cpu,
            rss_bytes=rss,
            paused=vs.paused,
            waiting=max(0, len(self.log) - self.agg.consumed),
            window=vs.window,
            by_line=vs.by_line,
            filter_text=vs.needle,
            stream=source.stream_path,
            last_error=stats.last_error if stats.error_count else "",
            processes=self.processes.describe() if self.processes is not None else "",
        )


def _processes_of(source: ProfileSource | None) -> ProcessesView | None:
    """The processes of `source` to choose from (None: it has only the target)."""
    if source is None or source.processes is None:
        return None
    return ProcessesView(source.processes, source.log.interval_us)
