"""The picker screen: `xrtop` with no PID lists the R processes and returns the chosen one.

`PickerScreen` dismisses with the PID of a process xrtop may profile. Scans run in a thread
worker about once a second, so the UI never waits on /proc. Enter on a process that cannot
be profiled opens `ProblemScreen`, which says why and what would fix it; the picker stays.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets import Static

from sampler.discover import Discovery
from sampler.errors import UsageError
from sampler.model import RProcessInfo
from widgets.process_picker import ProcessPicker

EMPTY_HELP = (
    "Start an R script in another terminal, e.g. [b]Rscript my_script.R[/b]: it shows up "
    "here within a second.\n"
    "Or quit (Escape) and launch it under xrtop: [b]xrtop -- Rscript my_script.R[/b]"
)


class ProblemScreen(ModalScreen[None]):
    """Why a process cannot be profiled and what would fix it; any of Escape, Enter or q
    closes it and returns to the list."""

    DEFAULT_CSS = """
    ProblemScreen { align: center middle; }
    ProblemScreen > Vertical {
        width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: thick $error; background: $surface; padding: 1 2;
    }
    ProblemScreen #problem-title { text-style: bold; margin-bottom: 1; }
    ProblemScreen #problem-fix { margin-top: 1; }
    ProblemScreen #problem-close { margin-top: 1; color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("enter", "close", "Back", show=False),
        Binding("q", "close", "Back", show=False),
    ]

    def __init__(self, info: RProcessInfo) -> None:
        """Explain why `info` cannot be profiled."""
        super().__init__()
        self.info = info

    def compose(self) -> ComposeResult:
        """Title, reason, fix."""
        info = self.info
        with Vertical():
            yield Static(
                f"xrtop cannot profile process {info.pid} ({escape(info.command)})",
                id="problem-title",
            )
            yield Static(
                escape(info.reason[:1].upper() + info.reason[1:] + "."), id="problem-reason"
            )
            if info.fix:
                yield Static("[b]To fix it:[/b]\n" + escape(info.fix), id="problem-fix")
            yield Static("Escape or Enter: back to the list", id="problem-close")

    def action_close(self) -> None:
        """Back to the list."""
        self.dismiss(None)


class PickerScreen(Screen[int]):
    """Lists R processes, refreshed about every second; dismisses with the chosen PID."""

    DEFAULT_CSS = """
    PickerScreen #picker-title { height: 1; padding: 0 1; background: $primary; color: $text; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "quit", "Quit")]

    def __init__(
        self,
        *,
        discovery: Discovery | None = None,
        force_version: str | None = None,
        interval: float = 1.0,
    ) -> None:
        """`discovery` is made here unless given (tests pass one)."""
        super().__init__()
        self.startup_error = ""
        if discovery is None:
            try:
                discovery = Discovery(force_version=force_version)
            except UsageError as err:
                # A bad --force-version must not end the app: list without it, and say so.
                self.startup_error = f"{err.message}. {err.hint}".strip()
                discovery = Discovery()
        self.discovery = discovery
        self.interval = interval
        self._scanning = False
        self.scans = 0

    def compose(self) -> ComposeResult:
        """Title, the picker, the key help."""
        yield Static(
            "xrtop: pick an R process (type to filter, Enter to profile)", id="picker-title"
        )
        yield ProcessPicker(empty_help=EMPTY_HELP, id="process-picker")
        yield Footer()

    @property
    def picker(self) -> ProcessPicker:
        """The picker widget."""
        return self.query_one(ProcessPicker)

    def on_mount(self) -> None:
        """Scan now, then about every second."""
        if self.startup_error:
            self.notify(self.startup_error, severity="error", timeout=10)
        self.refresh_processes()
        self.set_interval(self.interval, self.refresh_processes)

    def on_screen_resume(self) -> None:
        """Coming back (e.g. from the live view): show fresh data at once."""
        self.refresh_processes()

    def refresh_processes(self) -> None:
        """Start a scan unless one is still running (a slow /proc must not pile them up)."""
        if not self._scanning:
            self._scanning = True
            self._scan()

    @work(thread=True, group="discover", exit_on_error=False)
    def _scan(self) -> None:
        rows: list[RProcessInfo] | None = None
        error = ""
        try:
            rows = self.discovery.scan()
        except Exception as err:  # never kill the UI over /proc trouble; say it instead
            error = f"Listing processes failed: {err}"
        finally:
            self._scanning = False
        # The app may be closing (or the screen gone) by now; then there is nobody to tell.
        with contextlib.suppress(RuntimeError):
            self.app.call_from_thread(self._show, rows, error)

    def _show(self, rows: list[RProcessInfo] | None, error: str) -> None:
        self.scans += 1
        if error:
            self.notify(error, severity="error")
        if rows is not None and self.is_attached:
            self.picker.set_processes(rows)

    def on_process_picker_chosen(self, message: ProcessPicker.Chosen) -> None:
        """Profile a process xrtop may trace; explain why not for any other."""
        info = message.info
        if info.profilable:
            self.dismiss(info.pid)
        else:
            self.app.push_screen(ProblemScreen(info))

    def action_quit(self) -> None:
        """Escape with an empty filter: dismiss without a PID (the app then quits, unless
        it has something else to show)."""
        self.dismiss(None)
