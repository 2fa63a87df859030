"""The live view: `xrtop PID`, `xrtop -- Rscript script.R`, `xrtop` (picker), `xrtop view FILE`.

Hand-off between the sampler and the UI: the `SamplerThread` appends to a `SampleLog` and
never touches the UI; the app reads the log on a timer (`REFRESH_S`) through an incremental
`Aggregate` and redraws only the active view. Nothing here ever blocks the sampler.

Attaching (and launching) happens before `App.run()`, so every attach error is printed by
`cli.main` on a normal terminal. The app owns only what a `ProfileSource` offers: a live
session (`LiveSource`) or a file (`FileSource`, read-only). Every way out of the app (q,
Ctrl-C, SIGTERM, an exception) ends in `run_live`'s `finally`, which detaches the target.

The process picker (`xrtop.picker.PickerScreen`): `XrtopApp.start_session` attaches to a PID
in a thread worker and shows it; `action_show_picker` (key `p`) detaches and opens the
picker.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from typing import ClassVar
from typing import Protocol

import psutil
from textual import events
from textual import on
from textual import work
from textual.app import App
from textual.app import ComposeResult
from textual.app import SystemCommand
from textual.binding import Binding
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets import Input
from textual.widgets import Static
from textual.widgets import TabbedContent
from textual.widgets import TabPane

from sampler.errors import UsageError
from sampler.errors import XrtopError
from sampler.export import write_collapsed
from sampler.export import write_speedscope
from sampler.model import Aggregate
from sampler.model import SampleLog
from sampler.model import SamplerStats
from sampler.model import Stack
from sampler.rprof import RprofFile
from sampler.rprof import RprofOptions
from sampler.rprof import write_rprof
from sampler.target import inspect_process
from sampler.thread import MAX_HZ
from sampler.thread import MIN_HZ
from sampler.thread import State
from widgets.call_tree import CallTreeView
from widgets.format import Status
from widgets.format import fmt_bytes
from widgets.hot_table import HotTable
from widgets.now_view import NowView
from widgets.status import StatusHeader
from xrtop.picker import PickerScreen
from xrtop.session import Launched
from xrtop.session import SamplingOptions
from xrtop.session import Session
from xrtop.session import StreamedFile
from xrtop.session import default_output_name
from xrtop.session import open_output
from xrtop.session import source_note

#: Seconds between refreshes of the view (2 Hz or faster, as the brief asks).
REFRESH_S = 0.5
#: The "last N seconds" windows `w` cycles through (None = cumulative).
WINDOWS: tuple[float | None, ...] = (None, 10.0, 60.0)
#: Sampling rates `+` and `-` step through.
RATES: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
VIEWS = ("top", "tree", "now")

#: Every key, for the help screen and the README (key, what it does).
KEYS: tuple[tuple[str, str], ...] = (
    ("1 2 3 / tab", "switch view: Top, Tree, Now"),
    ("space", "pause the display; sampling goes on, new samples wait"),
    ("s", "save the samples since attach or reset as Rprof.out"),
    ("e", "export collapsed stacks or speedscope JSON"),
    ("r", "reset: count (and save) from now on"),
    ("+ / -", "sample faster / slower"),
    ("/", "filter as you type (enter keeps it, escape clears)"),
    ("l", "aggregate by function, or by function and line"),
    ("i", "idle samples (R waiting) in or out of the percentages"),
    ("w", "window: cumulative, last 10 s, last 60 s"),
    ("p", "pick another R process (detaches from this one)"),
    ("?", "this help"),
    ("q / ctrl+c", "quit; the target runs on, untraced"),
    ("Top view", "sort: click a heading, or < > to move the sort"),
    ("", "I inverts; o own, t total, n name"),
    ("Tree view", "enter toggles, → opens, ← closes"),
    ("", "E expand all, C collapse all"),
    ("", "f focus on the subtree, u leave the focus"),
    ("ctrl+p", "command palette"),
)


# -- what the app shows: a live session or a file ------------------------------------------


class ProfileSource(Protocol):
    """What the app needs from a profile, live or recorded."""

    live: bool
    log: SampleLog
    options: RprofOptions
    title: str
    pid: int | None
    r_version: str
    stream_path: str
    #: Whether samples mark idle ones (R waiting); a recorded file does not.
    idle_known: bool
    #: True: samples carry R's GC marker; False: this R build has none; None: not recorded.
    gc_available: bool | None

    def state(self) -> str:
        """ "running", "target exited", "detached", "failed" or "file"."""
        ...

    def stats(self) -> SamplerStats:
        """The sampler's counters."""
        ...

    def last_stack(self) -> Stack | None:
        """The most recent sample."""
        ...

    def rate_hz(self) -> float:
        """The requested sampling rate."""
        ...

    def set_rate(self, hz: float) -> None:
        """Change the sampling rate."""
        ...

    def usage(self) -> tuple[float | None, int | None]:
        """The target's CPU % and resident memory, when known."""
        ...

    def stop(self) -> None:
        """Stop sampling and detach (idempotent)."""
        ...

    def lines_note(self) -> str | None:
        """Why rows by line carry no lines, with the fix, once that is known (else None)."""
        ...


class FileSource:
    """A recorded Rprof.out: read-only, every sample one interval apart."""

    live = False

    def __init__(self, path: Path, profile: RprofFile) -> None:
        """Show `profile`, read from `path`."""
        self.path = path
        self.profile = profile
        self.log = profile.to_log()
        self.options = RprofOptions(profile.options.lines, profile.options.gc, idle=True)
        self.title = path.name
        self.pid: int | None = None
        self.r_version = ""
        self.stream_path = ""
        self.idle_known = False  # Rprof.out has no idle marker
        self.gc_available: bool | None = True if profile.options.gc else None
        hz = 1e6 / profile.interval_us
        n = len(self.log)
        self._stats = SamplerStats(
            requested_hz=hz,
            samples=n,
            gc=sum(n for sid, n in self.log.counts().items() if self.log.stacks[sid].gc),
            elapsed=n * profile.interval_us / 1e6,
        )

    def state(self) -> str:
        return "file"

    def stats(self) -> SamplerStats:
        return self._stats

    def last_stack(self) -> Stack | None:
        n = len(self.log)
        return self.log.stack_at(n - 1) if n else None

    def rate_hz(self) -> float:
        return self._stats.requested_hz

    def set_rate(self, hz: float) -> None:
        raise UsageError("a recorded file has a fixed rate")

    def usage(self) -> tuple[float | None, int | None]:
        return None, None

    def stop(self) -> None:
        pass

    def lines_note(self) -> str | None:
        return None


class LiveSource:
    """A running `Session` (and the command xrtop launched, if any)."""

    live = True

    def __init__(
        self, session: Session, launched: Launched | None = None, stream_path: str = ""
    ) -> None:
        """Show `session`, which has been started."""
        self.session = session
        self.launched = launched
        self.log = session.log
        self.options = session.sampling.options
        info = session.target.info
        self.title = info.script if launched is None else shlex.join(launched.argv)
        self.pid: int | None = session.target.pid
        self.r_version = session.target.version_text
        self.stream_path = stream_path
        self.idle_known = True
        self.gc_available: bool | None = session.target.gc_available
        self._process: psutil.Process | None = None
        with contextlib.suppress(psutil.Error):
            self._process = psutil.Process(self.pid)
            self._process.cpu_percent(None)  # the first call only starts the measurement
        self._stopped = False

    def state(self) -> str:
        return self.session.thread.state.value

    def stats(self) -> SamplerStats:
        return self.session.thread.stats()

    def last_stack(self) -> Stack | None:
        return self.session.thread.last_stack

    def rate_hz(self) -> float:
        return self.session.thread.rate_hz

    def set_rate(self, hz: float) -> None:
        self.session.thread.set_rate(hz)

    def usage(self) -> tuple[float | None, int | None]:
        if self._process is None or self.session.thread.state is not State.RUNNING:
            return None, None
        try:
            with self._process.oneshot():
                return self._process.cpu_percent(None), self._process.memory_info().rss
        except psutil.Error:
            return None, None

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.session.stop()

    def lines_note(self) -> str | None:
        return source_note(self.session.target)


# -- small screens -----------------------------------------------------------------------------


class HelpScreen(ModalScreen[None]):
    """Every key, in one table; any of escape, q, ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        """The key table."""
        width = max(len(k) for k, _ in KEYS)
        lines = [f"{key:>{width}}  {what}" for key, what in KEYS]
        with Vertical(id="help-box"):
            yield Static("xrtop keys", id="help-title")
            yield Static("\n".join(lines), id="help-body", markup=False)
            yield Static("escape closes", id="help-close")

    def action_close(self) -> None:
        """Back to the view."""
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str]):
    """A one-line question answered by a key; dismisses with the chosen key's value."""

    def __init__(self, question: str, choices: list[tuple[str, str, str]]) -> None:
        """`choices` are (key, label, value); escape gives "cancel"."""
        super().__init__()
        self.question = question
        self.choices = choices

    def compose(self) -> ComposeResult:
        """The question and the keys."""
        keys = "   ".join(f"[b]{key}[/b] {label}" for key, label, _ in self.choices)
        with Vertical(id="choice-box"):
            yield Static(self.question, id="choice-question", markup=False)
            yield Static(keys + "   [b]escape[/b] cancel", id="choice-keys")

    def on_key(self, event: events.Key) -> None:
        """Answer with the pressed key's value."""
        key = event.key
        event.stop()
        for k, _, value in self.choices:
            if key == k:
                self.dismiss(value)
                return
        if key == "escape":
            self.dismiss("cancel")


# -- the app -----------------------------------------------------------------------------------

#: + and - share one footer entry.
RATE_KEYS = Binding.Group("Rate")


@dataclass
class ViewState:
    """What the user chose to see (not what the profile holds)."""

    paused: bool = False
    window: float | None = None
    by_line: bool = False
    include_idle: bool = False
    needle: str = ""


class XrtopApp(App[int]):
    """The live view over one `ProfileSource` (None: start with the process picker)."""

    CSS_PATH = str(Path(__file__).with_name("xrtop.tcss"))
    TITLE = "xrtop"
    BINDINGS: ClassVar[list[BindingType]] = [
        # The footer lists these in this order and cuts what does not fit: the view toggles
        # first, so that they show at 80 columns.
        Binding("q", "quit_app", "Quit"),
        Binding("ctrl+c", "quit_app", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("space", "pause", "Pause"),
        Binding("s", "save", "Save"),
        Binding("l", "by_line", "Lines"),
        Binding("i", "toggle_idle", "Idle"),
        Binding("w", "window", "Window"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("plus,equals_sign", "rate(1)", "Faster", key_display="+", group=RATE_KEYS),
        Binding("minus", "rate(-1)", "Slower", key_display="-", group=RATE_KEYS),
        Binding("e", "export", "Export"),
        Binding("r", "reset", "Reset"),
        Binding("1", "view('top')", "Top", show=False),
        Binding("2", "view('tree')", "Tree", show=False),
        Binding("3", "view('now')", "Now", show=False),
        Binding("tab", "next_view", "Next view", show=False, priority=True),
        Binding("p", "show_picker", "Pick", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(
        self,
        source: ProfileSource | None,
        *,
        sampling: SamplingOptions | None = None,
        output: str | None = None,
        handle_signals: bool = False,
        refresh_s: float = REFRESH_S,
    ) -> None:
        """Show `source`; `output` is the -o path (already streaming for a live source)."""
        super().__init__()
        self.source = source
        self.sampling = sampling or SamplingOptions()
        self.output = output
        self.handle_signals = handle_signals
        self.refresh_s = refresh_s
        self.view_state = ViewState(
            include_idle=(source.options if source is not None else self.sampling.options).idle
        )
        self.reset_at = 0
        self.saved_count = 0  # files saved with `s`
        self.saved_files: list[str] = []
        self.agg = self._new_aggregate()
        self._window_agg: Aggregate | None = None
        self._shown_upto = -1
        self._dirty = True
        self._tree_reset = True
        self._message = ""
        self._last_state = ""
        self._lines_note_given = False

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Header, the three views, the filter line, the footer."""
        yield StatusHeader(id="status")
        yield Static("", id="message", markup=False)
        with TabbedContent(id="views", initial="top"):
            with TabPane("1 Top", id="top"):
                yield HotTable(id="top-table")
            with TabPane("2 Tree", id="tree"):
                yield CallTreeView(id="tree-view")
            with TabPane("3 Now", id="now"):
                yield NowView(id="now-view")
        yield Input(
            placeholder="filter: function or file (enter keeps, escape clears)", id="filter"
        )
        yield Footer()

    def on_mount(self) -> None:
        """Start refreshing; with no source, open the picker."""
        if self.handle_signals:
            import asyncio

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self.exit)
        self.query_one("#filter", Input).display = False
        self.refresh_data()
        self.set_interval(self.refresh_s, self.refresh_data)
        self.query_one(HotTable).focus()
        if self.source is None:
            self.call_after_refresh(self.action_show_picker)
        elif isinstance(self.source, LiveSource) and self.source.launched is not None:
            out = self.source.launched.output_path
            if out:
                self.notify(f"The program's output goes to {out}", timeout=6)

    @property
    def hot(self) -> HotTable:
        return self.query_one(HotTable)

    @property
    def tree_view(self) -> CallTreeView:
        return self.query_one(CallTreeView)

    @property
    def now_view(self) -> NowView:
        return self.query_one(NowView)

    @property
    def active_view(self) -> str:
        return self.query_one(TabbedContent).active or "top"

    # -- data flow -------------------------------------------------------------------------

    def _new_aggregate(self) -> Aggregate:
        log = self.source.log if self.source is not None else SampleLog(10000)
        vs = self.view_state
        return Aggregate(log, start=self.reset_at, by_line=vs.by_line, include_idle=vs.include_idle)

    def _rebuild(self) -> None:
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
        self._dirty = True
        self._tree_reset = True

    def current(self) -> Aggregate:
        """The aggregate the views show: cumulative, or the last-N-seconds window."""
        return self._window_agg if self._window_agg is not None else self.agg

    def refresh_data(self) -> None:
        """Take in new samples (unless paused) and redraw the header and the active view."""
        source = self.source
        if source is None or not self.is_running:  # a timer tick during shutdown: no widgets
            return
        vs = self.view_state
        if not vs.paused:
            self._take_in(None)
            if self.agg.consumed != self._shown_upto:
                self._shown_upto = self.agg.consumed
                self._dirty = True
        if vs.by_line and not self._lines_note_given:
            note = source.lines_note()
            if note is not None:  # known only after some samples with lines: say it once
                self._lines_note_given = True
                self.notify(note, title="No line numbers", severity="warning", timeout=20)
        self._show_status()
        if self._dirty:
            self._show_view()
        state = source.state()
        if state != self._last_state:
            if state == "target exited":
                self.notify("The target exited. The view stays: browse it, s saves it.")
            elif state == "failed":
                self.notify("Sampling failed; see the header.", severity="error")
            self._last_state = state
            self.refresh_bindings()

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
        window = Aggregate(log, start=start, by_line=vs.by_line, include_idle=vs.include_idle)
        window.update(n)
        self._window_agg = window

    def _seconds_per_sample(self, agg: Aggregate) -> float:
        """Wall seconds one sample stands for, from the sample times (rates may change)."""
        log = agg.log
        first, last = agg.start, agg.consumed - 1
        if last - first >= 1:
            return max(0.0, (log.times[last] - log.times[first]) / (last - first))
        return log.interval_us / 1e6

    def _show_view(self) -> None:
        self._dirty = False
        agg = self.current()
        view = self.active_view
        needle = self.view_state.needle
        if view == "top":
            self.hot.show(agg.rows(), agg.samples, self._seconds_per_sample(agg), needle)
        elif view == "tree":
            reset = self._tree_reset
            self._tree_reset = False
            self.tree_view.show(agg.tree, agg.samples, needle, reset=reset)
        elif self.source is not None:
            if self.view_state.paused and self.agg.consumed:
                stack: Stack | None = self.source.log.stack_at(self.agg.consumed - 1)
            else:
                stack = self.source.last_stack()
            self.now_view.show(stack)

    def status(self) -> Status:
        """The header's content now."""
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
            state="file (read-only)" if source.state() == "file" else source.state(),
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
            no_source=vs.by_line and self._lines_note_given,
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

    def _show_status(self) -> None:
        self.query_one(StatusHeader).show(self.status())

    def say(self, text: str) -> None:
        """A persistent one-line message under the header ("" hides it)."""
        self._message = text
        widget = self.query_one("#message", Static)
        widget.update(text)
        widget.display = bool(text)

    # -- sources (picker hooks) ------------------------------------------------------------

    def set_source(self, source: ProfileSource | None) -> None:
        """Show `source` from now on; the previous one is detached."""
        if self.source is not None and self.source is not source:
            self.source.stop()
        self.source = source
        self.reset_at = 0
        self.saved_count = 0
        self._lines_note_given = False
        self.view_state.paused = False
        self._rebuild()
        if source is not None:
            self.say("")
            self.refresh_data()
        self.refresh_bindings()

    def start_session(self, pid: int) -> None:
        """Attach to `pid` in a thread worker; show it, or show why not (staying in the app)."""
        self.say(f"Attaching to PID {pid}…")
        self._attach_worker(pid)

    @work(thread=True, exclusive=True, exit_on_error=False, group="attach")
    def _attach_worker(self, pid: int) -> None:
        stream: StreamedFile | None = None
        try:
            session = Session.attach_pid(pid, self.sampling)
            if self.output:
                stream = StreamedFile(
                    open_output(self.output), self.sampling.interval_us, self.sampling.options
                )
                session.set_stream(stream)
            session.start()
        except XrtopError as err:
            if stream is not None:
                stream.close()
            self.call_from_thread(self._attach_failed, pid, err)
            return
        self.call_from_thread(self.set_source, LiveSource(session, None, self.output or ""))

    def _attach_failed(self, pid: int, err: XrtopError) -> None:
        text = f"Cannot profile PID {pid}: {err.message}"
        if err.hint:
            text += f" {err.hint}"
        self.say(text + "  (p: pick another process, q: quit)")
        self.notify(err.message, title=f"PID {pid}", severity="error", timeout=8)

    def action_show_picker(self) -> None:
        """Detach from the current target and open the process picker; asks first when the
        current samples were never saved."""
        self.unless_unsaved("Leave this process without saving?", "pick", self._open_picker)

    def _open_picker(self) -> None:
        if self.source is not None and self.source.live:
            self.set_source(None)

        def chosen(pid: int | None) -> None:
            if pid is not None:
                self.start_session(pid)
            elif self.source is None:
                self.exit(0)

        self.push_screen(PickerScreen(force_version=self.sampling.force_version), chosen)

    # -- keys ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Live-only keys (reset, rate, pick) are hidden for a file."""
        live = self.source is not None and self.source.live
        if action == "reset":
            return live
        if action == "rate":  # only while there is something to sample
            return live and self.source is not None and self.source.state() == "running"
        if action in ("save", "export", "pause", "by_line", "window"):
            return self.source is not None
        if action == "toggle_idle":  # a file marks no sample idle: nothing to toggle
            return self.source is not None and self.source.idle_known
        if action == "show_picker":
            return self.source is None or live
        return True

    def action_view(self, name: str) -> None:
        """Show the view `name` ("top", "tree" or "now")."""
        self.query_one(TabbedContent).active = name

    def action_next_view(self) -> None:
        """Show the next view."""
        view = self.active_view
        self.action_view(VIEWS[(VIEWS.index(view) + 1) % len(VIEWS)])

    @on(TabbedContent.TabActivated)
    def _view_changed(self, event: TabbedContent.TabActivated) -> None:
        self._dirty = True
        self._show_view()
        focus = {"top": "#top-table", "tree": "#tree-view", "now": "#now-table"}
        self.query_one(focus.get(self.active_view, "#top-table")).focus()

    def action_pause(self) -> None:
        """Freeze the display; sampling continues and new samples wait."""
        self.view_state.paused = not self.view_state.paused
        self._dirty = True
        self.refresh_data()

    def action_reset(self) -> None:
        """Count from now on (and save from now on)."""
        if self.source is None:
            return
        self.reset_at = len(self.source.log)
        self._rebuild()
        self.refresh_data()
        self.notify("Reset: counting from now.")

    def action_rate(self, step: int) -> None:
        """Step the sampling rate up (1) or down (-1) the RATES ladder."""
        source = self.source
        if source is None or not source.live:
            return
        now = source.rate_hz()
        if step > 0:
            hz = next((r for r in RATES if r > now + 1e-9), MAX_HZ)
        else:
            hz = next((r for r in reversed(RATES) if r < now - 1e-9), MIN_HZ)
        source.set_rate(hz)
        self.notify(f"Sampling at {hz:g} Hz.")
        self._show_status()

    def action_by_line(self) -> None:
        """Aggregate by function, or by function and source line."""
        self.view_state.by_line = not self.view_state.by_line
        source = self.source
        if self.view_state.by_line and isinstance(source, LiveSource):
            # The sampler reads lines only when asked: from now on (safe from any thread).
            # Whether R keeps source references shows after a few samples: refresh_data
            # says so then.
            source.session.target.set_lines(True)
        elif self.view_state.by_line and source and not any(s.sites for s in source.log.stacks):
            self.notify(
                "These samples carry no line information: rows stay per function.",
                severity="warning",
            )
        self._rebuild()
        self.refresh_data()

    def action_toggle_idle(self) -> None:
        """Count idle samples (R waiting) in the percentages, or leave them out."""
        if self.source is None or not self.source.idle_known:
            return
        self.view_state.include_idle = not self.view_state.include_idle
        self._rebuild()
        self._tree_reset = False
        self.refresh_data()

    def action_window(self) -> None:
        """Cycle cumulative → last 10 s → last 60 s."""
        i = WINDOWS.index(self.view_state.window)
        self.view_state.window = WINDOWS[(i + 1) % len(WINDOWS)]
        self._take_in(self.agg.consumed)  # the window over what is shown (also paused)
        self._dirty = True
        self._tree_reset = False
        self.refresh_data()

    def action_filter(self) -> None:
        """Open the filter line."""
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.view_state.needle = event.value.strip()
        self._dirty = True
        self._show_view()
        self._show_status()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(box.value)
        self._focus_view()

    def action_clear_filter(self) -> None:
        """Clear the filter and close its line."""
        box = self.query_one("#filter", Input)
        if box.value or box.display:
            box.value = ""
            box.display = False
            self.view_state.needle = ""
            self._dirty = True
            self._show_view()
            self._focus_view()

    def _focus_view(self) -> None:
        focus = {"top": "#top-table", "tree": "#tree-view", "now": "#now-table"}
        self.query_one(focus.get(self.active_view, "#top-table")).focus()

    def action_help(self) -> None:
        """Show every key."""
        self.push_screen(HelpScreen())

    # -- saving ----------------------------------------------------------------------------

    def _new_path(self, suffix: str) -> Path:
        source = self.source
        if isinstance(source, FileSource):
            stamp = time.strftime("%Y%m%d-%H%M%S")
            base = source.path.name.removesuffix(".out")
            path = Path(f"{base}-{stamp}.{suffix}")
            n = 1
            while path.exists():
                n += 1
                path = Path(f"{base}-{stamp}-{n}.{suffix}")
            return path
        return default_output_name(source.pid if source and source.pid else 0, suffix)

    def save_rprof(self, path: Path | None = None) -> tuple[Path, int, int]:
        """Write every sample since attach or reset to `path` (default: a new name)."""
        source = self.source
        if source is None:
            raise UsageError("nothing to save yet")
        target = path or self._new_path("out")
        samples, size = write_rprof(target, source.log, source.options, self.reset_at)
        self.saved_count += 1
        self.saved_files.append(str(target))
        return target, samples, size

    def action_save(self) -> None:
        """Save Rprof.out in a thread worker; the notification says where and how much."""
        if self.source is None:
            return
        self._save_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="save")
    def _save_worker(self) -> None:
        try:
            path, samples, size = self.save_rprof()
        except (OSError, XrtopError) as err:
            reason = err.strerror if isinstance(err, OSError) else err.message
            self.call_from_thread(self.notify, f"Saving failed: {reason}", severity="error")
            return
        self.call_from_thread(
            self.notify,
            f"Saved {samples} samples ({fmt_bytes(size)}) to {path}",
            title="Rprof.out",
            timeout=8,
        )

    def action_export(self) -> None:
        """Ask for a format, then export collapsed stacks or speedscope JSON."""
        if self.source is None:
            return

        def chosen(value: str | None) -> None:
            if value in ("collapsed", "speedscope"):
                self._export_worker(value)

        self.push_screen(
            ChoiceScreen(
                "Export the samples as:",
                [("c", "collapsed stacks", "collapsed"), ("j", "speedscope JSON", "speedscope")],
            ),
            chosen,
        )

    def export(self, fmt: str, path: Path | None = None) -> tuple[Path, int, int]:
        """Write samples since attach or reset as `fmt`; return (path, samples, bytes)."""
        source = self.source
        if source is None:
            raise UsageError("nothing to export yet")
        suffix = "collapsed.txt" if fmt == "collapsed" else "speedscope.json"
        target = path or self._new_path(suffix)
        stacks = list(source.log.iter_stacks(self.reset_at))
        lines = self.view_state.by_line
        tmp = target.with_name(f".{target.name}.partial")
        with tmp.open("w", encoding="utf-8", errors="surrogateescape") as out:
            if fmt == "collapsed":
                count = write_collapsed(out, stacks, idle=source.options.idle, lines=lines)
            else:
                name = source.title if source.pid is None else f"{source.title} (PID {source.pid})"
                count = write_speedscope(
                    out,
                    stacks,
                    source.log.interval_us,
                    name=name,
                    idle=source.options.idle,
                    lines=lines,
                )
        tmp.replace(target)
        self.saved_files.append(str(target))
        return target, count, target.stat().st_size

    @work(thread=True, exclusive=True, exit_on_error=False, group="save")
    def _export_worker(self, fmt: str) -> None:
        try:
            path, samples, size = self.export(fmt)
        except (OSError, XrtopError) as err:
            reason = err.strerror if isinstance(err, OSError) else err.message
            self.call_from_thread(self.notify, f"Export failed: {reason}", severity="error")
            return
        self.call_from_thread(
            self.notify, f"Exported {samples} samples ({fmt_bytes(size)}) to {path}", timeout=8
        )

    # -- quitting --------------------------------------------------------------------------

    def unsaved(self) -> bool:
        """Whether quitting would lose samples: live, some taken, never saved, no -o stream."""
        source = self.source
        return (
            source is not None
            and source.live
            and not source.stream_path
            and self.saved_count == 0
            and len(source.log) > self.reset_at
        )

    def action_quit_app(self) -> None:
        """Quit (detaching); offer to save first when samples would be lost."""
        if isinstance(self.screen, ChoiceScreen):  # a second ctrl+c: no more questions
            self.exit(0)
            return
        self.unless_unsaved("Quit without saving the samples?", "quit", lambda: self.exit(0))

    def unless_unsaved(self, question: str, verb: str, then: Callable[[], None]) -> None:
        """Run `then` now, or, when samples would be lost, after asking (save first, go on
        without saving, or stay)."""
        if not self.unsaved():
            then()
            return

        def chosen(value: str | None) -> None:
            if value == "save":
                try:
                    self.save_rprof()
                except (OSError, XrtopError) as err:
                    reason = err.strerror if isinstance(err, OSError) else err.message
                    self.notify(f"Saving failed: {reason}", severity="error")
                    return
                then()
            elif value == "go":
                then()

        key = verb[0]
        self.push_screen(
            ChoiceScreen(question, [("s", f"save and {verb}", "save"), (key, verb, "go")]),
            chosen,
        )

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """xrtop's actions in the command palette (ctrl+p)."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Save Rprof.out", "Write every sample as Rprof.out", self.action_save)
        yield SystemCommand(
            "Export collapsed stacks",
            "For flamegraph.pl, inferno, speedscope",
            lambda: self._export_worker("collapsed"),
        )
        yield SystemCommand(
            "Export speedscope JSON",
            "Open it in speedscope.app",
            lambda: self._export_worker("speedscope"),
        )
        yield SystemCommand("Pause / resume display", "Sampling goes on", self.action_pause)
        yield SystemCommand("Toggle by-line aggregation", "Function or line", self.action_by_line)
        if self.source is not None and self.source.idle_known:
            yield SystemCommand(
                "Toggle idle samples",
                "Count the samples where R waits in the percentages, or not",
                self.action_toggle_idle,
            )
        yield SystemCommand("Cycle window", "Cumulative, 10 s, 60 s", self.action_window)
        yield SystemCommand("Show Top view", "Flat table", lambda: self.action_view("top"))
        yield SystemCommand("Show Tree view", "Call tree", lambda: self.action_view("tree"))
        yield SystemCommand("Show Now view", "Latest stack", lambda: self.action_view("now"))
        if self.source is not None and self.source.live:
            yield SystemCommand("Reset", "Count from now", self.action_reset)
        yield SystemCommand("Keys", "Every key", self.action_help)


# -- entry points ----------------------------------------------------------------------------


def require_terminal() -> None:
    """Raise UsageError unless standard input and output are a terminal (the UI needs one)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "the live view needs a terminal (standard input and output are not one)",
            "To record without a terminal use: xrtop record -p PID -o FILE",
        )


def run_live(
    pid: int | None,
    command: list[str] | None,
    sampling: SamplingOptions,
    output: str | None,
) -> int:
    """`xrtop PID`, `xrtop -- cmd` or `xrtop` (picker); attach errors raise before the UI."""
    if pid is not None:
        # A wrong PID is the likelier mistake: name it even when there is no terminal.
        inspect_process(pid)
    require_terminal()
    if pid is None and command is None:
        app = XrtopApp(None, sampling=sampling, output=output, handle_signals=True)
        try:
            app.run()
        finally:
            if app.source is not None:
                app.source.stop()
        if isinstance(app.source, LiveSource):
            print(app.source.session.summary(), file=sys.stderr)
        for path in app.saved_files:
            print(f"xrtop: wrote {path}", file=sys.stderr)
        return app.return_code or 0

    launched: Launched | None = None
    log_file: IO[bytes] | None = None
    session: Session | None = None
    stream: StreamedFile | None = None
    try:
        out = open_output(output) if output else None
        if command is not None:
            fd, log_path = tempfile.mkstemp(prefix="xrtop-output-", suffix=".log")
            log_file = os.fdopen(fd, "wb")
            launched = Launched(command, log_file, log_path)
            found = launched.wait_for_r()
            assert found is not None
            pid = found
        assert pid is not None
        session = Session.attach_pid(pid, sampling)
        if out is not None:
            stream = StreamedFile(out, sampling.interval_us, sampling.options)
            session.set_stream(stream)
        session.start()
    except BaseException:
        if session is not None:
            session.stop()
        elif stream is not None:
            stream.close()
        if launched is not None:
            launched.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                launched.process.wait(5)
        if log_file is not None:
            log_file.close()
        if output and stream is None:
            with contextlib.suppress(OSError):
                os.unlink(output)
        raise

    source = LiveSource(session, launched, output or "")
    app = XrtopApp(source, sampling=sampling, output=output, handle_signals=True)
    try:
        app.run()
    finally:
        source.stop()  # detach: the target runs on, untraced
        if app.source is not None:
            app.source.stop()  # a process picked later with `p`
    print(session.summary(), file=sys.stderr)
    for path in app.saved_files:
        print(f"xrtop: wrote {path}", file=sys.stderr)
    if output:
        print(f"xrtop: samples streamed to {output}", file=sys.stderr)
    code = app.return_code or 0
    if launched is not None:
        assert log_file is not None
        launched.adopt_status(session.target.pid, session.thread.exit_status)
        if not launched.exited():
            launched.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                launched.process.wait(5)
        else:
            code = launched.wait()
        log_file.close()
        if os.path.getsize(launched.output_path):
            print(f"xrtop: the program's output is in {launched.output_path}", file=sys.stderr)
        else:
            with contextlib.suppress(OSError):
                os.unlink(launched.output_path)
    return code
