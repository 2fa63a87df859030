"""Big recordings (#27): opening and converting an hour-long Rprof.out, next to R's own
summaryRprof, on a generated file like the issue's (bench/bigprofile.py: 177,785 samples of
20,819 distinct stack lines with line numbers, ~62 MB).

Measures, each in a fresh process:
- R's `summaryRprof(FILE)` and `summaryRprof(FILE, lines = "show")`;
- `xrtop view FILE` in a 120x40 pseudo-terminal: until its first output (something on
  screen), and until the table shows the file's hottest function;
- `xrtop convert --format collapsed` (time and peak resident memory) and
  `--format speedscope` (time).
Times are wall-clock seconds with the CPU seconds beside them (on a busy machine the CPU
time is the steadier figure). Prints the goals of issue #27, met or missed.

Usage: python bench/big_files.py [--file FILE] [--repeats N] [--samples N --stacks N]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bigprofile import ISSUE_SAMPLES  # noqa: E402
from bigprofile import ISSUE_STACKS  # noqa: E402
from bigprofile import generate  # noqa: E402

from sampler.model import Aggregate  # noqa: E402
from sampler.rprof import read_rprof  # noqa: E402

XRTOP = [sys.executable, "-m", "xrtop"]


class Timing:
    """Wall and CPU seconds of one run of a child process, and its peak resident memory."""

    def __init__(self, wall: float, cpu: float, max_rss: int) -> None:
        self.wall = wall
        self.cpu = cpu
        self.max_rss = max_rss


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def run_timed(args: list[str]) -> Timing:
    """Run `args` to its end (output discarded); fail loudly if it fails."""
    began = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.read().decode()[-500:]}")
    proc.stderr.close()
    return Timing(wall, _cpu(usage), usage.ru_maxrss * 1024)


def view_until_table(path: Path, hottest: str) -> tuple[float, float, Timing]:
    """`xrtop view FILE` in a pseudo-terminal: (seconds to first output, seconds until
    `hottest` is on screen, the run to its end after `q`)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: xrtop on the terminal
        os.environ["TERM"] = "xterm-256color"
        os.execv(XRTOP[0], [*XRTOP, "view", str(path)])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    began = time.perf_counter()
    first = shown = -1.0
    seen = b""
    needle = hottest.encode()
    try:
        while time.perf_counter() - began < 120:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            if first < 0:
                first = time.perf_counter() - began
            seen = seen[-4096:] + chunk
            if needle in seen:
                shown = time.perf_counter() - began
                break
        os.write(fd, b"q")
        # Drain the terminal until xrtop has left it.
        while True:
            try:
                if not os.read(fd, 1 << 16):
                    break
            except OSError:
                break
    finally:
        _, _, usage = os.wait4(pid, 0)
        os.close(fd)
    if shown < 0:
        raise RuntimeError(f"xrtop view never showed {hottest!r}: {seen[-300:]!r}")
    return first, shown, Timing(shown, _cpu(usage), usage.ru_maxrss * 1024)


def summary_rprof(path: Path, lines: str) -> Timing:
    code = f'invisible(summaryRprof("{path}", lines = "{lines}"))'
    return run_timed(["Rscript", "-e", code])


def best(runs: int, measure: Callable[[], Timing]) -> Timing:
    """The median run of `runs` (by wall time)."""
    timings = sorted((measure() for _ in range(runs)), key=lambda t: t.wall)
    return timings[len(timings) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--file", type=Path, help="an existing Rprof.out (default: generated)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=ISSUE_SAMPLES, help="of a generated file")
    parser.add_argument("--stacks", type=int, default=ISSUE_STACKS, help="of a generated file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="xrtop-big-") as tmp:
        path = args.file
        if path is None:
            path = Path(tmp) / "hour.out"
            generate(path, samples=args.samples, stacks=args.stacks)
        size = path.stat().st_size
        profile = read_rprof(path)
        agg = Aggregate(profile.log)
        agg.update()
        hottest = max(agg.own.items(), key=lambda kv: kv[1])[0]
        assert isinstance(hottest, str)
        print(
            f"big files: {path.name}, {size / 1e6:.1f} MB, {len(profile.log)} samples, "
            f"{len(profile.log.stacks)} distinct stacks, lines {profile.options.lines}; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
            f"median of {args.repeats} runs"
        )
        del profile, agg
        rows: list[tuple[str, Timing]] = []
        r_hide = r_show = None
        if shutil.which("Rscript"):
            r_hide = best(args.repeats, lambda: summary_rprof(path, "hide"))
            r_show = best(args.repeats, lambda: summary_rprof(path, "show"))
            rows += [("R summaryRprof(FILE)", r_hide), ('R summaryRprof(lines = "show")', r_show)]
        views = [view_until_table(path, hottest) for _ in range(args.repeats)]
        views.sort(key=lambda v: v[1])
        first, _, view = views[len(views) // 2]
        rows.append(("xrtop view FILE, until the table shows", view))
        out = Path(tmp) / "out"
        collapsed = best(
            args.repeats,
            lambda: run_timed(
                [*XRTOP, "convert", str(path), "--format", "collapsed", "-o", str(out)]
            ),
        )
        rows.append(("xrtop convert --format collapsed", collapsed))
        speedscope = best(
            args.repeats,
            lambda: run_timed(
                [*XRTOP, "convert", str(path), "--format", "speedscope", "-o", str(out)]
            ),
        )
        rows.append(("xrtop convert --format speedscope", speedscope))
    print(f"{'':<42} {'wall s':>7} {'CPU s':>7} {'peak RSS':>9}")
    for label, timing in rows:
        print(f"{label:<42} {timing.wall:7.2f} {timing.cpu:7.2f} {timing.max_rss / 1e6:7.0f} MB")
    print(f"xrtop view FILE, until its first output: {first:.3f} s")
    goals = [
        ("view: something on screen within 0.2 s", f"{first:.2f} s", first <= 0.2),
        ("collapsed <= 2 s", f"{collapsed.wall:.2f} s", collapsed.wall <= 2),
        (
            "collapsed <= 2x the file's size in memory",
            f"{collapsed.max_rss / 1e6:.0f} MB for {size / 1e6:.0f} MB",
            collapsed.max_rss <= 2 * size,
        ),
        ("speedscope <= 3 s", f"{speedscope.wall:.2f} s", speedscope.wall <= 3),
    ]
    if r_hide is not None and r_show is not None:
        goals.insert(
            0,
            (
                "view until the table <= 1/2 of summaryRprof",
                f"{view.wall:.2f} s vs {r_hide.wall:.2f} s ({r_show.wall:.2f} s with lines)",
                view.wall <= r_hide.wall / 2,
            ),
        )
    print("Goals of issue #27 (wall-clock):")
    for goal, value, met in goals:
        print(f"  [{'ok' if met else 'MISSED'}] {goal}: {value}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
