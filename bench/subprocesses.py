"""What `--subprocesses` costs: xrtop's CPU and each process's sampling rate with four busy
workers, and how soon after its start a new worker is sampled.

Usage: .venv/bin/python bench/subprocesses.py [--seconds 10] [--hz 100] [--workers 4]

1. Starts tests/r/parallel.R with --workers busy mclapply workers, records the target and its
   workers with `xrtop record --subprocesses` for --seconds, and reports xrtop's CPU (user +
   system time of the xrtop process over the wall time) and each process's achieved rate
   (samples attempted per second it was sampled: the sampler's own accounting).
2. Launches the same workload under `xrtop record --subprocesses -- Rscript ...`, so every
   worker starts while xrtop runs, and reports how long after its start (the kernel's start
   time, 10 ms resolution) each worker's sampling began.

Checks: xrtop <= 10 % of a core, every process >= 95 % of the requested rate, every worker
sampled within 0.2 s of its start. The load average is printed: on a shared machine, other
work competes for the CPUs, and rates fall with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = ROOT / "tests" / "r" / "parallel.R"
XRTOP = [sys.executable, "-m", "xrtop"]


def children_of(pid: int) -> list[int]:
    """The PIDs whose parent is `pid`."""
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(name))
    return kids


def record(args: list[str], stats: Path, cwd: Path) -> tuple[float, float, dict[str, object]]:
    """Run `xrtop record ARGS`; return its wall seconds, CPU seconds and bench stats."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    subprocess.run(
        [*XRTOP, "record", *args],
        env={**os.environ, "XRTOP_BENCH_STATS": str(stats)},
        cwd=cwd,
        check=True,
        capture_output=True,
    )
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    data: dict[str, object] = json.loads(stats.read_text())
    return wall, cpu, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hz", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=4)
    opts = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="xrtop-bench-sub-") as tmp:
        work = Path(tmp)
        ready = work / "ready"
        seconds = opts.seconds + 30  # the workers outlive the recording
        r = subprocess.Popen(
            ["Rscript", str(WORKLOAD), "mclapply", str(seconds), str(opts.workers)],
            env={**os.environ, "XRTOP_READY": str(ready)},
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            while not ready.exists():
                time.sleep(0.05)
            pid = int(ready.read_text().split()[0])
            while len(children_of(pid)) < opts.workers:
                time.sleep(0.05)
            time.sleep(0.5)
            rate, duration = f"{opts.hz:g}", f"{opts.seconds:g}"
            wall, cpu, data = record(
                ["--subprocesses", "-F", rate, "-d", duration, "-p", str(pid), "-o", "p.out"],
                work / "stats.json",
                work,
            )
        finally:
            os.killpg(r.pid, 9)
            r.wait()
        load = os.getloadavg()[0]
        share = 100 * cpu / wall
        print(f"{opts.workers} busy mclapply workers, {opts.hz:g} Hz, {opts.seconds:g} s:")
        print(f"  xrtop CPU: {share:.1f} % of a core ({cpu:.2f} s in {wall:.2f} s)")
        ok &= check(f"xrtop CPU with {opts.workers} busy workers <= 10 % of a core", share, 10)
        processes = data["processes"]
        assert isinstance(processes, list)
        for row in processes:
            achieved = 100 * row["achieved_hz"] / opts.hz
            print(
                f"  PID {row['pid']} ({row['role']}): {row['samples']} samples in "
                f"{row['elapsed']:.2f} s = {row['achieved_hz']:.1f} Hz ({achieved:.1f} %)"
            )
        worst = min(100 * row["achieved_hz"] / opts.hz for row in processes)
        ok &= check("every process's rate >= 95 % of the requested", worst, 95, at_least=True)

        # 2. New workers: how soon each is sampled.
        launch = ["Rscript", str(WORKLOAD), "mclapply", "3", str(opts.workers)]
        _, _, data = record(
            ["--subprocesses", "-F", rate, "-o", "q.out", "--", *launch],
            work / "stats2.json",
            work,
        )
        processes = data["processes"]
        assert isinstance(processes, list)
        delays = [row["sampled_after_start_s"] for row in processes[1:]]
        print(f"  new workers sampled after their start: {', '.join(f'{d:.3f}' for d in delays)} s")
        ok &= check("every new worker sampled within 0.2 s of its start", max(delays), 0.2)
    print(
        f"note: the load average was {load:.2f} (above 1 on this machine means other work "
        "competed for the CPUs): treat rates and CPU shares as bounds."
    )
    return 0 if ok else 1


def check(what: str, value: float, bound: float, *, at_least: bool = False) -> bool:
    """Print one [ok]/[FAIL] line; return whether it held."""
    held = value >= bound if at_least else value <= bound
    print(f"  [{'ok' if held else 'FAIL'}] {what}: {value:.3g}")
    return held


if __name__ == "__main__":
    sys.exit(main())
