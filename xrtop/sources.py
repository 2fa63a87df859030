"""What the live view shows: a running session (`LiveSource`) or a recorded file
(`FileSource`), both behind the `ProfileSource` protocol.

A source owns the samples (`log`) and knows its sampler's state; it never touches the UI.
"""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import psutil

from sampler.errors import UsageError
from sampler.model import SampleLog
from sampler.model import SamplerStats
from sampler.model import Stack
from sampler.rprof import RprofFile
from sampler.rprof import RprofOptions
from sampler.thread import State
from xrtop.processes_view import SampledProcesses
from xrtop.session import Launched
from xrtop.session import Session
from xrtop.session import source_note


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
    #: Every sampled process (`--subprocesses`, or a file with its `F.<PID>.out` siblings);
    #: None: the target alone, whose samples are `log`.
    processes: SampledProcesses | None

    def state(self) -> State | None:
        """The sampler's state; None for a recorded file, which has no sampler."""
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
        self.processes: SampledProcesses | None = None
        hz = 1e6 / profile.interval_us
        n = len(self.log)
        self._stats = SamplerStats(
            requested_hz=hz,
            samples=n,
            gc=sum(n for sid, n in self.log.counts().items() if self.log.stacks[sid].gc),
            elapsed=n * profile.interval_us / 1e6,
        )

    def state(self) -> State | None:
        return None

    def stats(self) -> SamplerStats:
        if self.processes is None:
            return self._stats
        # A recording of several processes lasts as long as the longest of them.
        longest = max(len(log) for log in self.processes.logs().values())
        return replace(self._stats, samples=longest, elapsed=longest * self.log.interval_us / 1e6)

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
        self.processes: SampledProcesses | None = session.processes
        self._process: psutil.Process | None = None
        with contextlib.suppress(psutil.Error):
            self._process = psutil.Process(self.pid)
            self._process.cpu_percent(None)  # the first call only starts the measurement
        self._stopped = False

    def state(self) -> State | None:
        return self.session.thread.state

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
