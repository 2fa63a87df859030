"""End to end: the real `xrtop PID` and `xrtop -- Rscript ...` in a real terminal (tmux),
against real R processes.

Each test runs its own tmux server (`-L` with a unique name), reads the screen with
`capture-pane`, types keys with `send-keys`, and checks what R itself says about the saved
file (summaryRprof) and that the target is left running and untraced.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import IN_CI
from conftest import R_SCRIPTS
from conftest import REnv
from conftest import RLauncher
from conftest import rscript
from conftest import wait_for

from xrtop.screenshots import DIFF_PROFILES

pytestmark = pytest.mark.live


class Tmux:
    """One private tmux server with one window running a command."""

    def __init__(self, cwd: Path) -> None:
        self.socket = f"xrtop-e2e-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd

    def run(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        )
        return out.stdout

    def start(self, argv: list[str], size: tuple[int, int] = (120, 40)) -> None:
        # The shell line keeps the pane open after xrtop exits, so its exit code and final
        # messages can be read.
        line = f"{shlex.join(argv)}; echo XRTOP-EXIT=$?; sleep 600"
        self.run(
            "new-session", "-d", "-s", "e2e", "-x", str(size[0]), "-y", str(size[1]),
            "-c", str(self.cwd), line,
        )  # fmt: skip

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-J", "-t", "e2e")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "e2e", *keys)

    def wait_screen(self, text: str, timeout: float = 30.0) -> str:
        try:
            return str(wait_for(lambda: text in (s := self.screen()) and s, timeout, text))
        except TimeoutError:
            raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}") from None

    def kill(self) -> None:
        self.run("kill-server")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        if IN_CI:
            pytest.fail("tmux is not installed (make tools)")
        pytest.skip("tmux is not installed (make tools)")
    term = Tmux(tmp_path)
    try:
        yield term
    finally:
        term.kill()


def xrtop(*args: str) -> list[str]:
    return [sys.executable, "-m", "xrtop", *args]


def summary_rprof(path: Path) -> dict[str, str]:
    """What R's summaryRprof says about a file: the top self function and the names."""
    out = rscript(
        f'x <- summaryRprof("{path}"); '
        'cat("self=", rownames(x$by.self)[1], "\\n", sep=""); '
        'cat("total=", paste(rownames(x$by.total), collapse=","), "\\n", sep=""); '
        'cat("time=", x$sampling.time, "\\n", sep="")'
    )
    # summaryRprof keeps R's quotes around function names ("fib").
    return dict(line.replace('"', "").split("=", 1) for line in out.strip().splitlines())


def test_live_view_of_a_running_r_saves_and_detaches(
    r_env: REnv, r_launcher: RLauncher, tmux: Tmux, tmp_path: Path
) -> None:
    # GIVEN an R process busy in fib() under middle() under outer(), on every R version
    # the machine has, plain and in a container-like mount namespace
    run = r_launcher.start("busy.R", "300", env=r_env)
    # WHEN xrtop watches it in a terminal
    tmux.start(xrtop(str(run.pid)))
    # THEN the hot function shows up, with the target's PID and state in the header
    screen = tmux.wait_screen(" fib")
    assert f"PID {run.pid}" in screen and "[running]" in screen
    # WHEN the user presses s
    tmux.keys("s")
    tmux.wait_screen("Saved")
    files = wait_for(lambda: list(tmp_path.glob(f"xrtop-{run.pid}-*.out")), 10, "the file")
    assert len(files) == 1
    # THEN R's own summaryRprof reads it and finds fib as the hottest function
    summary = summary_rprof(files[0])
    assert summary["self"] == "fib"
    assert {"fib", "middle", "outer"} <= set(summary["total"].split(","))
    assert float(summary["time"]) > 0
    # WHEN the user quits (after saving, no question is asked)
    tmux.keys("q")
    screen = tmux.wait_screen("XRTOP-EXIT=0")
    assert f"wrote xrtop-{run.pid}-" in screen
    # THEN the target runs on, untraced
    assert run.alive()
    assert run.tracer() == 0
    assert run.state() in ("R", "S")


def test_launched_program_stays_browsable_after_it_exits(tmux: Tmux, tmp_path: Path) -> None:
    if shutil.which("Rscript") is None:
        pytest.skip("R is not installed")
    # GIVEN xrtop launching a 3-second R script, streaming to -o
    stream = tmp_path / "stream.out"
    tmux.start(xrtop("-o", str(stream), "--", "Rscript", str(R_SCRIPTS / "busy.R"), "3"))
    tmux.wait_screen(" fib")
    # WHEN the program ends, the view stays, marked as exited
    tmux.wait_screen("[target exited]", timeout=60)
    # AND it is still browsable (tree view) and saveable
    tmux.keys("2")
    tmux.wait_screen("Call tree")
    tmux.keys("s")
    tmux.wait_screen("Saved")
    tmux.keys("C-c")  # ctrl+c quits like q, and the shell gets its terminal back
    screen = tmux.wait_screen("XRTOP-EXIT=")
    assert "XRTOP-EXIT=0" in screen
    # The streamed file and the saved one are both whole profiles R reads.
    (saved,) = tmp_path.glob("xrtop-*.out")
    for path in (stream, saved):
        assert summary_rprof(path)["self"] == "fib"


def test_view_file_opens_and_quits(tmux: Tmux) -> None:
    data = Path(__file__).parent / "data" / "demo-rprof-lines.out"
    tmux.start(xrtop("view", str(data)), size=(80, 24))
    screen = tmux.wait_screen("[file (read-only)]")
    assert " fib " in screen and "demo.R:6" in screen
    tmux.keys("q")  # a file has nothing unsaved: no question
    tmux.wait_screen("XRTOP-EXIT=0")


def test_attach_error_is_printed_before_the_ui(tmux: Tmux) -> None:
    # GIVEN a PID that is not an R process (this test's own Python)
    tmux.start(xrtop(str(os.getpid())), size=(100, 20))
    # THEN xrtop says so on the normal screen with a hint and exits with 4 (not an R process)
    screen = tmux.wait_screen("XRTOP-EXIT=")
    assert "XRTOP-EXIT=4" in screen
    assert f"xrtop: process {os.getpid()} is not an R process" in screen
    assert "Traceback" not in screen


def test_no_terminal_is_one_line_and_a_usage_error(tmp_path: Path) -> None:
    out = subprocess.run(
        xrtop(str(os.getpid())), capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 2
    assert out.stderr.startswith("xrtop: the live view needs a terminal")
    assert "\x1b[" not in out.stdout + out.stderr


def test_sigterm_detaches_and_restores_the_terminal(
    r_launcher: RLauncher, tmux: Tmux, tmp_path: Path
) -> None:
    run = r_launcher.start("busy.R", "300")
    tmux.start(xrtop(str(run.pid)))
    tmux.wait_screen(" fib")
    shell = int(tmux.run("display-message", "-p", "-t", "e2e", "#{pane_pid}").strip())
    (viewer,) = [p for p in psutil.Process(shell).children() if "xrtop" in " ".join(p.cmdline())]
    viewer.send_signal(signal.SIGTERM)
    screen = tmux.wait_screen("XRTOP-EXIT=")
    # The summary is printed on the normal screen after the UI left it.
    assert f"(PID {run.pid})" in screen
    assert run.alive() and run.tracer() == 0
    assert run.state() in ("R", "S")


def test_flame_view_of_a_running_r_zooms_and_searches(
    r_launcher: RLauncher, tmux: Tmux, tmp_path: Path
) -> None:
    # GIVEN xrtop watching R busy in fib() under middle() under outer()
    run = r_launcher.start("busy.R", "300")
    tmux.start(xrtop(str(run.pid)))
    tmux.wait_screen(" fib")
    # WHEN the user opens the Flame view
    tmux.keys("4")
    screen = tmux.wait_screen("all  total 100.0%")
    # THEN the icicle shows the chain from the root down, the root's line and the legend
    assert "package:" in screen
    rows = [line.split()[0] for line in screen.splitlines()[5:12] if line.split()]
    assert rows[:4] == ["all", "outer", "middle", "fib"], screen
    # WHEN the user moves down to outer and zooms into it
    tmux.keys("Down")
    tmux.wait_screen("outer  total")
    tmux.keys("Enter")
    tmux.wait_screen("zoomed: outer")
    # AND searches for fib: its summed share shows
    tmux.keys("/")
    tmux.wait_screen("filter: function")  # keys typed before the line opens go to the view
    tmux.keys("f", "i", "b", "Enter")
    screen = tmux.wait_screen("match 'fib':")
    tmux.wait_screen("Zoom out")  # the footer of the flame: the filter line gave focus back
    share = float(screen.split("match 'fib':")[1].split("%")[0])
    assert 50.0 < share <= 100.0
    # WHEN backspace zooms out and q quits (choosing to quit without saving)
    tmux.keys("BSpace", "Up")  # out of the zoom, the root above outer can be selected
    tmux.wait_screen("all  total 100.0%")
    tmux.keys("q")
    tmux.wait_screen("Quit without saving")
    tmux.keys("q")
    tmux.wait_screen("XRTOP-EXIT=0")
    assert run.alive() and run.tracer() == 0


def test_diff_of_two_profiles_in_a_terminal(tmux: Tmux) -> None:
    # GIVEN R's own profiles of tests/r/optimise.R before and after its change
    tmux.start(xrtop("diff", *(str(path) for path in DIFF_PROFILES)))
    # THEN the Top view lists the changes, the largest first, marking the gone function
    screen = tmux.wait_screen("ΔTotal")
    assert "diff diff-before.out → diff-after.out" in screen
    grow = next(line for line in screen.splitlines() if " grow " in line)
    assert grow.split()[0] == "-76.9" and grow.split()[-1] == "gone"
    # WHEN the user opens the Flame view
    tmux.keys("4")
    screen = tmux.wait_screen("change, pp:")
    assert "all  total 100.0% (191)" in screen
    tmux.keys("q")
    tmux.wait_screen("XRTOP-EXIT=0")
