"""Render the screenshots (README, docs/): `python -m xrtop.screenshots DIR` (`make screenshots`).

The screens come from a recorded profile of the demo workload (`xrtop record` of
xrtop/demo/demo.R, shipped as xrtop/demo/demo-xrtop.out so that an installed xrtop has it),
replayed as if it were live, with fixed header values, so the SVGs are identical from run to
run and machine to machine. Re-record the profile with:

    xrtop record -F 100 -d 4 -o xrtop/demo/demo-xrtop.out -- Rscript xrtop/demo/demo.R 6

The `xrtop diff` screens compare R's own Rprof of tests/r/optimise.R before and after its
change (shipped as xrtop/demo/diff-before.out and diff-after.out); re-record them with:

    Rscript tests/r/optimise.R before xrtop/demo/diff-before.out 40
    Rscript tests/r/optimise.R after xrtop/demo/diff-after.out 120

The `--subprocesses` screens replay a recording of xrtop/demo/parallel.R (a parent waiting
for its two mclapply workers), shipped as xrtop/demo/demo-procs.out and its children's
demo-procs.<PID>.out; re-record them (remove the old children's files first) once R has
started and forked, so that R's start-up is not in them:

    Rscript xrtop/demo/parallel.R 14 & sleep 2.5
    xrtop record --subprocesses -F 100 -d 8 -p $! -o xrtop/demo/demo-procs.out

The `--native` screens (docs/native.md) show xrtop/demo/demo-native.out, `xrtop record -m`
of xrtop/demo/native.R once its data are made (R 4.2.2); re-record it with:

    Rscript xrtop/demo/native.R 12 & sleep 3
    xrtop record -m -F 100 -d 6 -p $(pgrep -n -f native.R) -o xrtop/demo/demo-native.out
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sampler.model import ProcessRow
from sampler.rprof import RprofFile
from sampler.rprof import read_rprof
from sampler.thread import State
from xrtop.app import XrtopApp
from xrtop.diff_app import DiffApp
from xrtop.recorded_processes import RecordedProcesses
from xrtop.recorded_processes import child_files
from xrtop.sources import FileSource

DEMO = Path(__file__).resolve().parent / "demo"
#: The PID the replayed target shows.
REPLAY_PID = 4242
#: The demo workload's recorded profile, shipped in the package.
DEMO_PROFILE = DEMO / "demo-xrtop.out"
#: R's own profiles of tests/r/optimise.R before and after its change, shipped too.
DIFF_PROFILES = (DEMO / "diff-before.out", DEMO / "diff-after.out")
#: A recording of xrtop/demo/parallel.R with --subprocesses (its children's files beside it).
PROCS_PROFILE = DEMO / "demo-procs.out"
#: `xrtop record -m` of xrtop/demo/native.R, shipped too.
NATIVE_PROFILE = DEMO / "demo-native.out"
SIZE = (120, 36)

#: file name -> (keys pressed before the shot, title)
SHOTS: dict[str, tuple[list[str], str]] = {
    "top.svg": ([], "xrtop: Top view"),
    "tree.svg": (["2"], "xrtop: Tree view"),
    "now.svg": (["3"], "xrtop: Now view"),
    "flame.svg": (["4"], "xrtop: Flame view"),
    "help.svg": (["question_mark"], "xrtop: keys"),
}
#: The same for the processes of PROCS_PROFILE (`--subprocesses`).
PROCS_SHOTS: dict[str, tuple[list[str], str]] = {
    "procs.svg": (["5"], "xrtop --subprocesses: Procs view"),
    "procs-tree.svg": (["2"], "xrtop --subprocesses: Tree view of every process"),
}
#: The same for NATIVE_PROFILE (native frames among R's).
NATIVE_SHOTS: dict[str, tuple[list[str], str]] = {
    "native-tree.svg": (["2", "E"], "xrtop --native: Tree view"),
    "native-flame.svg": (["4"], "xrtop --native: Flame view"),
}
#: The same for `xrtop diff` of DIFF_PROFILES.
DIFF_SHOTS: dict[str, tuple[list[str], str]] = {
    "diff.svg": ([], "xrtop diff: Top view"),
    "diff-flame.svg": (["4"], "xrtop diff: Flame view"),
}


class ReplaySource(FileSource):
    """A recorded profile shown as the live view shows a running target (fixed values)."""

    live = True

    def __init__(self, path: Path, profile: RprofFile, script: str = "demo.R") -> None:
        """Replay `profile` as PID 4242 running xrtop/demo/`script` on R 4.2.2."""
        super().__init__(path, profile)
        self.title = f"xrtop/demo/{script}"
        self.pid = REPLAY_PID
        self.r_version = "4.2.2"
        self.options = profile.options
        # As a live target: samples mark idle ones. The demo never waits, so the recording
        # (made without --idle) lost none, and "busy 100%" is what it would show live.
        self.idle_known = True

    def state(self) -> State | None:
        return State.RUNNING

    def rate_hz(self) -> float:
        return self.stats().requested_hz

    def set_rate(self, hz: float) -> None:
        pass

    def usage(self) -> tuple[float | None, int | None]:
        return 100.0, 71 << 20


class ReplayProcesses(RecordedProcesses):
    """A recording's processes shown as a live session's: the target (PID 4242) waiting,
    each child an mclapply worker busy on one core."""

    def rows(self) -> list[ProcessRow]:
        return [
            replace(row, state="sleeping", cpu_percent=0.0)
            if row.pid == REPLAY_PID
            else replace(row, role="mclapply worker", state="running", cpu_percent=99.0)
            for row in super().rows()
        ]


def procs_source() -> ReplaySource:
    """PROCS_PROFILE and its children's files, replayed as a live --subprocesses session."""
    source = ReplaySource(PROCS_PROFILE, read_rprof(PROCS_PROFILE), "parallel.R")
    children = {pid: read_rprof(path).to_log() for pid, path in child_files(PROCS_PROFILE).items()}
    source.processes = ReplayProcesses(source.log, children, REPLAY_PID)
    return source


async def render(profile_path: Path, out_dir: Path) -> list[Path]:
    """Write one SVG per entry of SHOTS, PROCS_SHOTS and DIFF_SHOTS into `out_dir`; return
    their paths."""
    profile = read_rprof(profile_path)
    base_path, new_path = DIFF_PROFILES
    base, new = read_rprof(base_path), read_rprof(new_path)
    native = read_rprof(NATIVE_PROFILE)
    written = []
    shots: list[tuple[str, tuple[list[str], str], Callable[[], XrtopApp]]] = [
        (name, shot, lambda: XrtopApp(ReplaySource(profile_path, profile), refresh_s=3600))
        for name, shot in SHOTS.items()
    ]
    shots += [
        (name, shot, lambda: XrtopApp(procs_source(), refresh_s=3600))
        for name, shot in PROCS_SHOTS.items()
    ]
    shots += [
        (name, shot, lambda: DiffApp(base_path, base, new_path, new))
        for name, shot in DIFF_SHOTS.items()
    ]
    shots += [
        (
            name,
            shot,
            lambda: XrtopApp(ReplaySource(NATIVE_PROFILE, native, "native.R"), refresh_s=3600),
        )
        for name, shot in NATIVE_SHOTS.items()
    ]
    for name, (keys, title), make_app in shots:
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            if keys:
                await pilot.press(*keys)
            await pilot.pause()
            svg = app.export_screenshot(title=title)
        path = out_dir / name
        path.write_text(svg, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Render the screenshots into the directory given."""
    parser = argparse.ArgumentParser(prog="python -m xrtop.screenshots", description=__doc__)
    parser.add_argument("out_dir", type=Path, help="where to write the SVGs")
    parser.add_argument("--profile", type=Path, default=DEMO_PROFILE, help="an Rprof.out")
    args = parser.parse_args(argv)
    if not args.profile.exists():
        print(f"xrtop: {args.profile} does not exist; record it first (see --help).")
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(render(args.profile, args.out_dir)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
