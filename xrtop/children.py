"""The files of a `--subprocesses` recording: the target's in F.out, each child's beside it.

Each R child streams its own Rprof.out, `F.<PID>.out` next to the target's `F.out`, as the
target's does (`StreamedFile`): readable by summaryRprof and profvis at any moment, and
complete up to the last flush should xrtop be killed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from sampler.errors import UsageError
from sampler.model import Stack
from sampler.processes import ENDED
from sampler.processes import TracedProcess
from sampler.rprof import RprofOptions
from xrtop.formats import open_output
from xrtop.session import StreamedFile


def child_output_path(path: str, pid: int) -> str:
    """The file of child `pid` beside the target's `path`: F.out -> F.<PID>.out (F ->
    F.<PID> when it has no suffix)."""
    p = Path(path)
    if not p.suffix:
        return f"{path}.{pid}"
    return str(p.with_name(f"{p.stem}.{pid}{p.suffix}"))


class ChildStreams:
    """One streamed Rprof.out per R child of a session (see the module doc)."""

    def __init__(self, path: str, interval_us: int, options: RprofOptions) -> None:
        """Children's files go beside the target's file `path`."""
        self.path = path
        self.interval_us = interval_us
        self.options = options
        # (entry, stream) of the children whose file is still open.
        self._open: list[tuple[TracedProcess, StreamedFile]] = []
        #: Every child file made, in the order made.
        self.paths: list[str] = []
        #: Why a child's file could not be made or written, one line each.
        self.errors: list[str] = []

    def open(self, process: TracedProcess) -> Callable[[Stack], None] | None:
        """Make `process`'s file (header written); return what takes its samples (None
        when the file cannot be made: the reason goes to `errors`). Called by the sampler
        thread before the child's first sample."""
        path = child_output_path(self.path, process.pid)
        try:
            out = open_output(path)
        except UsageError as err:
            self.errors.append(err.message)
            return None
        stream = StreamedFile(out, self.interval_us, self.options)
        self.paths.append(path)
        self._open.append((process, stream))
        return stream.add

    def tick(self) -> None:
        """Flush the files due for it; close those of children that ended."""
        still = []
        for process, stream in self._open:
            if process.state == ENDED:
                stream.close()
                self._note(stream.error)
            else:
                stream.tick()
                still.append((process, stream))
        self._open = still

    def close(self) -> None:
        """Flush and close every child's file."""
        for _, stream in self._open:
            with contextlib.suppress(OSError):
                stream.close()
            self._note(stream.error)
        self._open = []

    def _note(self, error: str) -> None:
        if error:
            self.errors.append(error)
