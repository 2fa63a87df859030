"""What unwinding native stacks costs (sampler.native), per sample, cold and warm.

Usage: .venv/bin/python bench/native_cost.py [--depth 13] [--count 200] [--window 256]
       [--pid PID]

Without --pid it starts bench/workload.R at --depth R frames (R's byte-code interpreter:
some 40-60 native frames) and stops it afterwards. It stops R --count times, ~100 Hz, and
copies the registers and --window KiB of stack from sp - 128 each time, as the sampler
would (the copy's time while R is stopped is reported), then unwinds the copies after R
ran on: the first one with a new unwinder (cold: maps, symbols, CFI read), all of them once
(every new pc learned), then all again three times (warm: the per-sample cost at a steady
state, in CPU time of the unwinding thread: on a loaded machine wall time mostly measures
preemption). Before that, how long one read of the stack takes while R is stopped, for
windows of 16 KiB to 1 MiB (a read ends where the stack mapping ends). Also reports how
much stack the deepest complete unwind used, so the sampler's window can be chosen.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workloads import loop_running  # noqa: E402

from sampler.native import NativeUnwinder  # noqa: E402
from sampler.procmem import LiveMemory  # noqa: E402
from sampler.ptrace import Tracer  # noqa: E402

Copy = tuple[bytes, bytes, int]


def copies(pid: int, count: int, window: int) -> tuple[list[Copy], list[float]]:
    """`count` copies of (registers, stack, its address), and each stack read's seconds."""
    tracer = Tracer(pid)
    memory = LiveMemory(pid)
    taken: list[Copy] = []
    reads: list[float] = []
    try:
        for _ in range(count):
            tracer.stop()
            try:
                if not tracer.save_registers():
                    raise SystemExit("native_cost: cannot read registers (x86-64 only)")
                start = tracer.stack_pointer() - 128
                began = time.perf_counter()
                stack = memory.read_upto(start, window)
                reads.append(time.perf_counter() - began)
                taken.append((tracer.registers(), stack, start))
            finally:
                tracer.resume()
            time.sleep(0.01)
    finally:
        tracer.detach()
    return taken, reads


def read_times(pid: int, sizes_kib: list[int], count: int = 50) -> dict[str, float]:
    """Median microseconds of one stack read of each size while R is stopped, by KiB."""
    tracer = Tracer(pid)
    memory = LiveMemory(pid, scratch_size=max(sizes_kib) * 1024)
    times: dict[int, list[float]] = {size: [] for size in sizes_kib}
    try:
        for _ in range(count):
            for size in sizes_kib:
                tracer.stop()
                try:
                    tracer.save_registers()
                    start = tracer.stack_pointer() - 128
                    began = time.perf_counter()
                    memory.read_upto(start, size * 1024)
                    times[size].append(time.perf_counter() - began)
                finally:
                    tracer.resume()
                time.sleep(0.005)
    finally:
        tracer.detach()
    return {str(size): _us(statistics.median(spent)) for size, spent in times.items()}


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 1)


def measure(pid: int, count: int, window: int) -> dict[str, object]:
    """The numbers for one R process."""
    read_by_size = read_times(pid, [16, 64, 256, 1024])
    taken, reads = copies(pid, count, window)
    began = time.perf_counter()
    unwinder = NativeUnwinder(pid)
    opened = time.perf_counter()
    try:
        unwinder.unwind(*taken[0])
        cold = time.perf_counter()
        first_pass = []
        for copy in taken:
            began_one = time.perf_counter()
            unwinder.unwind(*copy)
            first_pass.append(time.perf_counter() - began_one)
        warm: list[float] = []
        stacks = []
        for _ in range(3):
            for copy in taken:
                began_one = time.thread_time()
                stacks.append(unwinder.unwind(*copy))
                warm.append(time.thread_time() - began_one)
    finally:
        unwinder.close()
    warm.sort()
    depths = [len(stack.frames) for stack in stacks]
    complete = [s for s in stacks if s.complete]
    used = [s.frames[-1].cfa - copy[2] for s, copy in zip(stacks, taken * 3) if s.complete]
    reasons = sorted({s.reason.split(" at ")[0] for s in stacks if not s.complete})
    return {
        "samples": len(taken),
        "frames_median": statistics.median(depths),
        "complete_pct": round(100 * len(complete) / len(stacks), 1),
        "incomplete_reasons": reasons,
        "stack_bytes_used_max": max(used, default=0),
        "stack_read_median_us": _us(statistics.median(reads)),
        "stack_read_median_us_by_kib": read_by_size,
        "new_unwinder_ms": round((opened - began) * 1e3, 2),
        "cold_first_unwind_ms": round((cold - opened) * 1e3, 1),
        "first_pass_mean_us": _us(statistics.mean(first_pass)),
        "warm_cpu_median_us": _us(warm[len(warm) // 2]),
        "warm_cpu_p99_us": _us(warm[int(0.99 * (len(warm) - 1))]),
        "warm_us_per_frame": round(1e6 * statistics.mean(warm) / statistics.mean(depths), 2),
    }


def main() -> int:
    """Measure and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=13)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--window", type=int, default=256, help="KiB of stack copied")
    parser.add_argument("--pid", type=int, default=None)
    args = parser.parse_args()
    with loop_running(args.depth, args.pid, "native_cost") as pid:
        result = {"depth": args.depth, "window_kib": args.window}
        result.update(measure(pid, args.count, args.window * 1024))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
