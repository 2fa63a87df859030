"""Memory of one hour at 100 Hz: 360,000 synthetic samples into SampleLog + Aggregate.

The stacks are deep and varied: random walks down a call graph of a few hundred functions
with recursion, depths up to several hundred frames, source locations on every frame
(line profiling), and a new distinct stack for one sample in ten (36,000 distinct stacks:
far more variety than real programs show in an hour). The rest of the samples repeat
recent or hot stacks, as real samples do. The Aggregate updates in small batches, as the live
view does several times a second.

Prints what tracemalloc counts (Python allocations: the log, the interned stacks, the
aggregates) after the hour and at its peak, and exits non-zero above the budget.

Usage: .venv/bin/python bench/memory_hour.py [--samples N] [--new-every K] [--budget-mb MB]
       [--by-line] [--random-walks]

Measured (2-core VM, Python 3.11; 33,565 distinct stacks of mean depth 45, 766,604 call
tree nodes): 60 MB after the hour (peak 68 MB) with the flat call tree storage; the same
hour cost 323 MB with a dict per tree node and unshared source locations. A second
Aggregate by line: 89 MB (peak 96 MB). `--random-walks` (1.05 million tree nodes, every
location distinct): 117 MB (peak 126 MB).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sampler.model import Aggregate
from sampler.model import SampleLog
from sampler.model import SrcLoc
from sampler.model import Stack


class StackFactory:
    """Deterministic random stacks from a synthetic program's call graph.

    Each function calls a few others, each from its own line; one callee is its usual
    one. A stack walks down from `main`, mostly along usual callees, and recursive
    functions recurse up to hundreds of levels. The innermost frame runs one of a few lines
    of its function. `random_walks` makes every step a uniformly random callee and every
    line random instead: nearly no two stacks share a path (a worst case, not a program).
    """

    def __init__(
        self, seed: int, functions: int = 400, files: int = 40, random_walks: bool = False
    ) -> None:
        """A program of `functions` functions spread over `files` files."""
        self.rng = random.Random(seed)
        self.random_walks = random_walks
        rng = self.rng
        self.names = [
            f"pkg{i % 7}::fun_{i}" if i % 5 == 0 else f"fun_{i}" for i in range(functions)
        ]
        self.names[0] = "main"
        self.files = [f"/home/user/project/R/file_{i}.R" for i in range(files)]
        self.home = [self.files[rng.randrange(files)] for _ in range(functions)]
        self.first_line = [rng.randint(1, 2000) for _ in range(functions)]
        self.callees = [
            [rng.randrange(1, functions) for _ in range(rng.randint(1, 6))]
            for _ in range(functions)
        ]
        self.call_line = [
            {g: self.first_line[f] + rng.randint(1, 60) for g in gs}
            for f, gs in enumerate(self.callees)
        ]
        self.recursive = set(rng.sample(range(1, functions), functions // 10))

    def new_stack(self) -> Stack:
        """A walk from `main` down to depth 3..600 (most shallow, some very deep)."""
        rng = self.rng
        depth = min(600, 3 + int(rng.expovariate(1 / 40)))
        path = [0]
        while len(path) < depth:
            f = path[-1]
            if f in self.recursive and rng.random() < 0.9:
                path.append(f)  # recursion: the deep part of deep stacks
            elif self.random_walks or rng.random() < 0.15:
                path.append(rng.choice(self.callees[f]))
            else:
                path.append(self.callees[f][0])
        frames = path[::-1]  # innermost first
        inner = frames[0]
        sites: list[SrcLoc | None] = [
            (self.home[inner], self.first_line[inner] + rng.randint(1, 5))
        ]
        for callee, caller in zip(frames, frames[1:]):
            line = self.call_line[caller].get(callee, self.first_line[caller] + 7)
            if self.random_walks:
                line = rng.randint(1, 5000)
            sites.append((self.home[caller], line))
        sites.append(("/home/user/project/main.R", rng.randint(1, 50)))
        names = tuple(self.names[f] for f in frames)
        return Stack(names, tuple(sites), gc=rng.random() < 0.02, idle=rng.random() < 0.05)


def main() -> int:
    """Run the synthetic hour and report memory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=360_000, help="default: 1 h at 100 Hz")
    parser.add_argument("--new-every", type=int, default=10, help="1 in K samples is new")
    parser.add_argument("--budget-mb", type=float, default=100.0)
    parser.add_argument(
        "--by-line", action="store_true", help="also keep a second Aggregate by source line"
    )
    parser.add_argument(
        "--random-walks", action="store_true", help="worst case: no two stacks share a path"
    )
    args = parser.parse_args()

    factory = StackFactory(seed=1, random_walks=args.random_walks)
    rng = random.Random(2)
    tracemalloc.start()
    began = time.perf_counter()
    log = SampleLog(10_000)
    flat = Aggregate(log)
    by_line = Aggregate(log, by_line=True, include_idle=True) if args.by_line else None
    seen: list[Stack] = []
    hot: list[Stack] = []
    for i in range(args.samples):
        if not seen or rng.randrange(args.new_every) == 0:
            # A fresh object every time, as the sampler makes: interning must dedupe it.
            stack = factory.new_stack()
            seen.append(stack)
            if len(seen) > 2000:  # the generator's own memory stays small: recent only
                del seen[:1000]
            if rng.random() < 0.01:
                hot.append(stack)
        elif hot and rng.random() < 0.5:
            stack = rng.choice(hot)
        else:
            stack = seen[-1 - min(int(rng.expovariate(1 / 20)), len(seen) - 1)]
        log.add(Stack(stack.names, stack.sites, stack.gc, stack.idle), i / 100)
        if i % 25 == 24:  # the live view refreshes 4 times a second
            flat.update()
            if by_line is not None:
                by_line.update()
    flat.update()
    if by_line is not None:
        by_line.update()
    # The generator's own recent stacks are not part of xrtop's cost.
    seen.clear()
    hot.clear()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    elapsed = time.perf_counter() - began
    mb = 1 << 20
    print(
        f"{len(log)} samples, {len(log.stacks)} distinct stacks, mean depth "
        f"{sum(len(s.names) for s in log.stacks) / max(len(log.stacks), 1):.0f}, "
        f"call tree nodes: {len(flat.tree)} (by name)"
        + (f", {len(by_line.tree)} (by line)" if by_line is not None else "")
    )
    print(
        f"memory after the hour: {current / mb:.1f} MB (peak {peak / mb:.1f} MB, which "
        f"includes the generator's recent stacks; budget {args.budget_mb:g} MB); "
        f"{elapsed:.1f} s to run under tracemalloc"
    )
    return 0 if peak / mb < args.budget_mb else 1


if __name__ == "__main__":
    sys.exit(main())
