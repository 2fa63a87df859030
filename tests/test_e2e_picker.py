"""End to end in a real terminal (tmux): `xrtop` with no arguments opens the picker; typing
part of a running R script's name and Enter attaches and shows its hot functions; q quits
and leaves the R process running and untraced."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IN_CI
from conftest import RLauncher

ROOT = Path(__file__).parent.parent


class Tmux:
    """One detached tmux session running a command; read its screen, type into it."""

    def __init__(self, command: str, width: int = 160, height: int = 40) -> None:
        self.name = f"xrtop-e2e-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                str(width),
                "-y",
                str(height),
                command,
            ],
            check=True,
        )
        # A fresh server may start at 80x24 whatever -x says; make the size definite.
        subprocess.run(
            ["tmux", "resize-window", "-t", self.name, "-x", str(width), "-y", str(height)],
            check=False,
        )

    def screen(self) -> str:
        out = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)

    def key(self, name: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, name], check=True)

    def wait_for(self, predicate, what: str, timeout: float = 30) -> str:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{text}")

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True, check=False)


@pytest.fixture
def tmux_xrtop(tmp_path: Path) -> Iterator[tuple[Tmux, Path]]:
    if not shutil.which("tmux"):
        if IN_CI:
            pytest.fail("tmux is not installed")
        pytest.skip("tmux is not installed")
    status = tmp_path / "status"
    # xrtop with no arguments, exactly as a user types it; its exit code goes to a file.
    command = (
        f"cd {tmp_path} && env -u COLUMNS -u LINES TERM=xterm-256color {sys.executable} -m xrtop; "
        f"echo $? > {status}; sleep 60"
    )
    session = Tmux(command)
    try:
        yield session, status
    finally:
        session.kill()


def test_pick_by_script_name_attach_and_quit(
    r_launcher: RLauncher, tmux_xrtop: tuple[Tmux, Path]
) -> None:
    # GIVEN an R workload running busy.R (fib under middle under outer)
    run = r_launcher.start("busy.R", "120")
    term, status = tmux_xrtop
    pid = str(run.pid)
    # WHEN xrtop starts without a PID, the picker lists it
    term.wait_for(lambda s: "pick an R process" in s and pid in s, "the picker to list busy.R")
    # AND the user types part of its script name, and its PID to single it out
    term.type("usy.")
    term.key("Space")
    term.type(pid)
    screen = term.wait_for(lambda s: f"Filter: usy. {pid}" in s, "the filter to show")
    rows = [line for line in screen.splitlines() if "busy.R" in line]
    assert len(rows) == 1 and rows[0].split()[0] == pid, screen
    # AND presses Enter
    term.key("Enter")
    # THEN the live view shows its hot functions
    screen = term.wait_for(
        lambda s: "fib" in s and "middle" in s and "pick an R process" not in s,
        "busy.R's hot functions",
    )
    assert run.tracer() != 0
    # WHEN the user quits with q (and confirms when asked about unsaved samples)
    term.key("q")
    deadline = time.monotonic() + 20
    while not status.exists() and time.monotonic() < deadline:
        if "Quit without saving" in term.screen():
            term.key("q")
        time.sleep(0.2)
    # THEN xrtop exits cleanly, and R runs on, untraced
    assert status.exists(), term.screen()
    assert status.read_text().strip() == "0"
    assert run.alive()
    assert run.tracer() == 0
    time.sleep(0.1)
    assert run.state() in ("R", "S")
