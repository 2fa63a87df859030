"""The live view of a real `--subprocesses` session: an R whose `mclapply` runs two forked
workers, each in its own function, under the app (Pilot) on every R of the lab, and under
`xrtop --subprocesses -- Rscript ...` in a real terminal (tmux).

The merged view must show both workers' functions, the Tree one node per process, the
process list the target and its two mclapply workers; choosing a worker shows its function
alone. The sampler's own coverage of parallel R is P's (tests of sampler.group).
"""

from __future__ import annotations

import pytest
from conftest import REnv
from conftest import RLauncher
from test_app_live import wait_until
from test_e2e_tmux import tmux as tmux  # the fixture
from test_subprocesses import group_session

from sampler.model import CallTree
from sampler.processes import TARGET_ROLE
from widgets.process_list import ProcessList
from xrtop.app import XrtopApp
from xrtop.sources import LiveSource

pytestmark = pytest.mark.live

WORKER = "mclapply worker"


async def test_live_view_merges_the_workers_and_shows_one_on_choice(
    r_launcher: RLauncher, r_env: REnv
) -> None:
    # GIVEN an R that forks two mclapply workers, one in crunch_sums, one in crunch_fib
    run = r_launcher.start("two_workers.R", "60", env=r_env)
    # (group_session checks, on the way out, that every process is left running untraced,
    # then kills the workers, which outlive a killed target)
    with group_session(run) as session:
        app = XrtopApp(LiveSource(session), refresh_s=0.2)
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
    assert run.tracer() == 0


@pytest.mark.parametrize(
    ("mode", "role", "workers"),
    [("psock", "PSOCK worker", 2), ("callr", "callr", 1), ("future", "future worker", 2)],
)
async def test_live_view_of_started_workers(
    r_launcher: RLauncher, mode: str, role: str, workers: int
) -> None:
    # GIVEN an R whose work runs in R processes it starts (tests/r/parallel.R, host R)
    run = r_launcher.start("parallel.R", mode, "60")
    with group_session(run) as session:
        app = XrtopApp(LiveSource(session), refresh_s=0.2)
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
