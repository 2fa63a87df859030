"""What `--subprocesses` costs: xrtop's CPU and each process's sampling rate with four busy
workers, and how soon after its start a new worker is sampled.

Usage: .venv/bin/python bench/subprocesses.py [--seconds 10] [--hz 100] [--workers 4]

1. Starts tests/r/parallel.R with --workers busy mclapply workers and records the target and
   its workers by PID with `xrtop record --subprocesses` for --seconds. Reports xrtop's CPU
   while it samples them all (user + system time of the xrtop process from the moment it
   traces every process to a second before it ends, over that wall time: start-up and the
   reading of R's binary left out), and each process's achieved rate (samples attempted per
   second it was sampled: the sampler's own accounting).
2. Records the same workload in waves (a new batch of workers every 0.7 s) and reports how
   long after its start (the kernel's start time, 10 ms resolution) each worker that started
   while xrtop ran began to be sampled.

Checks: xrtop <= 10 % of a core, every process >= 95 % of the requested rate, every worker
sampled within 0.2 s of its start. The load average is printed: on a shared machine, other
work competes for the CPUs, and rates fall with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = ROOT / "tests" / "r" / "parallel.R"
XRTOP = [sys.executable, "-m", "xrtop"]


def children_of(pid: int) -> list[int]:
    """The PIDs whose parent is `pid`."""
    kids = []
    for proc in psutil.process_iter(["ppid"]):
        if proc.info["ppid"] == pid:
            kids.append(proc.pid)
    return kids


def traced_by(pid: int, tracer: int) -> bool:
    """Whether a thread of process `tracer` traces `pid`."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        return status.split("TracerPid:")[1].split()[0] in os.listdir(f"/proc/{tracer}/task")
    except OSError:
        return False


def start_workload(mode: str, seconds: float, workers: int, work: Path) -> subprocess.Popen[bytes]:
    """Start parallel.R in `mode`; return once it runs its workers' code."""
    ready = work / f"ready-{mode}"
    r = subprocess.Popen(
        ["Rscript", str(WORKLOAD), mode, str(seconds), str(workers)],
        env={**os.environ, "XRTOP_READY": str(ready)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    while not ready.exists():
        time.sleep(0.05)
    return r


def target(r: subprocess.Popen[bytes], work: Path, name: str) -> list[str]:
    """The flags that record R process `r` into `work`/`name`.out."""
    return ["-p", str(r.pid), "-o", str(work / f"{name}.out")]


def sampling_cost(opts: argparse.Namespace, work: Path) -> bool:
    """Part 1: xrtop's CPU and each process's rate (see the module doc)."""
    r = start_workload("mclapply", opts.seconds + 60, opts.workers, work)
    stats = work / "stats.json"
    try:
        while len(children_of(r.pid)) < opts.workers:
            time.sleep(0.05)
        pids = [r.pid, *children_of(r.pid)]
        rate, duration = f"{opts.hz:g}", f"{opts.seconds:g}"
        xrtop = subprocess.Popen(
            [*XRTOP, "record", "--subprocesses", "-F", rate, "-d", duration, *target(r, work, "p")],
            env={**os.environ, "XRTOP_BENCH_STATS": str(stats)},
            stderr=subprocess.DEVNULL,
        )
        process = psutil.Process(xrtop.pid)
        while not all(traced_by(pid, xrtop.pid) for pid in pids):
            time.sleep(0.01)
        began, cpu_began = time.monotonic(), sum(process.cpu_times()[:2])
        time.sleep(max(1.0, opts.seconds - 2.0))
        wall, cpu = time.monotonic() - began, sum(process.cpu_times()[:2]) - cpu_began
        xrtop.wait()
    finally:
        os.killpg(r.pid, 9)
        r.wait()
    share = 100 * cpu / wall
    print(f"{opts.workers} busy mclapply workers, {opts.hz:g} Hz, {opts.seconds:g} s:")
    print(f"  xrtop CPU while sampling them: {share:.1f} % of a core ({cpu:.2f} s in {wall:.2f} s)")
    ok = check(f"xrtop CPU with {opts.workers} busy workers <= 10 % of a core", share, 10)
    processes = json.loads(stats.read_text())["processes"]
    for row in processes:
        print(
            f"  PID {row['pid']} ({row['role']}): {row['samples']} samples in "
            f"{row['elapsed']:.2f} s = {row['achieved_hz']:.1f} Hz "
            f"({100 * row['achieved_hz'] / opts.hz:.1f} %)"
        )
    worst = min(100 * row["achieved_hz"] / opts.hz for row in processes)
    return check("every process's rate >= 95 % of the requested", worst, 95, at_least=True) and ok


def attach_latency(opts: argparse.Namespace, work: Path) -> bool:
    """Part 2: how soon new workers are sampled (see the module doc)."""
    r = start_workload("waves", 60, opts.workers, work)
    stats = work / "stats2.json"
    try:
        subprocess.run(
            [
                *XRTOP,
                "record",
                "--subprocesses",
                "-F",
                f"{opts.hz:g}",
                "-d",
                "5",
                *target(r, work, "q"),
            ],
            env={**os.environ, "XRTOP_BENCH_STATS": str(stats)},
            capture_output=True,
            check=True,
        )
    finally:
        os.killpg(r.pid, 9)
        r.wait()
    processes = json.loads(stats.read_text())["processes"]
    # Workers that started once xrtop sampled (those running at the start were found at once).
    delays = sorted(
        row["sampled_after_start_s"] for row in processes[1:] if row["started_after_sampling_s"] > 0
    )
    print(
        f"  {len(delays)} new workers, sampled after their start: median "
        f"{delays[len(delays) // 2]:.3f} s, max {delays[-1]:.3f} s"
    )
    return check("every new worker sampled within 0.2 s of its start", delays[-1], 0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hz", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=4)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xrtop-bench-sub-") as tmp:
        ok = sampling_cost(opts, Path(tmp))
        ok = attach_latency(opts, Path(tmp)) and ok
    print(
        f"note: the load average was {os.getloadavg()[0]:.2f} (above 1 on this machine means "
        "other work competed for the CPUs): treat rates and CPU shares as bounds."
    )
    return 0 if ok else 1


def check(what: str, value: float, bound: float, *, at_least: bool = False) -> bool:
    """Print one [ok]/[FAIL] line; return whether it held."""
    held = value >= bound if at_least else value <= bound
    print(f"  [{'ok' if held else 'FAIL'}] {what}: {value:.3g}")
    return held


if __name__ == "__main__":
    sys.exit(main())
