"""Big, realistic Rprof.out files for the benchmarks and the tests (seeded, reproducible).

A made-up R package of a few thousand functions spread over source files, each calling a
few others at fixed lines, is walked from a handful of entry points into distinct stacks
of 4 to 36 frames, 16 on average (some frames are R's own functions, which have no line);
the samples draw from these stacks with a few hot ones, as a real recording does. Written
in R's own format: the `line profiling: ` header, `#File` lines before a file's first use,
`"<GC>"` samples, and, on request, the memory-profiling columns (`:a:b:c:d:`).

Usage: python bench/bigprofile.py OUT [--samples N] [--stacks N] [--seed N] [--no-lines]
       [--memory]   (defaults: like an hour's recording of real code, ~62 MB)
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sampler.model import Stack  # noqa: E402
from sampler.rprof import RprofOptions  # noqa: E402
from sampler.rprof import RprofWriter  # noqa: E402

#: R's own functions a stack passes through; R knows no source line for them.
R_FUNCTIONS = (
    "lapply",
    "FUN",
    "vapply",
    "do.call",
    "<Anonymous>",
    "tryCatch",
    "withCallingHandlers",
    "tryCatchList",
    "tryCatchOne",
    "doTryCatch",
    "eval",
    "Reduce",
    "Map",
    "mapply",
)
#: The size of the issue's file: 177,785 samples of 20,819 distinct lines, 62 MB.
ISSUE_SAMPLES = 177_785
ISSUE_STACKS = 20_819


@dataclass(frozen=True)
class Generated:
    """What was written: the distinct stacks and each sample's index into them."""

    stacks: list[Stack]
    samples: list[int]
    options: RprofOptions
    memory: bool


def _stacks(rng: random.Random, count: int, lines: bool, gc: bool) -> list[Stack]:
    """`count` distinct stacks from random walks over a made-up package's call graph."""
    functions = max(200, count // 6)
    files = [
        f"R/{rng.choice(('model', 'fit', 'utils', 'io', 'plot', 'data'))}_{i}.R"
        for i in range(max(8, functions // 60))
    ]
    names = [
        f"{rng.choice(('fit', 'predict', 'update', 'check', 'read', 'tidy', 'make', 'get'))}"
        f"_{rng.choice(('model', 'rows', 'args', 'cols', 'data', 'grid', 'tree'))}_{i}"
        for i in range(functions)
    ]
    home = {name: (rng.choice(files), rng.randrange(1, 2000)) for name in names}
    callees = {name: rng.sample(names, 4) for name in names}
    entries = names[:8]
    seen: set[Stack] = set()
    stacks: list[Stack] = []
    while len(stacks) < count:
        depth = round(rng.triangular(4, 36, 8))
        frames = [rng.choice(entries)]
        while len(frames) < depth:
            if rng.random() < 0.15:
                frames.append(rng.choice(R_FUNCTIONS))
            else:
                caller = next((f for f in reversed(frames) if f in callees), frames[0])
                frames.append(rng.choice(callees[caller]))
        # sites[i]: the line running in frame i (innermost first); R functions have none.
        sites: list[tuple[str, int] | None] = []
        for name in reversed(frames):
            if name in home and lines:
                path, first = home[name]
                sites.append((path, first + rng.randrange(40)))
            else:
                sites.append(None)
        sites.append(("main.R", rng.randrange(1, 80)) if lines else None)
        stack = Stack(
            tuple(reversed(frames)),
            tuple(sites) if lines else (),
            gc=gc and rng.random() < 0.03,
        )
        if stack not in seen:
            seen.add(stack)
            stacks.append(stack)
    return stacks


class _MemoryColumns:
    """A text stream that puts R's memory-profiling columns in front of each sample line."""

    def __init__(self, out: IO[str], rng: random.Random) -> None:
        self.out = out
        self.rng = rng
        self.header = True

    def write(self, text: str) -> int:
        if self.header:  # R writes "memory profiling: " first of the header's prefixes
            self.header = False
            return self.out.write("memory profiling: " + text)
        for line in text.splitlines(keepends=True):
            if not line.startswith("#File"):
                small, big, dup = (self.rng.randrange(10**6) for _ in range(3))
                line = f":{small}:{big}:{small * 7}:{dup}:{line}"
            self.out.write(line)
        return len(text)


def generate(
    path: Path,
    *,
    samples: int = ISSUE_SAMPLES,
    stacks: int = ISSUE_STACKS,
    seed: int = 1,
    lines: bool = True,
    gc: bool = True,
    memory: bool = False,
    interval_us: int = 20_000,
) -> Generated:
    """Write a profile of `samples` samples over `stacks` distinct stacks to `path`.

    Every stack is sampled at least once; the rest follow a few hot stacks, in runs.
    """
    rng = random.Random(seed)
    pool = _stacks(rng, stacks, lines, gc)
    # Runs of one stack: each stack once, then hot ones, spread over the recording.
    runs = [[index] for index in range(len(pool))]
    drawn = len(pool)
    while drawn < samples:
        hot = min(len(pool) - 1, int(rng.paretovariate(0.9)) - 1)
        pick = hot if rng.random() < 0.6 else rng.randrange(len(pool))
        length = min(rng.randint(1, 6), samples - drawn)
        runs.append([pick] * length)
        drawn += length
    rng.shuffle(runs)
    order = [index for run in runs for index in run][:samples]
    options = RprofOptions(lines=lines, gc=gc)
    with path.open("w", encoding="utf-8") as out:
        stream: IO[str] = out
        if memory:
            stream = _MemoryColumns(out, rng)  # type: ignore[assignment]
        writer = RprofWriter(stream, interval_us, options)
        for index in order:
            writer.add(pool[index])
    return Generated(pool, order, options, memory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("out", type=Path)
    parser.add_argument("--samples", type=int, default=ISSUE_SAMPLES)
    parser.add_argument("--stacks", type=int, default=ISSUE_STACKS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-lines", dest="lines", action="store_false")
    parser.add_argument("--memory", action="store_true", help="R's memory-profiling columns")
    args = parser.parse_args(argv)
    generate(
        args.out,
        samples=args.samples,
        stacks=args.stacks,
        seed=args.seed,
        lines=args.lines,
        memory=args.memory,
    )
    size = args.out.stat().st_size
    print(f"{args.out}: {args.samples} samples, {args.stacks} distinct stacks, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
