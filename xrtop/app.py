"""The live view's Textual app: wires a `ProfileSource`, the `ViewModel` and the widgets,
and handles the keys.

Hand-off between the sampler and the UI: the `SamplerThread` appends to a `SampleLog` and
never touches the UI; the app reads the log on a timer (`REFRESH_S`) through the view
model's incremental `Aggregate` and redraws only the active view. Nothing here ever
blocks the sampler. Attaching, launching and tearing down happen outside the app, in
`xrtop.live`, except for a process picked with `p` (`start_session`, in a thread worker).

Where things are: what is shown and why is `xrtop.view_model`; the sources are
`xrtop.sources`; the modal screens `xrtop.screens`; file names and formats for `s` and
`e` are `xrtop.saving`; the picker is `xrtop.picker`. A new view is one entry in
`VIEW_TABS` and its drawing method `_show_<id>`; `xrtop.diff_app` shows other tabs.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from typing import cast

from textual import on
from textual import work
from textual.app import App
from textual.app import ComposeResult
from textual.app import SystemCommand
from textual.binding import Binding
from textual.binding import BindingType
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input
from textual.widgets import Static
from textual.widgets import TabbedContent
from textual.widgets import TabPane

from sampler.errors import UsageError
from sampler.errors import XrtopError
from sampler.thread import State
from widgets.call_tree import CallTreeView
from widgets.flame import FlameView
from widgets.footer import KeysFooter
from widgets.format import fmt_bytes
from widgets.hot_table import HotTable
from widgets.now_view import NowView
from widgets.process_list import ALL
from widgets.process_list import ProcessList
from widgets.status import StatusHeader
from xrtop.formats import FORMATS
from xrtop.formats import RPROF
from xrtop.formats import open_output
from xrtop.keys import key_available
from xrtop.palette import palette_commands
from xrtop.picker import PickerScreen
from xrtop.saving import write_samples
from xrtop.screens import ChoiceScreen
from xrtop.screens import HelpScreen
from xrtop.screens import export_prompt
from xrtop.screens import save_first_prompt
from xrtop.session import SamplingOptions
from xrtop.session import Session
from xrtop.sources import LiveSource
from xrtop.sources import ProfileSource
from xrtop.view_model import FOLD_AHEAD_S
from xrtop.view_model import ViewModel
from xrtop.view_model import step_rate

#: Seconds between refreshes of the view (2 Hz or faster, as the brief asks).
REFRESH_S = 0.5


@dataclass(frozen=True)
class ViewTab:
    """One of the views the tabs switch between (drawn by the method `_show_view` names)."""

    id: str
    title: str  #: the tab's and the key's name
    key: str  #: the key that shows it
    make: Callable[[], Widget]  #: the widget
    focus: str  #: the selector of the widget that takes the focus
    palette: str  #: what the command palette says it is


VIEW_TABS: tuple[ViewTab, ...] = (
    ViewTab("top", "Top", "1", lambda: HotTable(id="top-table"), "#top-table", "Flat table"),
    ViewTab("tree", "Tree", "2", lambda: CallTreeView(id="tree-view"), "#tree-view", "Call tree"),
    ViewTab("now", "Now", "3", lambda: NowView(id="now-view"), "#now-table", "Latest stack"),
    ViewTab(
        "flame", "Flame", "4", lambda: FlameView(id="flame-view"), "#flame-view", "Icicle graph"
    ),
    ViewTab(
        "procs", "Procs", "5", lambda: ProcessList(id="procs-table"), "#procs-table", "Processes"
    ),
)

#: The formats `e` offers, by their labels.
_EXPORTED = [f.label for f in FORMATS.values() if f.export_key]
#: Every key, for the help screen and docs/live-view.md (key, what it does).
KEYS: tuple[tuple[str, str], ...] = (
    (
        " ".join(tab.key for tab in VIEW_TABS) + " / tab",
        "switch view: " + ", ".join(tab.title for tab in VIEW_TABS),
    ),
    ("space", "pause the display; sampling goes on, new samples wait"),
    ("s", "save the samples since attach or reset as Rprof.out"),
    ("e", "export as " + ", ".join(_EXPORTED[:-1]) + " or " + _EXPORTED[-1]),
    ("r", "reset: count (and save) from now on"),
    ("+ / -", "sample faster / slower"),
    ("/", "filter as you type (enter keeps it, escape clears)"),
    ("l", "aggregate by function, or by function and line"),
    ("i", "idle samples (R waiting) in or out of the percentages"),
    ("w", "window: cumulative, last 10 s, last 60 s"),
    ("p", "pick another R process (detaches from this one)"),
    ("N / V", "native frames (--native) / R's evaluator's among them: show, hide"),
    ("? / ctrl+p", "this help / the command palette"),
    ("q / ctrl+c", "quit; the target runs on, untraced"),
    ("Top view", "sort: click a heading, or < > to move the sort"),
    ("", "I inverts; o own, t total, n name"),
    ("Tree view", "enter toggles, → opens, ← closes"),
    ("", "E expand all, C collapse all"),
    ("", "f focus on the subtree, u leave the focus"),
    ("Flame view", "arrows move, enter zooms in, backspace zooms out"),
    ("", "c colours by package or own share (or change)"),
    ("Procs view", "enter shows that process (or all), a shows all"),
)

#: + and - share one footer entry.
RATE_KEYS = Binding.Group("Rate")


def _reason(err: OSError | XrtopError) -> str | None:
    return err.strerror if isinstance(err, OSError) else err.message


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
        *(Binding(tab.key, f"view('{tab.id}')", tab.title, show=False) for tab in VIEW_TABS),
        Binding("tab", "next_view", "Next view", show=False, priority=True),
        Binding("p", "show_picker", "Pick", show=False),
        Binding("a", "show_process", "All processes", show=False),
        Binding("N", "frames('native')", "Native", show=False),
        Binding("V", "frames('evaluator')", "Evaluator", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]
    #: The views this app shows, in tab order (a view key of another view does nothing).
    TABS: ClassVar[tuple[ViewTab, ...]] = VIEW_TABS
    #: What the filter line matches.
    FILTER_MATCHES: ClassVar[str] = "function or file"

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
        self.sampling = sampling or SamplingOptions()
        self.output = output
        self.handle_signals = handle_signals
        self.refresh_s = refresh_s
        idle = (source.options if source is not None else self.sampling.options).idle
        self.model = ViewModel(source, include_idle=idle)
        self.model.view_state.evaluator = self.sampling.evaluator_frames  # V, at first
        self.saved_count = 0  # files saved with `s` since this source was shown
        self.saved_files: list[str] = []
        self._drawn_view = ""  # the view last switched to (and drawn)

    @property
    def source(self) -> ProfileSource | None:
        """What is shown (None: nothing yet, e.g. while picking)."""
        return self.model.source

    # -- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """Header, the views, the filter line, the footer."""
        yield StatusHeader(id="status")
        yield Static("", id="message", markup=False)
        with TabbedContent(id="views", initial=self.TABS[0].id):
            for tab in self.TABS:
                with TabPane(f"{tab.key} {tab.title}", id=tab.id):
                    yield tab.make()
        yield Input(
            placeholder=f"filter: {self.FILTER_MATCHES} (enter keeps, escape clears)", id="filter"
        )
        yield KeysFooter()

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
        self.set_interval(FOLD_AHEAD_S, self.model.fold_ahead)  # between keys, in slices
        self._focus_view()
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
        return self.query_one(TabbedContent).active or self.TABS[0].id

    # -- drawing ---------------------------------------------------------------------------

    def refresh_data(self) -> None:
        """Take in new samples (unless paused) and redraw the header and the active view."""
        model = self.model
        if model.source is None or not self.is_running:  # a tick during shutdown: no widgets
            return
        model.take_in_new()
        note = model.lines_note_due()
        if note is not None:  # known only after some samples with lines: said once
            self.notify(note, title="No line numbers", severity="warning", timeout=20)
        self._show_status()
        if model.dirty or self.active_view == "procs":  # states and CPU change without samples
            self._show_view()
        changed, state = model.state_change()
        if changed:
            if state is State.EXITED:
                self.notify("The target exited. The view stays: browse it, s saves it.")
            elif state is State.FAILED:
                self.notify("Sampling failed; see the header.", severity="error")
            self.refresh_bindings()

    def _show_view(self) -> None:
        self.model.dirty = False
        getattr(self, f"_show_{self.active_view}")()  # `_show_top` for the tab "top"

    def _show_top(self) -> None:
        agg = self.model.current()
        needle = self.model.view_state.needle
        self.hot.show(agg.rows(), agg.samples, self.model.seconds_per_sample(agg), needle)

    def _show_tree(self) -> None:
        agg = self.model.current()
        reset, self.model.tree_reset = self.model.tree_reset, False
        self.tree_view.show(agg.tree, agg.samples, self.model.view_state.needle, reset=reset)

    def _show_now(self) -> None:
        if self.source is not None:
            self.now_view.show(self.model.now_stack())

    def _show_flame(self) -> None:
        agg = self.model.current()
        self.query_one(FlameView).show(agg.tree, agg.samples, self.model.view_state.needle)

    def _show_procs(self) -> None:
        self.query_one(ProcessList).show(*self.model.process_list())

    def _show_status(self) -> None:
        self.query_one(StatusHeader).show(self.model.status())

    def say(self, text: str) -> None:
        """A persistent one-line message under the header ("" hides it)."""
        widget = self.query_one("#message", Static)
        widget.update(text)
        widget.display = bool(text)

    def _redraw(self) -> None:
        self.model.dirty = True
        self._show_view()
        self._show_status()

    # -- sources (picker hooks) ------------------------------------------------------------

    def set_source(self, source: ProfileSource | None) -> None:
        """Show `source` from now on; the previous one is detached."""
        if self.source is not None and self.source is not source:
            self.source.stop()
        self.model.set_source(source)
        self.saved_count = 0
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
        try:
            session = Session.attach_pid(pid, self.sampling)
            stream_to = open_output(self.output) if self.output else None
            session.start(stream_to, where=self.output or "")
        except XrtopError as err:
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
        """Live-only keys (reset, rate, pick) are hidden for a file (`key_available`)."""
        return key_available(action, self.source, self.model.processes is not None)

    def action_view(self, name: str) -> None:
        """Show the view `name` if it is one of TABS."""
        if any(tab.id == name for tab in self.TABS):
            self.query_one(TabbedContent).active = name
            self._view_changed()  # now, not when TabActivated comes: in the switch's frame

    def action_next_view(self) -> None:
        """Show the next view."""
        views = [tab.id for tab in self.TABS]
        self.action_view(views[(views.index(self.active_view) + 1) % len(views)])

    @on(TabbedContent.TabActivated)
    def _tab_activated(self) -> None:
        if self.active_view != self._drawn_view:  # a tab clicked (a key drew it already)
            self._view_changed()

    def _view_changed(self) -> None:
        self._drawn_view = self.active_view
        self.model.dirty = True
        self._show_view()
        self._focus_view()

    def _focus_view(self) -> None:
        focus = next((t.focus for t in self.TABS if t.id == self.active_view), "#top-table")
        # Focused now, not after a refresh, and the footer told at once: its keys change in
        # the frame that shows the view, not in two more frames (#27).
        widget = self.query_one(focus)
        widget.screen.set_focus(widget)
        self.query_one(KeysFooter).bindings_changed(widget.screen)

    @on(ProcessList.RowSelected, "#procs-table")
    def _process_chosen(self, event: ProcessList.RowSelected) -> None:
        self.action_show_process(None if event.key == ALL else cast(int, event.key))

    def action_show_process(self, pid: int | None = None) -> None:
        """Show process `pid` alone (None: every process, merged) in every view."""
        if self.model.select_process(pid):
            self.refresh_data()

    def action_pause(self) -> None:
        """Freeze the display; sampling continues and new samples wait."""
        self.model.toggle_pause()
        self.refresh_data()

    def action_reset(self) -> None:
        """Count from now on (and save from now on)."""
        if self.source is not None:
            self.model.reset()
            self.refresh_data()
            self.notify("Reset: counting from now.")

    def action_rate(self, step: int) -> None:
        """Step the sampling rate up (1) or down (-1) the RATES ladder."""
        source = self.source
        if source is None or not source.live:
            return
        hz = step_rate(source.rate_hz(), step)
        source.set_rate(hz)
        self.notify(f"Sampling at {hz:g} Hz.")
        self._show_status()

    def action_by_line(self) -> None:
        """Aggregate by function, or by function and source line."""
        self.model.toggle_by_line()
        source, by_line = self.source, self.model.view_state.by_line
        if by_line and isinstance(source, LiveSource):
            # The sampler reads lines only when asked: from now on (safe from any thread).
            # Whether R keeps source references shows after a few samples: refresh_data
            # says so then.
            source.session.target.set_lines(True)
        elif by_line and source and not any(s.sites for s in source.log.stacks):
            self.notify(
                "These samples carry no line information: rows stay per function.",
                severity="warning",
            )
        self.refresh_data()

    def action_toggle_idle(self) -> None:
        """Count idle samples (R waiting) in the percentages, or leave them out."""
        if self.model.toggle_idle():
            self.refresh_data()

    def action_frames(self, which: str) -> None:
        """Show or hide native frames ("native") or R's evaluator's ("evaluator")."""
        getattr(self.model, f"toggle_{which}")()
        self.refresh_data()

    def action_window(self) -> None:
        """Cycle cumulative → last 10 s → last 60 s."""
        self.model.cycle_window()
        self.refresh_data()

    def action_filter(self) -> None:
        """Open the filter line."""
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        # Unchanged after escape (which cleared the filter itself) or a typed space.
        if self.model.set_filter(event.value):
            self._redraw()

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
            self.model.set_filter("")
            self._redraw()
            self._focus_view()

    def action_help(self) -> None:
        """Show every key."""
        self.push_screen(HelpScreen(KEYS))

    # -- saving ----------------------------------------------------------------------------

    def save(self, fmt: str = RPROF, path: Path | None = None) -> tuple[Path, int, int]:
        """Write the samples since attach or reset as `fmt` to `path` (default: a new name);
        return (path, samples, bytes). Raises OSError or XrtopError when that fails."""
        source = self.source
        if source is None:
            raise UsageError("nothing to save yet")
        by_line = self.model.view_state.by_line
        parts = self.model.process_parts()
        saved = write_samples(source, fmt, self.model.reset_at, by_line, path, parts)
        if fmt == RPROF:  # a file R reads back: the samples are safe
            self.saved_count += 1
        self.saved_files.append(str(saved[0]))
        return saved

    def action_save(self) -> None:
        """Save Rprof.out in a thread worker; the notification says where and how much."""
        if self.source is not None:
            self.save_worker(RPROF)

    def action_export(self) -> None:
        """Ask for a format, then export to it."""
        if self.source is None:
            return

        def chosen(value: str | None) -> None:
            if value in FORMATS:
                self.save_worker(value)

        self.push_screen(export_prompt(), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="save")
    def save_worker(self, fmt: str) -> None:
        """Save or export as `fmt` in a thread worker; a notification says where or why not."""
        verb = "Saving" if fmt == RPROF else "Export"
        try:
            path, samples, size = self.save(fmt)
        except (OSError, XrtopError) as err:
            self.call_from_thread(self.notify, f"{verb} failed: {_reason(err)}", severity="error")
            return
        if fmt == RPROF:
            text, title = f"Saved {samples} samples ({fmt_bytes(size)}) to {path}", "Rprof.out"
            if self.model.processes is not None:
                text += ", each child process's to a file of its own beside it"
        else:
            text, title = f"Exported {samples} samples ({fmt_bytes(size)}) to {path}", ""
        self.call_from_thread(self.notify, text, title=title, timeout=8)

    # -- quitting --------------------------------------------------------------------------

    def action_quit_app(self) -> None:
        """Quit (detaching); offer to save first when samples would be lost."""
        if isinstance(self.screen, ChoiceScreen):  # a second ctrl+c: no more questions
            self.exit(0)
            return
        self.unless_unsaved("Quit without saving the samples?", "quit", lambda: self.exit(0))

    def unless_unsaved(self, question: str, verb: str, then: Callable[[], None]) -> None:
        """Run `then` now, or, when samples would be lost, after asking (save first, go on
        without saving, or stay)."""
        if not self.model.unsaved(self.saved_count):
            then()
            return

        def chosen(value: str | None) -> None:
            if value == "save":
                try:
                    self.save()
                except (OSError, XrtopError) as err:
                    self.notify(f"Saving failed: {_reason(err)}", severity="error")
                    return
                then()
            elif value == "go":
                then()

        self.push_screen(save_first_prompt(question, verb), chosen)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Textual's commands and xrtop's actions in the command palette (ctrl+p)."""
        yield from super().get_system_commands(screen)
        yield from palette_commands(self)
