"""Flame-graph formats: collapsed stacks and speedscope's JSON file format.

- collapsed: `outer;middle;inner count`, one line per distinct stack (Brendan Gregg's
  FlameGraph, inferno and speedscope import it);
- speedscope: a "sampled" profile with a shared frame table
  (https://www.speedscope.app/file-format-schema.json).

With line information a function is split by the line it was executing: a collapsed frame
is named `name (file:line)`; a speedscope frame keeps the name and gets `file` and `line`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import IO

from sampler.model import GC_NAME
from sampler.model import SrcLoc
from sampler.model import Stack

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
FORMATS = ("rprof", "collapsed", "speedscope", "pprof")


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


def write_collapsed(
    out: IO[str], stacks: Iterable[Stack], *, idle: bool = False, lines: bool = False
) -> int:
    """Write collapsed stacks; return the number of samples they hold."""
    counts: Counter[str] = Counter()
    for stack in stacks:
        if _wanted(stack, idle):
            # ';' separates frames in this format; R names may contain it.
            counts[";".join(label.replace(";", ":") for label in frame_labels(stack, lines))] += 1
    for key, count in sorted(counts.items()):
        out.write(f"{key} {count}\n")
    return sum(counts.values())


def speedscope_document(
    stacks: Iterable[Stack],
    interval_us: int,
    *,
    name: str,
    idle: bool = False,
    lines: bool = False,
) -> dict[str, object]:
    """The speedscope JSON document (as Python objects) for `stacks`."""
    frame_index: dict[str, int] = {}
    frames: list[dict[str, object]] = []
    samples: list[list[int]] = []
    for stack in stacks:
        if not _wanted(stack, idle):
            continue
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
                frames.append(frame)
            row.append(index)
        samples.append(row)
    step = interval_us / 1e6
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "exporter": "xrtop",
        "name": name,
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "seconds",
                "startValue": 0,
                "endValue": round(len(samples) * step, 6),
                "samples": samples,
                "weights": [step] * len(samples),
            }
        ],
    }


def write_speedscope(
    out: IO[str],
    stacks: Iterable[Stack],
    interval_us: int,
    *,
    name: str,
    idle: bool = False,
    lines: bool = False,
) -> int:
    """Write a speedscope file; return the number of samples it holds."""
    document = speedscope_document(stacks, interval_us, name=name, idle=idle, lines=lines)
    json.dump(document, out, separators=(",", ":"))
    out.write("\n")
    profiles = document["profiles"]
    assert isinstance(profiles, list)
    return len(profiles[0]["samples"])
