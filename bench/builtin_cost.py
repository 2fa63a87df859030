"""What recovering builtin frames adds to each stop: `BuiltinReader.capture` timed while R
is stopped (sampler.builtins).

Usage: .venv/bin/python bench/builtin_cost.py --pid PID [--stops 200] [--calls 20]

Stops the R process PID `--stops` times, 10 ms apart, and in each stop times `--calls` calls
of the reader's capture (the reads a sample adds to its stop); prints one JSON line: the
median and 99th percentile per capture in microseconds, and the share of captures that found
a builtin. Run it on bench/workload.R (byte code that calls no builtin) and on
tests/r/builtins.R (builtins most of the time) to see both paths.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sampler.ptrace import Tracer
from sampler.target import attach


def main() -> int:
    """Measure and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--stops", type=int, default=200)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    target = attach(args.pid)
    builtins = target.reader.builtins
    if builtins is None:
        raise SystemExit("builtin_cost: this R gives no builtin frames (see sampler.builtins)")
    per_capture: list[float] = []
    found = 0
    tracer = Tracer(args.pid)
    try:
        for _ in range(args.stops):
            time.sleep(0.01)
            tracer.pass_signals()
            tracer.stop()
            try:
                for _ in range(args.calls):
                    began = time.perf_counter()
                    current = builtins.capture()
                    per_capture.append(time.perf_counter() - began)
                    found += current is not None
            finally:
                tracer.resume()
    finally:
        tracer.detach()
    per_capture.sort()
    print(
        json.dumps(
            {
                "captures": len(per_capture),
                "found_pct": round(100 * found / len(per_capture), 1),
                "capture_median_us": round(1e6 * statistics.median(per_capture), 2),
                "capture_p99_us": round(1e6 * per_capture[int(0.99 * (len(per_capture) - 1))], 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
