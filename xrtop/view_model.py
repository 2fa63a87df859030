"""What the live view shows, without any widget: the aggregate over the samples, the
window, the filter, pause, by-line, idle, and the header's status.

`ViewModel` holds the user's choices (`ViewState`) and the aggregates they make of a
`ProfileSource`'s samples; the app asks it what to draw and tells it what the user
pressed. Nothing here needs a terminal, so it is tested with plain function calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from sampler.mixed import FrameChoice
from sampler.model import Aggregate
from sampler.model import SampleLog
from sampler.model import Stack
from sampler.thread import MAX_HZ
from sampler.thread import MIN_HZ
from sampler.thread import State
from widgets.format import Status
from xrtop.sources import ProfileSource

#: The "last N seconds" windows `w` cycles through (None = cumulative).
WINDOWS: tuple[float | None, ...] = (None, 10.0, 60.0)
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

    A change of what is counted (reset, by-line, idle, a new source) starts a new
    aggregate, filled by the next `take_in_new()` (the app's refresh); while paused it is
    filled at once with the frozen samples. `dirty` says the active view needs drawing
    again; `tree_reset` that the tree's expansion should start afresh when drawn next.
    """

    def __init__(self, source: ProfileSource | None, include_idle: bool = False) -> None:
        """Show `source` (None: nothing yet), counting idle samples when `include_idle`."""
        self.source = source
        self.view_state = ViewState(include_idle=include_idle)
        #: Samples before this index of the log are not counted (nor saved): `r`.
        self.reset_at = 0
        self.agg = self._new_aggregate()
        self._window_agg: Aggregate | None = None
        self._shown_upto = -1
        self.dirty = True
        self.tree_reset = True
        #: The missing source references were said once (by line only).
        self.lines_note_given = False
        self._last_state: State | None = None
        self._state_seen = False

    # -- the aggregates -----------------------------------------------------------------------

    def _new_aggregate(self) -> Aggregate:
        log = self.source.log if self.source is not None else SampleLog(10000)
        vs = self.view_state
        return Aggregate(
            log,
            start=self.reset_at,
            by_line=vs.by_line,
            include_idle=vs.include_idle,
            frames=self._frames(),
        )

    def _frames(self) -> FrameChoice | None:
        """Which frames of each stack are counted (None: all)."""
        vs = self.view_state
        return None if vs.native and vs.evaluator else FrameChoice(vs.native, vs.evaluator)

    def rebuild(self) -> None:
        """Start aggregating again (reset, by-line or idle toggle, new source).

        While paused, the new aggregate takes in the samples the old one had, so that the
        frozen display shows the same samples, counted the new way.
        """
        upto = self.agg.consumed
        self.agg = self._new_aggregate()
        self._window_agg = None
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
        if self.view_state.paused:
            return
        self._take_in(None)
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
        start = self.reset_at
        if n > start:
            start = max(start, log.index_at_time(log.times[n - 1] - vs.window))
        old = self._window_agg
        if old is not None and (old.start, old.consumed) == (start, n):
            return  # the same samples (a file, a pause, or w and the refresh it makes)
        window = Aggregate(
            log,
            start=start,
            by_line=vs.by_line,
            include_idle=vs.include_idle,
            frames=self._frames(),
        )
        window.update(n)
        self._window_agg = window

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
            stack: Stack | None = self.source.log.stack_at(self.agg.consumed - 1)
        else:
            stack = self.source.last_stack()
        frames = self._frames()
        return frames(stack) if frames is not None and stack is not None else stack

    # -- what the user chose ------------------------------------------------------------------

    def set_source(self, source: ProfileSource | None) -> None:
        """Show `source` from now on, from its first sample, not paused."""
        self.source = source
        self.reset_at = 0
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
            self.rebuild()

    def toggle_by_line(self) -> None:
        """Aggregate by function, or by function and source line."""
        self.view_state.by_line = not self.view_state.by_line
        self.rebuild()

    def toggle_idle(self) -> bool:
        """Count idle samples in the percentages, or leave them out; False (and nothing
        changes) when the source does not know which samples are idle."""
        if self.source is None or not self.source.idle_known:
            return False
        self.view_state.include_idle = not self.view_state.include_idle
        self.rebuild()
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
            samples=len(source.log),
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
            waiting=max(0, len(source.log) - self.agg.consumed),
            window=vs.window,
            by_line=vs.by_line,
            filter_text=vs.needle,
            stream=source.stream_path,
            last_error=stats.last_error if stats.error_count else "",
        )
