"""`xrtop view FILE`: the file is read inside the app, behind a screen that shows its name
and a progress bar by bytes read, so that a big recording shows something at once and `q`
quits while it loads.

The file is read in a thread worker (`read_rprof`, chunk by chunk); the app stays
responsive between chunks. When the file is read the app shows it (`set_source`) and the
loading screen goes; when it cannot be read, the app ends and `xrtop.live.run_view` raises
the error for the command line to print as one line. The files of a `record
--subprocesses`'s children beside it (`F.<PID>.out`) are read after it; one that cannot be
read is left out, with a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label
from textual.widgets import ProgressBar
from textual.worker import get_current_worker

from sampler.errors import XrtopError
from sampler.model import SampleLog
from sampler.rprof import Progress
from sampler.rprof import RprofFile
from sampler.rprof import RprofOptions
from sampler.rprof import read_rprof
from widgets.format import fmt_bytes
from xrtop.app import XrtopApp
from xrtop.progress import unreadable
from xrtop.recorded_processes import RecordedProcesses
from xrtop.recorded_processes import child_files
from xrtop.sources import FileSource


class LoadCancelled(Exception):
    """The app ended while the file was being read."""


class LoadingScreen(ModalScreen[None]):
    """The file's name and size, and a progress bar by bytes read; `q` quits."""

    DEFAULT_CSS = """
    LoadingScreen { align: center middle; }
    LoadingScreen > Vertical {
        width: 70; height: auto; border: round $accent; padding: 1 2; background: $panel;
    }
    LoadingScreen ProgressBar { margin-top: 1; }
    LoadingScreen #loading-hint { margin-top: 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "app.quit_app", "Quit")]

    def __init__(self, path: Path, size: int) -> None:
        """Show the loading of `path`, `size` bytes."""
        super().__init__()
        self.path = path
        self.file_size = size
        #: Bytes read so far, set by the reading thread: the bar follows it on a timer, so
        #: that the reader never waits for the screen.
        self.done = 0

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                f"Reading {self.path.name} ({fmt_bytes(self.file_size)})", id="loading-title"
            )
            yield ProgressBar(total=max(self.file_size, 1), show_eta=True, id="loading-bar")
            yield Label("q quits", id="loading-hint")

    def on_mount(self) -> None:
        self.set_interval(0.1, self._show_progress)

    def _show_progress(self) -> None:
        self.query_one(ProgressBar).update(progress=self.done)


def _placeholder(path: Path) -> FileSource:
    """An empty profile named after `path`, shown (under the loading screen) until it is
    read."""
    interval = 20_000
    return FileSource(path, RprofFile(interval, RprofOptions(), False, SampleLog(interval)))


class FileViewApp(XrtopApp):
    """The app over a recorded file that it reads itself, behind a `LoadingScreen`."""

    def __init__(self, path: Path) -> None:
        """Open `path` once mounted; until it is read, an empty profile of that name."""
        super().__init__(_placeholder(path), handle_signals=True)
        self.path = path
        self.file_size = path.stat().st_size
        self.loading = LoadingScreen(path, self.file_size)
        #: Why the file could not be read (the app then ends), for `run_view` to raise.
        self.load_error: XrtopError | None = None

    def on_mount(self) -> None:
        """Show the loading screen and start reading (after `XrtopApp.on_mount`'s setup)."""
        self.push_screen(self.loading)
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self) -> None:
        worker = get_current_worker()

        def still_wanted(_done: int, _total: int) -> None:
            if worker.is_cancelled:
                raise LoadCancelled

        def progress(done: int, total: int) -> None:
            still_wanted(done, total)
            self.loading.done = done

        try:
            profile = read_rprof(self.path, progress)
            children, skipped = self._read_children(still_wanted)
        except LoadCancelled:
            return
        except OSError as err:
            self.call_from_thread(self._failed, unreadable(self.path, err))
            return
        except XrtopError as err:
            self.call_from_thread(self._failed, err)
            return
        if not worker.is_cancelled:
            self.call_from_thread(self._loaded, profile, children, skipped)

    def _read_children(self, progress: Progress) -> tuple[dict[int, SampleLog], list[str]]:
        """The children's logs beside the file, by PID, and why any was left out (`progress`
        is told each chunk read)."""
        children: dict[int, SampleLog] = {}
        skipped = []
        for pid, path in child_files(self.path).items():
            try:
                children[pid] = read_rprof(path, progress).to_log()
            except OSError as err:
                skipped.append(unreadable(path, err).message)
            except XrtopError as err:
                skipped.append(err.message)
        return children, skipped

    def _loaded(
        self, profile: RprofFile, children: dict[int, SampleLog], skipped: list[str]
    ) -> None:
        source = FileSource(self.path, profile)
        if children:
            source.processes = RecordedProcesses(source.log, children)
        self.set_source(source)
        self.loading.pop_until_active()  # whatever opened over it (the command palette)
        self.loading.dismiss()
        for warning in profile.warnings:
            self.notify(warning, title="Cut-off line", severity="warning", timeout=20)
        for reason in skipped:
            self.notify(reason, title="Child process left out", severity="warning", timeout=20)

    def _failed(self, err: XrtopError) -> None:
        self.load_error = err
        self.exit(err.exit_code)
