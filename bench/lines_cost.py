"""What line numbers cost the target: stop time and reads per sample, lines off vs on.

Starts tests/r/lines.R (a sourced script with keep.source = TRUE, byte-compiled by the JIT)
on the host's R, samples it for a few seconds at 200 Hz with lines off, then on, then off
and on again (the machine is shared, so rounds alternate), and prints per round the median
and p90 time the target was stopped and the process_vm_readv calls per sample.

Usage: .venv/bin/python bench/lines_cost.py [--seconds S] [--rate HZ] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sampler.model import SampleLog  # noqa: E402
from sampler.target import attach  # noqa: E402
from sampler.thread import SamplerThread  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        proc = subprocess.Popen(
            ["Rscript", str(ROOT / "tests/r/lines.R"), "600"],
            env={**os.environ, "XRTOP_READY": str(ready)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            while not ready.exists():
                if proc.poll() is not None:
                    print("lines.R exited early", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            pid = int(ready.read_text())
            for round_ in range(args.rounds):
                lines = round_ % 2 == 1
                target = attach(pid)
                target.set_lines(lines)
                log = SampleLog(round(1e6 / args.rate))
                thread = SamplerThread(target, log, rate_hz=args.rate)
                calls = target.memory.calls
                thread.start()
                thread.wait_ready()
                calls = target.memory.calls
                time.sleep(args.seconds)
                thread.stop()
                stops = sorted(thread.stop_times)
                n = len(stops)
                with_sites = sum(1 for s in log.iter_stacks() if any(s.sites))
                print(
                    f"lines {'on ' if lines else 'off'}: {n} samples, stopped median "
                    f"{statistics.median(stops) * 1e6:.0f} us, p90 {stops[int(n * 0.9)] * 1e6:.0f}"
                    f" us; {(target.memory.calls - calls) / max(n, 1):.2f} reads per sample; "
                    f"{with_sites} samples with lines"
                )
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
