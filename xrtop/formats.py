"""Every output format xrtop writes, in one table, and the one entry point that writes them.

`xrtop record --format`, `xrtop convert`, the live view's `s` (save) and `e` (export) all
write through `write_profile` (to an open stream) or `save_profile` (to a file, renamed
into place when complete). Adding a format is one entry in `FORMATS`: the command line's
choices, the default file name, `convert` and the export prompt all follow it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from typing import Any

from sampler.errors import UsageError
from sampler.export import Samples
from sampler.export import with_process_frame
from sampler.export import write_collapsed
from sampler.export import write_speedscope_profiles
from sampler.model import SampleLog
from sampler.model import Stack
from sampler.pprof import ProfileInfo
from sampler.pprof import write_pprof
from sampler.rprof import RprofOptions
from sampler.rprof import RprofWriter

#: What a profile says of its recording when nothing is known: no time, no process.
NO_INFO = ProfileInfo()


@dataclass(frozen=True)
class Profile:
    """Samples to write, and what every writer needs to know about them."""

    #: A log (a writer that counts handles each distinct stack once) or stacks in order.
    samples: Samples
    interval_us: int
    #: lines: frames carry the line running in them; idle: keep samples where R waits;
    #: gc: Rprof.out marks samples taken in GC.
    options: RprofOptions
    #: What the profile is of (speedscope shows it as the title).
    name: str = ""
    #: When the samples were taken, and of which process (pprof records it).
    info: ProfileInfo = NO_INFO
    #: A profile of several processes (--subprocesses): (label, samples) per process, the
    #: target first. Rprof.out holds `samples` alone (the target's; each child has a file of
    #: its own); collapsed and pprof hold every process, its label the outermost frame;
    #: speedscope holds one profile per process.
    processes: tuple[tuple[str, Samples], ...] = ()

    @classmethod
    def of_log(
        cls,
        log: SampleLog,
        options: RprofOptions,
        name: str,
        start: int = 0,
        stop: int | None = None,
        info: ProfileInfo = NO_INFO,
    ) -> Profile:
        """The samples of `log` from index `start` to `stop` (default: all so far; the log
        itself when that is all of it: its stacks are interned already)."""
        whole = start == 0 and stop is None
        samples: Samples = log if whole else list(log.iter_stacks(start, stop))
        return cls(samples, log.interval_us, options, name, info)

    @property
    def stacks(self) -> Iterable[Stack]:
        """Every sample's stack, in order."""
        samples = self.samples
        return samples.iter_stacks() if isinstance(samples, SampleLog) else samples

    def all_processes(self) -> Samples:
        """The samples of every process, each under its process's frame (`processes`);
        `samples` itself for a profile of one process."""
        if not self.processes:
            return self.samples
        return [s for label, part in self.processes for s in with_process_frame(part, label)]


def rprof_file_info(path: Path, samples: int, interval_us: int) -> ProfileInfo:
    """When the last `samples` samples of the Rprof.out file `path` were taken, as well as
    can be told: the file records no time, so its last change is taken as their end and
    their count times the interval as their length (CPU time, for R's own files)."""
    try:
        end_ns = path.stat().st_mtime_ns
    except OSError:  # gone since it was read: no time to tell
        return NO_INFO
    return ProfileInfo(start_ns=max(0, end_ns - samples * interval_us * 1000))


#: Writes a profile to an open stream (text, or bytes for a binary format); returns the
#: number of samples written.
Writer = Callable[[IO[Any], Profile], int]


@dataclass(frozen=True)
class OutputFormat:
    """One format xrtop can write."""

    name: str  #: the value of --format
    suffix: str  #: the ending of a default file name
    label: str  #: a few words for --help and the export prompt
    write: Writer
    #: The key that picks it in the live view's export prompt ("" : not offered there).
    export_key: str = ""
    #: What reads it, for the command palette's export entry.
    readers: str = ""
    #: Whether `xrtop convert` (Rprof.out in, this out) offers it.
    convertible: bool = True
    #: Written as bytes rather than text.
    binary: bool = False
    #: Written with the recording's own options, as its Rprof.out holds them (lines, `<GC>`,
    #: idle samples), not with the view's choice of functions or lines: its readers choose.
    as_recorded: bool = False


def _write_rprof(out: IO[str], profile: Profile) -> int:
    writer = RprofWriter(out, profile.interval_us, profile.options)
    writer.add_all(profile.stacks)
    return writer.samples_written


def _write_collapsed(out: IO[str], profile: Profile) -> int:
    options = profile.options
    return write_collapsed(out, profile.all_processes(), idle=options.idle, lines=options.lines)


def _write_speedscope(out: IO[str], profile: Profile) -> int:
    options = profile.options
    return write_speedscope_profiles(
        out,
        profile.processes or [(profile.name, profile.samples)],
        profile.interval_us,
        name=profile.name,
        idle=options.idle,
        lines=options.lines,
    )


def _write_pprof(out: IO[bytes], profile: Profile) -> int:
    stacks = profile.all_processes() if profile.processes else profile.stacks
    assert not isinstance(stacks, SampleLog)
    return write_pprof(out, stacks, profile.interval_us, profile.options, profile.info)


#: Every format, the default first.
FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat(
            "rprof", "out", "R's Rprof.out", _write_rprof, convertible=False, as_recorded=True
        ),
        OutputFormat(
            "collapsed",
            "collapsed.txt",
            "collapsed stacks",
            _write_collapsed,
            export_key="c",
            readers="For flamegraph.pl, inferno, speedscope",
        ),
        OutputFormat(
            "speedscope",
            "speedscope.json",
            "speedscope JSON",
            _write_speedscope,
            export_key="j",
            readers="Open it in speedscope.app",
        ),
        OutputFormat(
            "pprof",
            "pb.gz",
            "pprof profile",
            _write_pprof,
            export_key="p",
            readers="For go tool pprof, Pyroscope, Parca",
            binary=True,
            as_recorded=True,
        ),
    )
}
#: The format of a live stream and of `s` in the live view.
RPROF = "rprof"


def output_format(name: str) -> OutputFormat:
    """The format called `name`; raise UsageError for an unknown one."""
    try:
        return FORMATS[name]
    except KeyError:
        raise UsageError(f"unknown format '{name}'", f"Use one of: {', '.join(FORMATS)}.") from None


def write_profile(out: IO[Any], fmt: str, profile: Profile) -> int:
    """Write `profile` to `out` in format `fmt`; return the number of samples written."""
    return output_format(fmt).write(out, profile)


def _open(path: str | Path, fmt: str) -> IO[Any]:
    if output_format(fmt).binary:
        return open(path, "wb")
    return open(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n")


def open_output(path: str, fmt: str = RPROF) -> IO[Any]:
    """Open `path` for writing format `fmt`; raise UsageError with the reason if impossible."""
    try:
        return _open(path, fmt)
    except OSError as err:
        raise UsageError(
            f"cannot write {path}: {err.strerror}",
            "Choose a writable path with -o.",
        ) from None


def standard_output(fmt: str = RPROF) -> IO[Any]:
    """Standard output, as bytes for a binary format."""
    return sys.stdout.buffer if output_format(fmt).binary else sys.stdout


def close_output(out: IO[Any]) -> None:
    """Close `out` unless it is standard output (which is only flushed)."""
    if out is sys.stdout or out is getattr(sys.stdout, "buffer", None):
        out.flush()
    else:
        out.close()


def partial_path(path: Path) -> Path:
    """The hidden name beside `path` that a file has until it is complete."""
    return path.with_name(f".{path.name}.partial")


def save_profile(path: Path, fmt: str, profile: Profile) -> tuple[int, int]:
    """Write `profile` to the file `path`; return (samples, bytes) written.

    The file is written beside its final name and renamed into place, so a reader never
    sees half a file. Raises OSError when the file cannot be written.
    """
    tmp = partial_path(path)
    with _open(tmp, fmt) as out:
        count = write_profile(out, fmt, profile)
    tmp.replace(path)
    return count, path.stat().st_size
