"""A real-R smoke test of an installed xrtop, for every supported Python.

`make test` runs the whole suite on its own Python, then, on each other Python from 3.9 to
3.13 the machine has, installs xrtop into a fresh venv and runs the pure-logic tests with
these (`pytest -m "not live or smoke"`, tests/other-pythons). They take the host's R only:
what differs between Pythons is xrtop's own code, not R.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import RLauncher
from test_e2e_tmux import Tmux
from test_e2e_tmux import summary_rprof
from test_e2e_tmux import tmux  # noqa: F401 (a fixture)
from test_e2e_tmux import xrtop
from test_record import xrtop as run_xrtop

pytestmark = [pytest.mark.live, pytest.mark.smoke]


def test_dump_and_record_read_by_summaryrprof(r_launcher: RLauncher, tmp_path: Path) -> None:
    # GIVEN R busy in fib() under middle() under outer()
    run = r_launcher.start("busy.R", "120")
    # WHEN xrtop dumps where it is (a few times: busy.R spends a sliver of its time in its
    # loop's condition, at top level, where no function of the chain runs)
    dumps = [run_xrtop("dump", str(run.pid)) for _ in range(3)]
    # THEN each names R's version and the PID, and the chain shows (innermost first)
    for dumped in dumps:
        assert dumped.returncode == 0, dumped.stderr
        assert dumped.stdout.startswith("R 4.") and f"PID {run.pid}" in dumped.stdout
    assert any({"fib", "middle", "outer"} <= set(d.stdout.split()) for d in dumps), dumps
    # WHEN it records a second into a file
    path = tmp_path / "smoke.out"
    recorded = run_xrtop("record", "-p", str(run.pid), "-d", "1", "-o", str(path))
    # THEN R's own summaryRprof reads the file and finds fib the hottest, and R runs on
    assert recorded.returncode == 0, recorded.stderr
    summary = summary_rprof(path)
    assert summary["self"] == "fib"
    assert {"fib", "middle", "outer"} <= set(summary["total"].split(","))
    assert run.alive() and run.tracer() == 0


def test_live_view_shows_the_hot_function_and_quits(
    r_launcher: RLauncher,
    tmux: Tmux,  # noqa: F811 (the fixture imported above)
) -> None:
    # GIVEN R busy in fib()
    run = r_launcher.start("busy.R", "120")
    # WHEN the live view watches it for a few seconds in a terminal
    tmux.start(xrtop(str(run.pid)), size=(100, 30))
    screen = tmux.wait_screen(" fib")
    # THEN the hot function and the target show; quitting asks about the unsaved samples
    # (q again quits without saving) and leaves R running, untraced
    assert f"PID {run.pid}" in screen
    tmux.keys("q")
    tmux.wait_screen("Quit without saving")
    tmux.keys("q")
    tmux.wait_screen("XRTOP-EXIT=0")
    assert run.alive() and run.tracer() == 0
