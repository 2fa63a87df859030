"""The live view of a real `--subprocesses` session: an R whose `mclapply` runs two forked
workers, each in its own function, under the app (Pilot) on every R of the lab, and under
`xrtop --subprocesses -- Rscript ...` in a real terminal (tmux).

The merged view must show both workers' functions, the Tree one node per process, the
process list the target and its two mclapply workers; choosing a worker shows its function
alone. The sampler's own coverage of parallel R is P's (tests of sampler.group).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import R_SCRIPTS
from conftest import REnv
from conftest import RLauncher
from test_app_live import wait_until
from test_e2e_tmux import Tmux
from test_e2e_tmux import tmux as tmux  # the fixture
from test_e2e_tmux import xrtop

from sampler.model import CallTree
from sampler.processes import TARGET_ROLE
from widgets.process_list import ProcessList
from xrtop.app import XrtopApp
from xrtop.session import SamplingOptions
from xrtop.session import Session
from xrtop.sources import LiveSource

pytestmark = pytest.mark.live

WORKER = "mclapply worker"


async def test_live_view_merges_the_workers_and_shows_one_on_choice(
    r_launcher: RLauncher, r_env: REnv
) -> None:
    # GIVEN an R that forks two mclapply workers, one in crunch_sums, one in crunch_fib
    run = r_launcher.start("two_workers.R", "60", env=r_env)
    session = Session.attach_pid(run.pid, SamplingOptions(subprocesses=True))
    session.start()
    source = LiveSource(session)
    try:
        app = XrtopApp(source, refresh_s=0.2)
        async with app.run_test(size=(120, 30)) as pilot:
            model = app.model

            def both_busy() -> bool:
                total = model.current().total
                return total["crunch_sums"] >= 50 and total["crunch_fib"] >= 50

            # WHEN the view runs with every process merged
            await wait_until(pilot, both_busy, "both workers' functions in the merged view")
            # THEN the process list has the target and the two workers
            await pilot.press("5")
            await pilot.pause(0.3)
            rows, shown = model.process_list()
            assert shown is None
            assert [r.role for r in rows] == [TARGET_ROLE, WORKER, WORKER], rows
            target, *workers = rows
            assert target.pid == run.pid and all(w.parent_pid == run.pid for w in workers)
            table = app.query_one(ProcessList)
            listed = [table.render_line(y).text for y in range(2, 5)]
            assert [line.split()[0] for line in listed] == [str(r.pid) for r in rows]
            assert all(WORKER in line for line in listed[1:])
            assert "all 3 processes" in str(app.query_one("#status").render())
            # AND the Tree's top level is the processes, each worker with its own function
            tree = model.current().tree
            by_label = {str(tree.key[n]): n for n in tree.children[CallTree.ROOT].values()}
            for worker in workers:
                assert f"PID {worker.pid} ({WORKER})" in by_label
            assert all(str(label).startswith("PID ") for label in by_label)
            # WHEN the list's row of the worker in crunch_fib is chosen with enter
            fib_worker = max(
                workers,
                key=lambda w: _under(tree, by_label[f"PID {w.pid} ({WORKER})"], "crunch_fib"),
            )
            await pilot.press("5")
            table.move_to(fib_worker.pid)
            await pilot.press("enter")
            await wait_until(
                pilot, lambda: model.current().total["crunch_fib"] >= 20, "the worker's samples"
            )
            # THEN every view shows that worker alone, its functions on top of the tree
            agg = model.current()
            assert agg.total["crunch_sums"] == 0 and agg.total["fib"] > 0
            assert all(not str(k).startswith("PID ") for k in agg.tree.children[CallTree.ROOT])
            header = str(app.query_one("#status").render())
            assert f"PID {fib_worker.pid} ({WORKER})" in header
            # AND a shows every process again
            await pilot.press("a")
            await wait_until(
                pilot, lambda: model.current().total["crunch_sums"] > 0, "all processes again"
            )
    finally:
        source.stop()
    assert run.tracer() == 0
    for row in session.processes.rows() if session.processes is not None else []:
        assert _tracer(row.pid) in (0, None), f"PID {row.pid} left traced"


@pytest.mark.parametrize(
    ("mode", "role", "workers"),
    [("psock", "PSOCK worker", 2), ("callr", "callr", 1), ("future", "future worker", 2)],
)
async def test_live_view_of_started_workers(
    r_launcher: RLauncher, mode: str, role: str, workers: int
) -> None:
    # GIVEN an R whose work runs in R processes it starts (tests/r/parallel.R, host R)
    run = r_launcher.start("parallel.R", mode, "60")
    session = Session.attach_pid(run.pid, SamplingOptions(subprocesses=True))
    session.start()
    source = LiveSource(session)
    try:
        app = XrtopApp(source, refresh_s=0.2)
        async with app.run_test(size=(120, 30)) as pilot:
            model = app.model
            labels: set[str] = set()

            def workers_busy() -> bool:
                tree = model.current().tree
                labels.clear()
                labels.update(str(tree.key[n]) for n in tree.children[CallTree.ROOT].values())
                rows = [r for r in model.process_list()[0] if r.role == role]
                listed = len(rows) == workers and all(r.label in labels for r in rows)
                return listed and model.current().total["busy_worker"] > 0

            # THEN each busy worker shows in the list by its role, and as a node of the Tree
            await wait_until(pilot, workers_busy, f"{workers} {role} in the list and the tree")
            assert model.status().processes == f"all {workers + 1} processes"
    finally:
        source.stop()
    assert run.tracer() == 0


def _under(tree: CallTree, node: int, name: str) -> int:
    """Samples of `name` frames anywhere under `node`."""
    count, stack = 0, [node]
    while stack:
        current = stack.pop()
        if tree.key[current] == name:
            count += tree.total[current]
        stack.extend(tree.children[current].values())
    return count


def _tracer(pid: int) -> int | None:
    """The PID tracing `pid` (0: none; None: it has ended)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return int(status.read().split("TracerPid:")[1].split()[0])
    except FileNotFoundError:
        return None


def test_subprocesses_flag_in_a_terminal_shows_the_workers(tmux: Tmux, tmp_path: Path) -> None:
    if shutil.which("Rscript") is None:
        pytest.skip("R is not installed")
    # GIVEN xrtop --subprocesses launching an R that forks two mclapply workers
    script = str(R_SCRIPTS / "two_workers.R")
    tmux.start(xrtop("--subprocesses", "--", "Rscript", script, "60"))
    # THEN the merged Top view shows both workers' functions, and the header all processes
    tmux.wait_screen("crunch_sums", timeout=60)
    screen = tmux.wait_screen(" fib ")
    assert "all 3 processes" in screen
    # WHEN the user opens the process list
    tmux.keys("5")
    screen = tmux.wait_screen("3 live")
    # THEN it lists the target and its two workers by PID
    lines = screen.splitlines()
    heading = next(i for i, line in enumerate(lines) if line.split()[:2] == ["PID", "Role"])
    rows = [line.split() for line in lines[heading + 2 : heading + 5]]  # after the all row
    assert rows[0][1] == TARGET_ROLE and rows[0][0].isdigit(), screen
    workers = rows[1:]
    assert all(row[0].isdigit() and row[0] != rows[0][0] for row in workers), screen
    # WHEN a worker is chosen (down past the all row and the target), then the Top view
    tmux.keys("Down", "Down", "Enter", "1")
    screen = tmux.wait_screen(f"PID {workers[0][0]} (")
    # THEN only that worker's function is shown
    assert ("crunch_sums" in screen) != bool(re.search(r"\bfib\b", screen)), screen
    tmux.keys("q")
    tmux.wait_screen("Quit without saving")
    tmux.keys("q")
    assert "XRTOP-EXIT=" in tmux.wait_screen("XRTOP-EXIT=")
