"""A/B of the two ways a stopped sample copies R's stack, on one R process per workload:
spans of R's stacks when the snapshot plan misses (sampler.spans, the default) vs the
snapshot plan alone, with recognition of stacks seen lately (sampler.snapplan,
sampler.knownstacks; the sampler before spans).

Usage: .venv/bin/python bench/span_cost.py [--workloads loop,trees,tasks,deep]
       [--hz 100,1000] [--seconds 4] [--rounds 3] [--suite host|LAB_SUITE] [--per-sample N]

Workloads: loop (bench/workload.R at 37 frames: few stacks, repeating), and those whose
stacks rarely repeat (bench/workloads.py): trees (random call trees 10-40 deep over many
base R functions), tasks (a pass through those functions) and deep (recursion 1,200
frames deep, beyond the spans copied, the same stack sample after sample). Each round runs,
in a rotating order, an unprofiled window and one window per sampler and rate. Per sampler
and rate it reports the stops (median, p99; the sampler's own accounting), the slowdown
(R's throughput in the unprofiled windows / in the profiled ones, rounds counted by the
workload itself) and this process's CPU while sampling (% of one core). With --per-sample
N it takes N stopped samples per way instead, alternating sample by sample in one process,
and reports the time R stays stopped once stopped and xrtop's work after resuming: on a
machine shared with other work, where windows measure mostly the contention, this still
compares the two ways under the same load. Numbers are ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
RLAB = Path(os.environ.get("XRTOP_LAB", "/work/shared/lab"))
RLAB_ROOT = Path("/opt/rlab")
sys.path.insert(0, str(ROOT))

from workloads import VARIED  # noqa: E402

from sampler.model import SampleLog  # noqa: E402
from sampler.ptrace import Tracer  # noqa: E402
from sampler.spans import SpanPlan  # noqa: E402
from sampler.target import Target  # noqa: E402
from sampler.target import attach  # noqa: E402
from sampler.thread import SamplerThread  # noqa: E402

LOOP = [str(ROOT / "bench" / "workload.R"), "37", "{seconds}", "{progress}", "{stop}"]


def start(suite: str, workload: str, seconds: float) -> tuple[int, Path, Path]:
    """Start `workload` on the host's R or a lab suite's; return R's PID, the file it
    writes its progress to and the file that stops it (as seen from here)."""
    root = Path("/") if suite == "host" else RLAB_ROOT / suite
    inner = Path(tempfile.mkdtemp(prefix="xrtop-span-cost-", dir=root / "tmp"))
    files = {n: inner / f"{workload}.{n}" for n in ("ready", "progress", "stop")}
    seen = {n: "/" + str(p.relative_to(root)) for n, p in files.items()}
    varied = VARIED.get(workload)
    if varied is not None:
        argv, limits = varied.argv(seconds), varied.limits()
    else:
        fill = {"seconds": seconds, "progress": seen["progress"], "stop": seen["stop"]}
        argv = [a.format(**fill) for a in LOOP]
        limits = None
    names = {"XRTOP_READY": "ready", "XRTOP_PROGRESS": "progress", "XRTOP_STOP": "stop"}
    if suite == "host":
        env = {**os.environ, **{k: seen[n] for k, n in names.items()}}
        run = ["Rscript", *argv]
        subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL, preexec_fn=limits)
    else:
        env = {**os.environ, **{f"RLAB_PASS_{k}": seen[n] for k, n in names.items()}}
        lab = [str(RLAB / "rlab-run"), suite, *argv]
        subprocess.run(lab, env=env, check=True, capture_output=True, preexec_fn=limits)
    deadline = time.time() + 60
    ready = files["ready"]
    while not (ready.exists() and ready.read_text().strip()):
        if time.time() > deadline:
            raise SystemExit(f"span_cost: {workload} did not start")
        time.sleep(0.05)
    return int(ready.read_text().split()[0]), files["progress"], files["stop"]


def wait_ended(pid: int, timeout: float = 60) -> None:
    """Return once the workload `pid` has ended, or after `timeout` seconds. On the host R is
    this process's child (Rscript execs R), a zombie until Python exits: that counts as ended.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)


def units(progress: Path, began: float, ended: float) -> float:
    """Work the workload finished between two times (its lines: END_TIME UNITS ...)."""
    done = 0.0
    for line in progress.read_text().splitlines():
        fields = line.split()
        try:
            end, count = float(fields[0]), float(fields[1])
        except (IndexError, ValueError):
            continue  # a header, or a line being written
        if began <= end < ended:
            done += count
    return done


def window(target: Target, spans: SpanPlan | None, hz: float, seconds: float) -> dict[str, object]:
    """One window: sample at `hz` with (`spans`) or without span copies; None: no sampling."""
    began, cpu = time.time(), time.process_time()
    stops: list[float] = []
    if hz:
        target.reader.spans = spans
        thread = SamplerThread(target, SampleLog(round(1e6 / hz)), rate_hz=hz, duration=seconds)
        thread.start()
        thread.join(seconds + 30)
        stops = list(thread.stop_times)
    else:
        time.sleep(seconds)
    return {"began": began, "ended": time.time(), "cpu": time.process_time() - cpu, "stops": stops}


def compare_windows(
    target: Target, workload: str, progress: Path, stop: Path, args: argparse.Namespace
) -> list[dict[str, object]]:
    """Rounds of windows (unprofiled, and per way and rate), in a rotating order; a row per
    way and rate. Ends the workload (it writes its rounds as it ends)."""
    rates = [float(h) for h in args.hz.split(",")]
    arms = [("none", 0.0)] + [(s, h) for h in rates for s in ("plan", "spans")]
    spans = target.reader.spans
    results: dict[tuple[str, float], list[dict[str, object]]] = {a: [] for a in arms}
    for k in range(args.rounds):
        for arm in arms[k % len(arms) :] + arms[: k % len(arms)]:
            use = spans if arm[0] == "spans" else None
            results[arm].append(window(target, use, arm[1], args.seconds))
    stop.touch()
    wait_ended(target.pid)
    rate = {
        a: [
            units(progress, w["began"], w["ended"]) / (w["ended"] - w["began"])  # type: ignore[operator,arg-type]
            for w in ws
        ]
        for a, ws in results.items()
    }
    base = statistics.mean(rate[("none", 0.0)])
    rows: list[dict[str, object]] = []
    for arm in arms[1:]:
        ws = results[arm]
        stops = sorted(s * 1e6 for w in ws for s in w["stops"])  # type: ignore[attr-defined]
        wall = sum(w["ended"] - w["began"] for w in ws)  # type: ignore[operator]
        rows.append(
            {
                "workload": workload,
                "sampler": arm[0],
                "hz": arm[1],
                "samples": len(stops),
                "stop_median_us": round(statistics.median(stops), 1) if stops else None,
                "stop_p99_us": round(stops[int(0.99 * (len(stops) - 1))], 1) if stops else None,
                "slowdown": round(base / statistics.mean(rate[arm]), 3)
                if rate[arm] and statistics.mean(rate[arm])
                else None,
                "cpu_pct": round(100 * sum(w["cpu"] for w in ws) / wall, 1),  # type: ignore[misc]
            }
        )
    return rows


def alternate(target: Target, workload: str, samples: int) -> list[dict[str, object]]:
    """`samples` stopped samples per way, the ways alternating sample by sample in one
    process (so both meet the same code and the same load); a row per way with the
    median microseconds R stayed stopped once stopped (what xrtop does meanwhile: the
    time to reach the stop is left out, mostly R waiting for a CPU on a loaded machine)
    and xrtop spent after resuming it (decoding and naming)."""
    reader, tracer = target.reader, Tracer(target.pid)
    spans = reader.spans
    assert spans is not None
    times: dict[str, tuple[list[float], list[float]]] = {"plan": ([], []), "spans": ([], [])}
    try:
        for k in range(2 * samples):
            way = "spans" if k % 2 else "plan"
            if way == "plan":
                reader.warm()  # as the sampler does before a planned copy
            tracer.stop()
            stopped = time.perf_counter()
            if way == "spans":
                tracer.save_registers()
                got = reader.snapshot_at(tracer.stack_pointer())
            else:
                got = reader.snapshot()
            raw = None if reader.snapshot_complete(got) else reader.decode_stopped(got)
            tracer.resume()
            resumed = time.perf_counter()
            reader.finish(raw or reader.decode_snapshot(got) or reader.capture())
            times[way][0].append(resumed - stopped)
            times[way][1].append(time.perf_counter() - resumed)
            time.sleep(0.005)
    finally:
        tracer.detach()
    return [
        {
            "workload": workload,
            "sampler": way,
            "samples": samples,
            "stopped_median_us": round(statistics.median(held) * 1e6, 1),
            "after_median_us": round(statistics.median(after) * 1e6, 1),
        }
        for way, (held, after) in times.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workloads", default="loop,trees,tasks,deep")
    parser.add_argument("--hz", default="100,1000")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--suite", default="host", help="host, or a lab suite (e.g. sid)")
    parser.add_argument(
        "--per-sample",
        type=int,
        default=0,
        metavar="N",
        help="instead of windows, N samples per way alternating sample by sample",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    print(f"span_cost: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for workload in args.workloads.split(","):
        windows = args.rounds * (1 + 2 * len(args.hz.split(",")))
        total = windows * (args.seconds + 0.5) + 30 + args.per_sample * 0.05
        pid, progress, stop = start(args.suite, workload, total)
        try:
            target = attach(pid)
            if args.per_sample:
                time.sleep(2)  # past R's first calls (the byte-code compiler at work)
                found = alternate(target, workload, args.per_sample)
            else:
                found = compare_windows(target, workload, progress, stop, args)
            for row in found:
                print(json.dumps(row), flush=True)
            rows += found
        finally:
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGTERM)
            shutil.rmtree(progress.parent, ignore_errors=True)
    print(f"span_cost: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
