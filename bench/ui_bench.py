"""UI refresh cost of the live view on a big synthetic profile.

A headless `XrtopApp` (Textual's test driver, no terminal) watches a synthetic live source
with ~5,000 distinct functions and ~100,000 call-tree nodes while samples keep arriving, and
this prints how long one refresh takes per view: taking in new samples
(`Aggregate.update`), rebuilding the view's rows, and Textual rendering the screen.

Usage: python bench/ui_bench.py [--functions N] [--stacks N] [--samples N] [--rounds N]

Prints timings only; nothing is asserted (speed is not a unit-test property).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable
from collections.abc import Callable

from sampler.model import SampleLog
from sampler.model import SamplerStats
from sampler.model import Stack
from sampler.rprof import RprofOptions
from sampler.thread import State
from xrtop.app import XrtopApp
from xrtop.processes_view import SampledProcesses


class SyntheticSource:
    """A live source fed from a fixed pool of random stacks."""

    live = True

    def __init__(self, functions: int, stacks: int, seed: int = 1) -> None:
        rng = random.Random(seed)
        names = [f"fn_{i:05d}" for i in range(functions)]
        roots = names[:20]
        pool = []
        for _ in range(stacks):
            depth = rng.randint(4, 14)
            path = [rng.choice(roots)] + [rng.choice(names) for _ in range(depth - 1)]
            pool.append(Stack(tuple(reversed(path))))
        self.pool = pool
        self.rng = rng
        self.log = SampleLog(10_000)
        self.options = RprofOptions()
        self.title = "synthetic.R"
        self.pid: int | None = 1
        self.r_version = "4.5.0"
        self.stream_path = ""
        self.idle_known = True
        self.gc_available: bool | None = True
        self.processes: SampledProcesses | None = None
        self._t = 0.0

    def feed(self, count: int) -> None:
        """Append `count` samples (Zipf-like: a few stacks are hot)."""
        pool, rng = self.pool, self.rng
        n = len(pool)
        for _ in range(count):
            index = min(n - 1, int(rng.paretovariate(1.2)) - 1) if rng.random() < 0.5 else None
            stack = pool[index] if index is not None else pool[rng.randrange(n)]
            self.log.add(stack, self._t)
            self._t += 0.01

    def state(self) -> State | None:
        return State.RUNNING

    def stats(self) -> SamplerStats:
        return SamplerStats(requested_hz=100, samples=len(self.log), elapsed=self._t)

    def last_stack(self) -> Stack | None:
        return self.log.stack_at(len(self.log) - 1) if len(self.log) else None

    def rate_hz(self) -> float:
        return 100.0

    def set_rate(self, hz: float) -> None:
        pass

    def usage(self) -> tuple[float | None, int | None]:
        return 99.0, 100 << 20

    def stop(self) -> None:
        pass

    def lines_note(self) -> str | None:
        return None


#: Seconds spent in `app.refresh_data()` alone, per refresh (the rest is Textual's render).
SYNC: list[float] = []


async def timed(rounds: int, step: Callable[[], Awaitable[None]]) -> list[float]:
    SYNC.clear()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        await step()
        times.append(time.perf_counter() - began)
    return times


def report(label: str, times: list[float]) -> None:
    ms = [t * 1000 for t in times]
    sync = [t * 1000 for t in SYNC] or [0.0]
    print(
        f"{label:<40} refresh_data median {statistics.median(sync):6.1f} ms"
        f" max {max(sync):6.1f} ms | with render median {statistics.median(ms):6.1f} ms"
        f" max {max(ms):6.1f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    source = SyntheticSource(args.functions, args.stacks)
    began = time.perf_counter()
    source.feed(args.samples)
    app = XrtopApp(source, refresh_s=3600)  # refreshes are driven by hand below
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        agg = app.model.agg
        print(
            f"profile: {len(source.log)} samples, {len(source.log.stacks)} distinct stacks, "
            f"{len(agg.total)} functions, {len(agg.tree)} tree nodes "
            f"(built in {time.perf_counter() - began:.1f} s)"
        )
        per_refresh = args.per_refresh

        async def refresh() -> None:
            source.feed(per_refresh)
            began = time.perf_counter()
            app.refresh_data()
            SYNC.append(time.perf_counter() - began)
            await pilot.pause()

        await pilot.press("1")
        report(f"Top view (+{per_refresh} samples each)", await timed(args.rounds, refresh))
        await pilot.press("slash", "f", "n", "_", "0", "0", "enter")
        report("Top view, filter 'fn_00'", await timed(args.rounds, refresh))
        await pilot.press("escape")
        await pilot.press("2")
        report("Tree view, hottest path open", await timed(args.rounds, refresh))
        await pilot.press("E")
        await pilot.pause()
        print(f"  expand all: {len(app.tree_view.keys)} lines listed")
        report("Tree view, everything expanded (capped)", await timed(args.rounds, refresh))
        await pilot.press("3")
        report("Now view", await timed(args.rounds, refresh))
        await pilot.press("4")
        report("Flame view", await timed(args.rounds, refresh))
        await pilot.press("down", "down", "enter")
        report("Flame view, zoomed one level in", await timed(args.rounds, refresh))
        await pilot.press("backspace", "slash", "f", "n", "_", "0", "0", "enter")
        report("Flame view, search 'fn_00'", await timed(args.rounds, refresh))
        await pilot.press("escape")
        await pilot.press("1", "w")
        report("Top view, last-10-s window", await timed(args.rounds, refresh))
        await pilot.press("w", "w", "space")
        report("paused (header only)", await timed(args.rounds, refresh))
        await pilot.press("space")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--functions", type=int, default=5000)
    parser.add_argument("--stacks", type=int, default=14000)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--per-refresh", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
