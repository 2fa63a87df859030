"""Flame-graph formats: collapsed stacks and speedscope's JSON file format.

- collapsed: `outer;middle;inner count`, one line per distinct stack (Brendan Gregg's
  FlameGraph, inferno and speedscope import it);
- speedscope: a "sampled" profile with a shared frame table
  (https://www.speedscope.app/file-format-schema.json).

With line information a function is split by the line it was executing: a collapsed frame
is named `name (file:line)`; a speedscope frame keeps the name and gets `file` and `line`.
Native frames (`--native`) keep their spelling `<Native:label>` in collapsed stacks; in
speedscope they are named by their label, their file being their library or "[native]".
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import IO
from typing import Union

from sampler.mixed import NATIVE_MAPPING
from sampler.mixed import is_native
from sampler.mixed import native_label
from sampler.mixed import native_library
from sampler.model import GC_NAME
from sampler.model import SampleLog
from sampler.model import SrcLoc
from sampler.model import Stack

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
FORMATS = ("rprof", "collapsed", "speedscope")


def frames_of(stack: Stack, lines: bool = False) -> list[tuple[str, SrcLoc | None]]:
    """(name, line executing in it) per frame of `stack`, outermost first, `<GC>` innermost
    when set; locations only with `lines`."""
    frames = [(name, stack.site(i) if lines else None) for i, name in enumerate(stack.names)]
    frames.reverse()
    if stack.gc:
        frames.append((GC_NAME, None))
    return frames


def _label(name: str, loc: SrcLoc | None) -> str:
    return f"{name} ({loc[0]}:{loc[1]})" if loc else name


def frame_labels(stack: Stack, lines: bool = False) -> list[str]:
    """The frames of `stack`, outermost first, `<GC>` innermost when set; with `lines`, a
    frame is `name (file:line)`."""
    return [_label(name, loc) for name, loc in frames_of(stack, lines)]


def _wanted(stack: Stack, idle: bool) -> bool:
    return bool(stack.names or stack.gc) and (idle or not stack.idle)


#: Samples to export: a log (each distinct stack is then labelled once) or stacks in order.
Samples = Union[SampleLog, Iterable[Stack]]


def _as_log(samples: Samples, interval_us: int) -> SampleLog:
    if isinstance(samples, SampleLog):
        return samples
    return SampleLog.from_stacks(samples, interval_us)


def write_collapsed(
    out: IO[str], samples: Samples, *, idle: bool = False, lines: bool = False
) -> int:
    """Write collapsed stacks; return the number of samples they hold."""
    log = _as_log(samples, 1)
    counts: Counter[str] = Counter()
    for sid, count in log.counts().items():
        stack = log.stacks[sid]
        if _wanted(stack, idle):
            # ';' separates frames in this format; R names may contain it.
            labels = frame_labels(stack, lines)
            counts[";".join(label.replace(";", ":") for label in labels)] += count
    for key, count in sorted(counts.items()):
        out.write(f"{key} {count}\n")
    return sum(counts.values())


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def with_process_frame(samples: Samples, label: str) -> Iterator[Stack]:
    """The stacks of `samples` with one more frame outermost, named `label` (the process,
    for a profile of several); a sample without frames stays without."""
    for stack in _as_log(samples, 1).iter_stacks():
        if stack.names or stack.gc:
            sites = (*stack.sites, None) if stack.sites else ()
            stack = Stack((*stack.names, label), sites, stack.gc, stack.idle)
        yield stack


def write_speedscope(
    out: IO[str],
    samples: Samples,
    interval_us: int,
    *,
    name: str,
    idle: bool = False,
    lines: bool = False,
) -> int:
    """Write a speedscope file of one profile; return the number of samples it holds."""
    return write_speedscope_profiles(
        out, [(name, samples)], interval_us, name=name, idle=idle, lines=lines
    )


def write_speedscope_profiles(
    out: IO[str],
    profiles: Sequence[tuple[str, Samples]],
    interval_us: int,
    *,
    name: str,
    idle: bool = False,
    lines: bool = False,
) -> int:
    """Write a speedscope file of one "sampled" profile per (name, samples) of `profiles`
    (e.g. one per process), with shared frames numbered in the order the samples first use
    them; return the number of samples it holds.

    Each distinct stack's list of frame numbers is encoded once and written per sample.
    """
    frame_index: dict[str, int] = {}
    frames: list[dict[str, object]] = []
    step = interval_us / 1e6
    parts: list[tuple[str, list[str]]] = []
    for profile_name, samples in profiles:
        log = _as_log(samples, interval_us)
        rows: dict[int, str] = {}  # stack id -> its samples entry, "" when left out
        entries: list[str] = []
        for sid in log.stack_ids:
            row = rows.get(sid)
            if row is None:
                stack = log.stacks[sid]
                row = rows[sid] = (
                    _compact(_frame_row(stack, lines, frame_index, frames))
                    if (_wanted(stack, idle))
                    else ""
                )
            if row:
                entries.append(row)
        parts.append((profile_name, entries))
    document = {
        "$schema": SPEEDSCOPE_SCHEMA,
        "exporter": "xrtop",
        "name": name,
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
    }
    out.write(_compact(document)[:-1] + ',"profiles":[')
    for i, (profile_name, entries) in enumerate(parts):
        profile = {
            "type": "sampled",
            "name": profile_name,
            "unit": "seconds",
            "startValue": 0,
            "endValue": round(len(entries) * step, 6),
        }
        # The samples and weights are written piece by piece: one JSON text of them all
        # would be hundreds of megabytes for a long recording.
        out.write(("," if i else "") + _compact(profile)[:-1])
        out.write(',"samples":[')
        _write_joined(out, entries)
        out.write('],"weights":[')
        _write_joined(out, [_compact(step)] * len(entries))
        out.write("]}")
    out.write("]}\n")
    return sum(len(entries) for _, entries in parts)


def _frame_row(
    stack: Stack, lines: bool, frame_index: dict[str, int], frames: list[dict[str, object]]
) -> list[int]:
    """The frame numbers of `stack`, outermost first, adding its new frames to `frames`."""
    row = []
    for name, loc in frames_of(stack, lines):
        label = _label(name, loc)
        index = frame_index.get(label)
        if index is None:
            index = frame_index[label] = len(frames)
            # speedscope shows file and line itself, beside the name.
            frame: dict[str, object] = {"name": name}
            if loc is not None:
                frame["file"], frame["line"] = loc
            elif is_native(name):
                # Native code: its label, and as its file the library, or "[native]".
                label = native_label(name)
                frame = {"name": label, "file": native_library(label) or NATIVE_MAPPING}
            frames.append(frame)
        row.append(index)
    return row


def _write_joined(out: IO[str], entries: list[str], batch: int = 10_000) -> None:
    """Write `entries` separated by commas, a batch at a time."""
    for start in range(0, len(entries), batch):
        if start:
            out.write(",")
        out.write(",".join(entries[start : start + batch]))
