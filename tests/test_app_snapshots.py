"""Snapshots of the live view at 80x24 and 120x40, from a fixed Rprof.out (R's own, with
line and GC profiling), built the way `xrtop view` builds it.

Nothing on these screens depends on the clock or on the machine: a file source reports its
own duration (samples x interval) and has no CPU or memory readings. Regenerate after an
intended change with `pytest tests/test_app_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sampler.rprof import read_rprof
from xrtop.app import XrtopApp
from xrtop.diff_app import DiffApp
from xrtop.screenshots import DEMO_PROFILE
from xrtop.screenshots import DIFF_PROFILES
from xrtop.screenshots import ReplaySource
from xrtop.sources import FileSource

DEMO_LINES = Path(__file__).parent / "data" / "demo-rprof-lines.out"
SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
PRESSES = {
    "top": [],
    "tree": ["2"],
    "now": ["3"],
    "top-by-line": ["l"],
    "tree-filtered": ["2", "slash", "f", "i", "b", "enter"],
    "help": ["question_mark"],
    "flame": ["4"],
    "flame-zoomed-search": [
        "4",
        "down",
        "down",
        "down",
        "right",
        "enter",
        "slash",
        "f",
        "i",
        "b",
        "enter",
    ],
    "flame-own": ["4", "c"],
}
DIFF_PRESSES = {
    "diff-top": [],
    "diff-tree": ["2"],
    "diff-flame": ["4"],
}


def app() -> XrtopApp:
    # The refresh timer never fires during a snapshot: the first refresh is on mount.
    return XrtopApp(FileSource(DEMO_LINES, read_rprof(DEMO_LINES)), refresh_s=3600)


@pytest.mark.parametrize("size", list(SIZES.values()), ids=list(SIZES))
@pytest.mark.parametrize("screen", list(PRESSES))
def test_screens(snap_compare: Any, screen: str, size: tuple[int, int]) -> None:
    assert snap_compare(app(), press=PRESSES[screen], terminal_size=size)


@pytest.mark.parametrize("size", list(SIZES.values()), ids=list(SIZES))
@pytest.mark.parametrize("screen", list(DIFF_PRESSES))
def test_diff_screens(snap_compare: Any, screen: str, size: tuple[int, int]) -> None:
    # R's own Rprof of tests/r/optimise.R before and after its change.
    base, new = DIFF_PROFILES
    app = DiffApp(base, read_rprof(base), new, read_rprof(new))
    assert snap_compare(app, press=DIFF_PRESSES[screen], terminal_size=size)


@pytest.mark.parametrize("size", list(SIZES.values()), ids=list(SIZES))
def test_live_paused_with_samples_waiting(snap_compare: Any, size: tuple[int, int]) -> None:
    # The recorded demo replayed as a running target (fixed PID, R version, CPU and memory),
    # paused while 25 more samples arrive.
    source = ReplaySource(DEMO_PROFILE, read_rprof(DEMO_PROFILE))
    app = XrtopApp(source, refresh_s=3600)

    async def arrive(pilot: Any) -> None:
        await pilot.press("space")
        last = source.log.stack_at(len(source.log) - 1)
        for i in range(25):
            source.log.add(last, 100.0 + i / 100)
        app.refresh_data()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=arrive)
