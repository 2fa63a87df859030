"""What one sample costs: the target's stop times, and the Python bytecodes a recognised
sample runs in xrtop.

Usage: .venv/bin/python bench/sample_cost.py [--depth 13] [--seconds 5] [--hz 100] [--pid PID]

Without --pid it starts bench/workload.R at --depth frames and stops it afterwards. It samples
for --seconds with a real `SamplerThread` (the stops: median and 99th percentile, from the
sampler's own accounting, as bench/run.py reports them), then takes samples one by one
through `StoppedCapture.sample` under `sys.settrace` with opcode events, and counts the
bytecodes of those the reader recognised (`StackReader.recognised`): in all, and outside
the tracer's loop that polls for the stop (its count depends on how long R takes to stop,
not on xrtop's code). Compare two versions of the code on one R process by running this
with each on PYTHONPATH, alternately, with --pid.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workloads import loop_running  # noqa: E402

from sampler.capture import StoppedCapture  # noqa: E402
from sampler.model import SampleLog  # noqa: E402
from sampler.ptrace import Tracer  # noqa: E402
from sampler.target import attach  # noqa: E402
from sampler.thread import SamplerThread  # noqa: E402

#: The tracer's functions that poll for the stop (see `Tracer.stop`).
_POLLING = frozenset({"Tracer.stop", "Tracer._wait_stop", "Tracer._wait", "Tracer._reported"})


def stop_times(pid: int, seconds: float, hz: float) -> dict[str, float]:
    """Median and p99 of the stops (us) of `seconds` of sampling, and the share recognised."""
    target = attach(pid)
    thread = SamplerThread(target, SampleLog(round(1e6 / hz)), rate_hz=hz, duration=seconds)
    thread.start()
    thread.join(seconds + 30)
    stops = sorted(thread.stop_times)
    if not stops:
        raise SystemExit("sample_cost: no samples were taken")
    return {
        "samples": len(stops),
        "recognised_pct": round(100 * target.reader.recognised / len(stops), 1),
        "stop_median_us": round(1e6 * statistics.median(stops), 1),
        "stop_p99_us": round(1e6 * stops[int(0.99 * (len(stops) - 1))], 1),
    }


def bytecodes(pid: int, count: int) -> dict[str, float]:
    """Median bytecodes of `count` recognised samples, in all and outside the polling."""
    target = attach(pid)
    log = SampleLog(10_000)
    per_function: dict[str, int] = {}

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)  # 3.11+
            per_function[name] = per_function.get(name, 0) + 1
        return local

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return local

    totals: list[int] = []
    outside: list[int] = []
    tracer = Tracer(pid)
    try:
        capture = StoppedCapture(tracer, target.reader)
        target.reader.set_recheck_head(False)
        for i in range(count + 50):  # the first 50 warm the reader's plan up
            time.sleep(0.01)
            tracer.pass_signals()
            before = target.reader.recognised
            per_function.clear()
            sys.settrace(trace)
            stack, _ = capture.sample()
            log.add(stack, time.monotonic())
            sys.settrace(None)
            if i >= 50 and target.reader.recognised == before + 1:
                totals.append(sum(per_function.values()))
                outside.append(sum(n for f, n in per_function.items() if f not in _POLLING))
    finally:
        tracer.detach()
    return {
        "recognised_samples": len(totals),
        "bytecodes_median": statistics.median(totals) if totals else -1,
        "bytecodes_outside_polling_median": statistics.median(outside) if outside else -1,
    }


def main() -> int:
    """Measure and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=13)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--hz", type=float, default=100.0)
    parser.add_argument("--count", type=int, default=150, help="recognised samples to trace")
    parser.add_argument("--pid", type=int, default=None)
    args = parser.parse_args()
    with loop_running(args.depth, args.pid, "sample_cost") as pid:
        result = {"depth": args.depth, **stop_times(pid, args.seconds, args.hz)}
        result.update(bytecodes(pid, args.count))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
