"""Saving and exporting from the live view: file names, and what each format is given.

Both go through `xrtop.formats.save_profile`, the writer the command line uses too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from sampler.pprof import ProfileInfo
from sampler.rprof import RprofOptions
from xrtop.children import child_output_path
from xrtop.formats import FORMATS
from xrtop.formats import RPROF
from xrtop.formats import Profile
from xrtop.formats import rprof_file_info
from xrtop.formats import save_profile
from xrtop.processes_view import ProcessPart
from xrtop.session import default_output_name
from xrtop.session import new_stamped_path
from xrtop.sources import FileSource
from xrtop.sources import LiveSource
from xrtop.sources import ProfileSource


def new_path(source: ProfileSource, suffix: str) -> Path:
    """A new file name in the current directory for `source`'s samples: after the file
    shown, or after the PID and the time."""
    if isinstance(source, FileSource):
        return new_stamped_path(source.path.name.removesuffix(".out"), suffix)
    return default_output_name(source.pid if source.pid else 0, suffix)


def profile_name(source: ProfileSource) -> str:
    """What a profile of `source` is called inside a file that names it (speedscope)."""
    return source.title if source.pid is None else f"{source.title} (PID {source.pid})"


def profile_info(source: ProfileSource, start: int) -> ProfileInfo:
    """When `source`'s samples from index `start` on were taken, and of which process."""
    if isinstance(source, LiveSource):
        session = source.session
        return session.profile_info(*session.span_ns(start))
    if isinstance(source, FileSource):
        log = source.log
        return rprof_file_info(source.path, len(log) - start, log.interval_us)
    return ProfileInfo(pid=source.pid)


def write_samples(
    source: ProfileSource,
    fmt: str,
    start: int,
    by_line: bool,
    path: Path | None = None,
    parts: Sequence[ProcessPart] = (),
) -> tuple[Path, int, int]:
    """Write `source`'s samples from index `start` in format `fmt` to `path` (default: a
    new name); return (path, samples, bytes), summed over every file written.

    Rprof.out and pprof record what the source records (its lines, GC marker and idle
    samples); the other formats split functions by line when the view does (`by_line`).
    With the `parts` of a source of several processes (the target first), Rprof.out also
    writes each child's samples beside it, named as `record --subprocesses` names them
    (F.<PID>.out); the other formats hold every process, as `record` writes them.
    """
    options = source.options
    output_format = FORMATS[fmt]
    if not output_format.as_recorded:
        options = RprofOptions(lines=by_line, gc=options.gc, idle=options.idle)
    target = path or new_path(source, output_format.suffix)
    info = profile_info(source, start)
    profile = Profile.of_log(source.log, options, profile_name(source), start, info=info)
    logs = source.processes.logs() if source.processes is not None else {}
    each = [
        (part, Profile.of_log(logs[part.pid], options, part.label, part.start))
        for part in parts
        if part.pid in logs
    ]
    if fmt != RPROF and each:
        profile = replace(profile, processes=tuple((p.name, p.samples) for _, p in each))
    samples, size = save_profile(target, fmt, profile)
    if fmt == RPROF:
        for part, child in each:
            if logs[part.pid] is not source.log:
                child_path = Path(child_output_path(str(target), part.pid))
                count, written = save_profile(child_path, fmt, child)
                samples, size = samples + count, size + written
    return target, samples, size
