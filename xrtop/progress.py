"""Reading a recorded profile from the command line: a progress line on a terminal, the
reader's warnings, and one clear line for a file that cannot be read.

`read_profile` is what every command that reads an Rprof.out uses (`convert`, `diff`);
the live view shows its own progress (`xrtop.loading`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from sampler.errors import UsageError
from sampler.rprof import Progress as ProgressCallback
from sampler.rprof import RprofFile
from sampler.rprof import read_rprof


@contextlib.contextmanager
def byte_progress(description: str, total: int) -> Iterator[ProgressCallback | None]:
    """A progress bar on standard error while the block runs, told (bytes done, total);
    None, and nothing shown, when standard error is not a terminal (piped, redirected)."""
    # rich loads here, not with the command line: every command starts sooner.
    from rich.console import Console
    from rich.progress import BarColumn
    from rich.progress import DownloadColumn
    from rich.progress import Progress
    from rich.progress import TextColumn
    from rich.progress import TimeRemainingColumn

    console = Console(file=sys.stderr)
    if not console.is_terminal:
        yield None
        return
    columns = (
        TextColumn("xrtop: {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)

        def advance(done: int, size: int) -> None:
            progress.update(task, completed=done, total=size)

        yield advance


def unreadable(path: Path, err: OSError) -> UsageError:
    """The one-line error for a profile that cannot be opened (missing, a directory, ...)."""
    return UsageError(f"cannot read {path}: {err.strerror}")


def read_profile(path: Path) -> RprofFile:
    """Read an Rprof.out with a progress line on a terminal; print its warnings.

    Raise UsageError when the file cannot be opened, RprofFormatError when it is not one.
    """
    try:
        size = path.stat().st_size
        with byte_progress(f"reading {path.name}", size) as progress:
            profile = read_rprof(path, progress)
    except OSError as err:
        raise unreadable(path, err) from None
    for warning in profile.warnings:
        print(f"xrtop: warning: {warning}", file=sys.stderr)
    return profile
