"""Cost of the live view's merged view of several processes (`--subprocesses`), no UI.

A view model watches a synthetic session of one target and N workers, each sampled at
`--hz` with deep stacks from a pool, after `--minutes` of history. It prints how long the
first refresh takes (the whole history merged and aggregated), one steady refresh (half a
second of new samples from every process: the cost must not grow with the history), and
choosing one process and all again (each starts a new aggregate over its log).

Usage: python bench/processes_bench.py [--workers N] [--hz HZ] [--minutes M] [--rounds N]

Prints timings only; nothing is asserted (speed is not a unit-test property).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from sampler.model import ProcessRow
from sampler.model import SampleLog
from sampler.model import SamplerStats
from sampler.model import Stack
from sampler.rprof import RprofOptions
from sampler.thread import State
from xrtop.processes_view import SampledProcesses
from xrtop.view_model import ViewModel

TARGET = 1000


class SyntheticProcesses:
    """A target and `workers` workers, each with a log fed from a pool of random stacks."""

    def __init__(self, workers: int, hz: float, seed: int = 1) -> None:
        rng = random.Random(seed)
        names = [f"fn_{i:04d}" for i in range(2000)]
        self.pool = [
            Stack(tuple(rng.choice(names) for _ in range(rng.randint(8, 30)))) for _ in range(5000)
        ]
        self.rng = rng
        self.step = 1 / hz
        interval = round(1e6 / hz)
        self.log_of = {TARGET + i: SampleLog(interval) for i in range(workers + 1)}
        self.clock = 0.0

    def feed(self, seconds: float) -> None:
        """Every process's samples for `seconds` more."""
        pool, rng = self.pool, self.rng
        for _ in range(round(seconds / self.step)):
            for log in self.log_of.values():
                log.add(pool[min(len(pool) - 1, int(rng.paretovariate(1.1)) - 1)], self.clock)
            self.clock += self.step

    def rows(self) -> list[ProcessRow]:
        return [
            ProcessRow(
                pid,
                0 if pid == TARGET else TARGET,
                "target" if pid == TARGET else "mclapply worker",
                "running",
                len(log),
                99.0,
            )
            for pid, log in self.log_of.items()
        ]

    def logs(self) -> dict[int, SampleLog]:
        return dict(self.log_of)


class SyntheticSource:
    """A live source whose target and workers are `processes`."""

    live = True

    def __init__(self, processes: SyntheticProcesses) -> None:
        self.log = processes.log_of[TARGET]
        self.options = RprofOptions()
        self.title = "synthetic.R"
        self.pid: int | None = TARGET
        self.r_version = "4.5.0"
        self.stream_path = ""
        self.idle_known = True
        self.gc_available: bool | None = True
        self.processes: SampledProcesses | None = processes
        self._clock = processes

    def state(self) -> State | None:
        return State.RUNNING

    def stats(self) -> SamplerStats:
        return SamplerStats(samples=len(self.log), elapsed=self._clock.clock)

    def last_stack(self) -> Stack | None:
        return self.log.stack_at(len(self.log) - 1) if len(self.log) else None

    def rate_hz(self) -> float:
        return 1 / self._clock.step

    def set_rate(self, hz: float) -> None:
        pass

    def usage(self) -> tuple[float | None, int | None]:
        return None, None

    def stop(self) -> None:
        pass

    def lines_note(self) -> str | None:
        return None


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` takes."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--hz", type=float, default=100.0)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    processes = SyntheticProcesses(args.workers, args.hz)
    processes.feed(args.minutes * 60)
    model = ViewModel(SyntheticSource(processes))
    total = sum(len(log) for log in processes.log_of.values())
    first = timed(model.take_in_new)
    steady = []
    for _ in range(args.rounds):
        processes.feed(0.5)
        steady.append(timed(model.take_in_new))

    def show(pid: int | None) -> None:
        model.select_process(pid)
        model.take_in_new()

    one = timed(lambda: show(TARGET + 1))
    back = timed(lambda: show(None))
    new = round(0.5 * args.hz) * (args.workers + 1)
    print(
        f"{args.workers + 1} processes at {args.hz:g} Hz, {args.minutes:g} min: {total} samples, "
        f"{len(model.current().tree)} tree nodes"
    )
    print(f"first refresh (all merged):   {first * 1000:8.1f} ms")
    print(
        f"steady refresh ({new} new):    {statistics.median(steady) * 1000:8.2f} ms median, "
        f"{max(steady) * 1000:.2f} ms max"
    )
    print(f"choose one process:           {one * 1000:8.1f} ms")
    print(f"all again:                    {back * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
