"""`xrtop record --rotate SECONDS`: a recording split into numbered files as it goes.

Every SECONDS (counted from when each file began), and at once on SIGHUP, the current file
is completed and closed and the next one begins: `-o prof.out` gives prof.1.out, prof.2.out,
and so on (`rotated_path`). Each sample goes to exactly one file, so the files' counts add
up to the samples written. Rprof.out streams into the current file as samples come (so it
is always readable up to its last whole line); the whole-profile formats (pprof, collapsed,
speedscope) are written out in one go when their file closes, from the session's sample log.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import IO
from typing import Any

from sampler.errors import UsageError
from xrtop.formats import FORMATS
from xrtop.formats import open_output
from xrtop.formats import partial_path
from xrtop.formats import write_profile
from xrtop.session import Session
from xrtop.session import StreamedFile
from xrtop.session import Wakeup


def rotated_path(path: str, number: int, suffix: str) -> str:
    """`path` with `.number` before its suffix: the format's own `suffix` when the name ends
    with it (prof.pb.gz -> prof.1.pb.gz), else the last one (cpu.pprof -> cpu.1.pprof), else
    at the end (prof -> prof.1)."""
    head, sep, name = path.rpartition("/")
    if name.endswith(f".{suffix}") and len(name) > len(suffix) + 1:
        stem, ext = name[: -len(suffix) - 1], f".{suffix}"
    else:
        stem, dot, ext = name.rpartition(".")
        stem, ext = (stem, f".{ext}") if dot and stem else (name, "")
    return f"{head}{sep}{stem}.{number}{ext}"


def check_rotate(seconds: float | None, output: str | None, launched: bool) -> None:
    """Refuse --rotate values and outputs that cannot rotate (one clear UsageError)."""
    if seconds is None:
        return
    if not 0 < seconds < 1e7:
        raise UsageError(f"--rotate {seconds:g} is out of range", "Use --rotate SECONDS > 0.")
    if not output and not launched:
        raise UsageError(
            "--rotate writes numbered files, not standard output",
            "Give -o FILE: the files are FILE.1, FILE.2, ... (the number before the suffix).",
        )


class Rotation:
    """Closes the current file and begins the next one every `seconds` or on `request()`.

    Driven by the recording's main thread (`first_file`, `begin`, `poll`, `finish`);
    `request` is safe in a signal handler at any time (before `begin`, it rotates at once
    after it). The caller opens file 1.
    """

    def __init__(self, seconds: float, fmt: str, wakeup: Wakeup, verbose: bool = False) -> None:
        """Prepare to write `fmt` (an `xrtop.formats` name); `first_file` names the files
        and `begin` starts the first period."""
        self.path = ""
        self.fmt = fmt
        self.suffix = FORMATS[fmt].suffix
        self.seconds = seconds
        self.wakeup = wakeup
        self.verbose = verbose
        self.number = 1
        #: (path, samples) of every file closed so far.
        self.closed: list[tuple[str, int]] = []
        self._requested = False
        self._out: IO[Any] | None = None
        self._session: Session | None = None
        self._stream: StreamedFile | None = None
        self._due = 0.0
        self._started_ns = 0
        self._first_sample = 0  # whole formats: the log index the current file starts at
        self._written_before = 0  # Rprof.out: samples written before the current file

    def path_of(self, number: int) -> str:
        """The name of file `number`."""
        return rotated_path(self.path, number, self.suffix)

    def first_file(self, path: str) -> str:
        """The name of file 1 of a recording to `path` (the name without number)."""
        self.path = path
        return self.path_of(1)

    def begin(self, session: Session, out: IO[Any]) -> None:
        """Start the first file's period, once `session` samples: `out` is file 1, streamed
        by the session (Rprof.out) or written whole from its log when it closes."""
        self._session, self._out, self._stream = session, out, session.stream
        self._due = time.monotonic() + self.seconds
        self._started_ns = session.span_ns()[0]

    def request(self) -> None:
        """Rotate as soon as the main thread wakes (SIGHUP)."""
        self._requested = True
        self.wakeup.wake()

    def wait_time(self, longest: float) -> float:
        """How long the main thread may sleep before the next rotation is due."""
        return max(0.0, min(longest, self._due - time.monotonic()))

    def poll(self) -> bool:
        """Rotate when due or requested; return False when the current file failed."""
        if not self._requested and time.monotonic() < self._due:
            return True
        self._requested = False
        self._due = time.monotonic() + self.seconds
        following = self.path_of(self.number + 1)
        # The next file has a hidden name until the current one is complete: a file whose
        # successor exists is closed (what an uploader may watch for).
        hidden = partial_path(Path(following))
        try:
            out = open_output(str(hidden), self.fmt)
        except UsageError as err:  # keep recording into the current file; retry next time
            print(f"xrtop: {err.message}; going on in {self.path_of(self.number)}", file=sys.stderr)
            return True
        ok = self._close_current(following=out)
        self.number += 1
        try:
            hidden.replace(following)
        except OSError as err:
            print(f"xrtop: cannot rename {hidden} to {following}: {err.strerror}", file=sys.stderr)
            return False
        return ok

    def finish(self) -> bool:
        """Complete the last file once sampling has stopped; return False if writing failed.
        (A streamed Rprof.out is closed with the session.)"""
        return self._close_current(following=None)

    def _close_current(self, following: IO[Any] | None) -> bool:
        now_ns = time.time_ns()
        ok = True
        if self._stream is not None:
            if following is not None:
                written = self._stream.switch_to(following)
            else:
                written = self._stream.writer.samples_written
            samples = written - self._written_before
            self._written_before = written
            ok = not self._stream.error
        else:
            assert self._out is not None and self._session is not None
            end = len(self._session.log)
            profile = self._session.profile(
                self._first_sample, end, span=(self._started_ns, now_ns)
            )
            self._first_sample = end
            samples = 0
            try:
                samples = write_profile(self._out, self.fmt, profile)
                self._out.flush()
            except OSError as err:
                print(
                    f"xrtop: writing {self.path_of(self.number)} failed: {err.strerror}",
                    file=sys.stderr,
                )
                ok = False
            finally:
                with contextlib.suppress(OSError):
                    self._out.close()
            self._out = following
        self._started_ns = now_ns
        closed = self.path_of(self.number)
        self.closed.append((closed, samples))
        if self.verbose:
            print(f"xrtop: {closed} complete: {samples} samples", file=sys.stderr)
        return ok

    def summary(self) -> str:
        """One line naming the files written and their samples."""
        files = ", ".join(f"{path} ({n})" for path, n in self.closed)
        total = sum(n for _, n in self.closed)
        return f"xrtop: {len(self.closed)} files, {total} samples: {files}"
