"""The files of a `--subprocesses` recording: the target's in F.out, each child's beside it.

Each R child streams its own Rprof.out, `F.<PID>.out` next to the target's `F.out`, as the
target's does (`StreamedFile`): readable by summaryRprof and profvis at any moment, and
complete up to the last flush should xrtop be killed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sampler.descendants import Descendants
from sampler.descendants import Found
from sampler.errors import UsageError
from sampler.errors import XrtopError
from sampler.group import GroupSampler
from sampler.model import Stack
from sampler.processes import ENDED
from sampler.processes import TracedProcess
from sampler.procstat import read_stat
from sampler.rprof import RprofOptions
from sampler.target import Target
from sampler.target import attach
from sampler.target import attach_clone
from xrtop.formats import RPROF
from xrtop.formats import open_output
from xrtop.session import Session
from xrtop.session import StreamedFile


def attach_descendants(target: Target) -> list[tuple[Target, bool, Found]]:
    """Every R process below `target` now, attached (not stopped): (its target, whether it
    is a fork of its parent, what was found), parents before their children. A fork reuses
    its parent's binary and layout (`attach_clone`). Those that ended meanwhile or may not
    be read are left out."""
    targets = {target.pid: target}
    stat = read_stat(target.pid)
    descendants = Descendants(target.pid, target.info.start_ticks, stat.session if stat else 0)
    attached = []
    for item in descendants.poll():
        parent = targets.get(item.parent_pid) if item.parent_is_r else None
        child, forked = None, False
        if parent is not None:
            with contextlib.suppress(XrtopError):
                child, forked = attach_clone(parent, item.pid), True
        if child is None:
            try:
                child = attach(item.pid)
            except XrtopError:
                continue
        targets[item.pid] = child
        attached.append((child, forked, item))
    return attached


def process_bench_stats(session: Session) -> list[dict[str, object]]:
    """For bench/subprocesses.py: each sampled process's rate, and how long after its start
    its sampling began (`_write_bench_stats`)."""
    assert session.processes is not None and isinstance(session.thread, GroupSampler)
    boot_offset = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
    ticks = os.sysconf("SC_CLK_TCK")
    rows = []
    sampling_began = session.thread.stats().started_at
    for process in session.processes.sampled():
        stats = session.thread.process_stats(process)
        started = process.start_ticks / ticks - boot_offset  # monotonic
        began = stats.started_at - started
        rows.append(
            {
                "pid": process.pid,
                "role": process.role,
                "samples": stats.samples + stats.empty + stats.error_count,
                "elapsed": stats.elapsed,
                "achieved_hz": stats.achieved_hz,
                "sampled_after_start_s": began,
                "started_after_sampling_s": started - sampling_began,
            }
        )
    return rows


def check_subprocess_output(
    subprocesses: bool, fmt: str, output: str | None, rotate: float | None, command: object
) -> None:
    """Reject the `record` flags --subprocesses cannot go with (UsageError): an Rprof.out
    per process needs a file name to put them beside, and files are not rotated."""
    if not subprocesses:
        return
    if rotate is not None:
        raise UsageError(
            "--rotate cannot be combined with --subprocesses",
            "Record the processes without --rotate, or rotate the target alone.",
        )
    if fmt == RPROF and not output and command is None:
        raise UsageError(
            "--subprocesses writes one Rprof.out per process: name the target's with -o",
            "Example: xrtop record --subprocesses -p 1234 -o prof.out "
            "(children go to prof.<PID>.out).",
        )


def report_child_files(streams: ChildStreams) -> bool:
    """Say where the children's files went and what failed; False if any write failed."""
    if streams.paths:
        example = child_output_path(streams.path, "<PID>")
        print(
            f"xrtop: {len(streams.paths)} child profiles written beside {streams.path} ({example})",
            file=sys.stderr,
        )
    for error in streams.errors:
        print(f"xrtop: {error}", file=sys.stderr)
    return not streams.errors


def child_output_path(path: str, pid: int | str) -> str:
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
        self._close_ended()  # (a fork storm must not hold hundreds of files open)
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
        self._close_ended()
        for _, stream in self._open:
            stream.tick()

    def _close_ended(self) -> None:
        still = []
        for process, stream in self._open:
            if process.state == ENDED:
                stream.close()
                self._note(stream.error)
            else:
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
