"""What `--native` costs: R-only samples vs samples with native frames, on one R process
per workload, at the same rate.

Usage: .venv/bin/python bench/native_stop_cost.py [--workloads loop,varied] [--hz 100]
       [--seconds 4] [--rounds 3] [--suite host|LAB_SUITE]

Workloads as bench/span_cost.py's (its `start` and `units`): loop (bench/workload.R at 37
frames), and bench/workloads.py's VARIED by name; "varied" stands for trees and tasks (their
stacks rarely repeat). Each round runs, in a rotating order, an unprofiled window, an
R-only window and a --native window (one unwinder for the whole run: its caches warm up as a
long session's would). Per arm: the stops (median, p99), the rate achieved, this process's
CPU while sampling (% of one core: the unwinding runs here, after R resumed) and the
slowdown of R; for --native also the share of samples whose stack was copied sparse and
held every read (sampler.nativewindow), the share whose unwinding stopped short of the
stack's start for want of bytes, and the stack bytes copied per sample while R was stopped
(a span copy that held the C stack counts 0). The goal (issue #21): the --native stop median
at most twice the R-only one, the rate held at 100 Hz with at most 10 % of a core. The
machine's load average is printed with each workload's rows: compare arms of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from span_cost import start  # noqa: E402
from span_cost import units  # noqa: E402
from span_cost import wait_ended  # noqa: E402
from workloads import VARIED  # noqa: E402

from sampler.model import SampleLog  # noqa: E402
from sampler.nativecapture import NativeFrames  # noqa: E402
from sampler.target import Target  # noqa: E402
from sampler.target import attach  # noqa: E402
from sampler.thread import SamplerThread  # noqa: E402


@dataclass
class Window:
    """One window's measurements."""

    began: float
    ended: float
    cpu: float
    stops: list[float]
    samples: int
    #: --native only: samples unwound, those copied sparse, those whose unwinding stopped
    #: for want of bytes, and the stack bytes copied while R was stopped.
    native: tuple[int, int, int, int] = (0, 0, 0, 0)


def window(target: Target, native: NativeFrames | None, hz: float, seconds: float) -> Window:
    """One window at `hz` (0: not sampled), with native frames when `native` is given."""
    began, cpu = time.time(), time.process_time()
    stops: list[float] = []
    samples = 0
    counts = native_counts(native)
    if hz:
        target.reader.native = native
        log = SampleLog(round(1e6 / hz))
        thread = SamplerThread(target, log, rate_hz=hz, duration=seconds)
        thread.start()
        thread.join(seconds + 30)
        stops = list(thread.stop_times)
        samples = len(log)
    else:
        time.sleep(seconds)
    ended, cpu = time.time(), time.process_time() - cpu
    after = native_counts(native)
    done = (after[0] - counts[0], after[1] - counts[1], after[2] - counts[2], after[3] - counts[3])
    return Window(began, ended, cpu, stops, samples, done)


def native_counts(native: NativeFrames | None) -> tuple[int, int, int, int]:
    """`native`'s running counts (samples, sparse, truncated, bytes copied), for `Window`."""
    if native is None:
        return (0, 0, 0, 0)
    return (native.samples, native.sparse, native.truncated, native.copied)


def report(
    workload: str, arm: str, hz: float, ws: list[Window], base: float, rates: list[float]
) -> dict[str, object]:
    """One row of results for the windows `ws` of an arm."""
    stops = sorted(s * 1e6 for w in ws for s in w.stops)
    wall = sum(w.ended - w.began for w in ws)
    throughput = statistics.mean(rates) if rates else 0.0
    row: dict[str, object] = {
        "workload": workload,
        "arm": arm,
        "hz": hz,
        "samples": len(stops),
        "achieved_hz": round(sum(w.samples for w in ws) / wall, 1),
        "stop_median_us": round(statistics.median(stops), 1) if stops else None,
        "stop_p99_us": round(stops[int(0.99 * (len(stops) - 1))], 1) if stops else None,
        "cpu_pct": round(100 * sum(w.cpu for w in ws) / wall, 1),
        "slowdown": round(base / throughput, 3) if throughput else None,
    }
    unwound = sum(w.native[0] for w in ws)
    if unwound:
        row["sparse_pct"] = round(100 * sum(w.native[1] for w in ws) / unwound, 1)
        row["stopped_pct"] = round(100 * sum(w.native[2] for w in ws) / unwound, 1)
        row["copied_kb"] = round(sum(w.native[3] for w in ws) / unwound / 1024, 1)
    return row


def workload_names(given: str) -> list[str]:
    """The workloads `--workloads` names ("varied": trees and tasks); exit with one line
    for an unknown name."""
    names: list[str] = []
    for name in given.split(","):
        names += ["trees", "tasks"] if name == "varied" else [name]
    unknown = [n for n in names if n != "loop" and n not in VARIED]
    if unknown:
        known = ", ".join(["loop", "varied", *VARIED])
        raise SystemExit(f"native_stop_cost: unknown workload {unknown[0]!r} (known: {known})")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workloads", default="loop,varied")
    parser.add_argument("--hz", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--suite", default="host", help="host, or a lab suite (e.g. sid)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    for workload in workload_names(args.workloads):
        arms = [("none", 0.0), ("r-only", args.hz), ("native", args.hz)]
        total = args.rounds * len(arms) * (args.seconds + 0.5) + 30
        pid, progress, stop = start(args.suite, workload, total)
        try:
            target = attach(pid)
            native = NativeFrames(pid, target.reader.spans)
            results: dict[str, list[Window]] = {a: [] for a, _ in arms}
            for k in range(args.rounds):
                for arm, hz in arms[k % len(arms) :] + arms[: k % len(arms)]:
                    use = native if arm == "native" else None
                    results[arm].append(window(target, use, hz, args.seconds))
            native.close()
            stop.touch()  # the loop writes its rounds as it ends
            wait_ended(pid)
            rate = {
                arm: [units(progress, w.began, w.ended) / (w.ended - w.began) for w in ws]
                for arm, ws in results.items()
            }
            base = statistics.mean(rate["none"]) if rate["none"] else 0.0
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"native_stop_cost: {workload} on {args.suite}, load average {load}", flush=True)
            for arm, hz in arms[1:]:
                row = report(workload, arm, hz, results[arm], base, rate[arm])
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGTERM)
            shutil.rmtree(progress.parent, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
