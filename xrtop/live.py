"""Running the live view: `xrtop PID`, `xrtop -- Rscript script.R`, `xrtop` (picker),
`xrtop view FILE` and `xrtop diff BASE NEW`.

Attaching (and launching) happens before `App.run()`, so every attach error is printed by
`cli.main` on a normal terminal. Every way out of the app (q, Ctrl-C, SIGTERM, an
exception) ends in `run_live`'s `finally`, which detaches the target. The steps, in order:
`_start` (launch, attach, stream, start), `_run_app`, `_report`, `_finish_launched`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import IO

from sampler.errors import UsageError
from sampler.rprof import RprofFile
from sampler.target import inspect_process
from xrtop.app import XrtopApp
from xrtop.diff_app import DiffApp
from xrtop.formats import open_output
from xrtop.loading import FileViewApp
from xrtop.session import Launched
from xrtop.session import SamplingOptions
from xrtop.session import Session
from xrtop.sources import LiveSource
from xrtop.sources import ProfileSource


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
        app = _run_app(None, sampling, output)
        if isinstance(app.source, LiveSource):
            print(app.source.session.summary(), file=sys.stderr)
        _report_saved(app)
        return app.return_code or 0
    source = _start(pid, command, sampling, output)
    app = _run_app(source, sampling, output)
    print(source.session.summary(), file=sys.stderr)
    _report_saved(app)
    if output:
        print(f"xrtop: samples streamed to {output}", file=sys.stderr)
    code = app.return_code or 0
    if source.launched is not None:
        code = _finish_launched(source.launched, source.session, code)
    return code


def _start(
    pid: int | None, command: list[str] | None, sampling: SamplingOptions, output: str | None
) -> LiveSource:
    """Open -o, launch `command` (when given) and wait for its R, attach to it or to `pid`,
    and start sampling into the -o stream. On any failure no sampler runs and no launched
    command is left running; the -o file is removed unless the attach succeeded (then it
    holds the header)."""
    launched: Launched | None = None
    session: Session | None = None
    out: IO[str] | None = None
    try:
        # Open -o before starting anything, so that a bad path starts nothing.
        out = open_output(output) if output else None
        if command is not None:
            launched = Launched(command, quiet=True)
            pid = launched.wait_for_r()
        assert pid is not None
        session = Session.attach_pid(pid, sampling)
        session.start(out, where=output or "")
    except BaseException:
        if launched is not None:
            launched.terminate()
            launched.close_output()
        if out is not None and session is None:  # else the session closed it
            out.close()
            with contextlib.suppress(OSError):
                os.unlink(output or "")
        raise
    return LiveSource(session, launched, output or "")


def _run_app(
    source: ProfileSource | None, sampling: SamplingOptions, output: str | None
) -> XrtopApp:
    """Run the app over `source` until it quits; then detach from whatever it showed."""
    app = XrtopApp(source, sampling=sampling, output=output, handle_signals=True)
    try:
        app.run()
    finally:
        if source is not None:
            source.stop()  # detach: the target runs on, untraced
        if app.source is not None:
            app.source.stop()  # a process picked later with `p`
    return app


def _report_saved(app: XrtopApp) -> None:
    for path in app.saved_files:
        print(f"xrtop: wrote {path}", file=sys.stderr)


def _finish_launched(launched: Launched, session: Session, code: int) -> int:
    """End the command xrtop launched (unless it ended by itself); return its exit code
    when it ended by itself, else `code` (the app's)."""
    launched.adopt_status(session.target.pid, session.thread.exit_status)
    if not launched.exited():
        launched.terminate()
    else:
        code = launched.wait()
    output_path = launched.close_output()
    if output_path is not None:
        print(f"xrtop: the program's output is in {output_path}", file=sys.stderr)
    return code


def run_view(path: Path) -> int:
    """`xrtop view FILE`: read and browse a recorded profile (read-only); raise the
    file's error when it cannot be read."""
    require_terminal()
    app = FileViewApp(path)
    app.run()
    if app.load_error is not None:
        raise app.load_error
    _report_saved(app)
    return app.return_code or 0


def run_diff(base_path: Path, base: RprofFile, new_path: Path, new: RprofFile) -> int:
    """`xrtop diff BASE NEW`: browse NEW against BASE (read-only)."""
    require_terminal()
    app = DiffApp(base_path, base, new_path, new, handle_signals=True)
    app.run()
    _report_saved(app)
    return app.return_code or 0
