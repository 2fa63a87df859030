"""The R workloads whose stacks rarely repeat, for bench/run.py and bench/span_cost.py.

Each counts its own throughput: with XRTOP_PROGRESS set, it appends "END_TIME 1" to that
file per unit of work done; it writes its PID to XRTOP_READY's file once warmed up, and
ends at its deadline or once the file XRTOP_STOP names exists. (The loop, bench/workload.R,
has arguments of its own: see bench/run.py.)
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS_R = ROOT / "tests" / "r"
#: The seed of tests/r/varied.R's random call trees (the same trees in every run).
SEED = "20"
#: Deep recursion's depth: issue #20's 1,200 frames (about 14 MB of C stack before R 4.4).
DEEP_FRAMES = "1200"
#: The C stack R gets for deep recursion (R's own limit follows RLIMIT_STACK; the default
#: 8 MB holds about 600 levels before R 4.4).
DEEP_STACK = 64 << 20


@dataclass(frozen=True)
class Workload:
    """One R script and its arguments ({seconds}: how long it may run at most)."""

    name: str
    script: Path
    args: tuple[str, ...]
    what: str
    #: RLIMIT_STACK for R, in bytes (0: inherit).
    stack: int = 0

    def argv(self, seconds: float) -> list[str]:
        """The script and its arguments, for a run of at most `seconds`."""
        return [str(self.script), *(a.format(seconds=f"{seconds:g}") for a in self.args)]

    def limits(self) -> Callable[[], None] | None:
        """What R's process runs before it starts (`Popen(preexec_fn=)`), if anything."""
        stack = self.stack
        if not stack:
            return None
        return lambda: resource.setrlimit(resource.RLIMIT_STACK, (stack, stack))


VARIED = {
    w.name: w
    for w in (
        Workload(
            "trees",
            TESTS_R / "varied.R",
            ("{seconds}", SEED, "trees"),
            "seeded random call trees 10-40 frames deep, each ending in a base R task",
        ),
        Workload(
            "tasks",
            TESTS_R / "varied.R",
            ("{seconds}", SEED, "tasks"),
            "a pass through 20 base R tasks (model fits, optimisers, S4, regex, ...)",
        ),
        Workload(
            "deep",
            TESTS_R / "deep.R",
            ("{seconds}", DEEP_FRAMES),
            f"recursion {DEEP_FRAMES} frames deep, the same stack sample after sample",
            stack=DEEP_STACK,
        ),
    )
}


@contextlib.contextmanager
def loop_running(depth: int, pid: int | None, bench: str) -> Iterator[int]:
    """The PID of bench/workload.R looping at `depth` frames on the host's R, started here
    and stopped on leaving (or `pid`, a workload of the caller's, left alone); `bench`
    names the caller in the error line when the workload does not start."""
    if pid is not None:
        yield pid
        return
    with tempfile.TemporaryDirectory() as tmp:
        ready, stop = Path(tmp) / "ready", Path(tmp) / "stop"
        script = str(ROOT / "bench" / "workload.R")
        workload = subprocess.Popen(
            ["Rscript", script, str(depth), "600", str(Path(tmp) / "result"), str(stop)],
            env={**os.environ, "XRTOP_READY": str(ready)},
        )
        try:
            deadline = time.monotonic() + 60
            while not (ready.exists() and ready.read_text().strip()):
                if time.monotonic() > deadline or workload.poll() is not None:
                    raise SystemExit(f"{bench}: the workload did not start")
                time.sleep(0.1)
            yield int(ready.read_text())
        finally:
            stop.touch()
            try:
                workload.wait(30)
            except subprocess.TimeoutExpired:
                workload.kill()
                workload.wait()
