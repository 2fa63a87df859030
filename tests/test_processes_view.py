"""The live view of several processes (`--subprocesses`), without R: the merged log, the
view model's choice of all processes or one, and the process list's layout and keys.

Fake process sets stand in for the sampler (pure logic and UI layout); the real sampler of
R's worker processes under the real UI is tests/test_processes_live.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_app import FIB
from test_app import LOOP
from test_app import FakeLive

from sampler.model import CallTree
from sampler.model import ProcessRow
from sampler.model import SampleLog
from sampler.model import Stack
from sampler.rprof import read_rprof
from widgets.call_tree import CallTreeView
from widgets.process_list import ProcessList
from widgets.status import StatusHeader
from xrtop.app import XrtopApp
from xrtop.children import child_output_path
from xrtop.loading import FileViewApp
from xrtop.processes_view import MergedLog
from xrtop.recorded_processes import child_files
from xrtop.screenshots import procs_source
from xrtop.view_model import ViewModel

WORK = Stack(("crunch", "FUN", "lapply", "mclapply"))
WAIT = Stack(("selectChildren", "mclapply"), idle=True)
TARGET, WORKER_A, WORKER_B = 4242, 5001, 5002


class FakeProcesses:
    """A target and its workers, each with a log the test appends to (10 ms apart)."""

    def __init__(self) -> None:
        self.log_of: dict[int, SampleLog] = {}
        self.row_of: dict[int, ProcessRow] = {}
        self.clock: dict[int, float] = {}
        self.rows_calls = 0

    def start(self, pid: int, role: str, log: SampleLog | None = None, at: float = 0.0) -> None:
        self.log_of[pid] = log if log is not None else SampleLog(10_000)
        parent = 0 if role == "target" else TARGET
        self.row_of[pid] = ProcessRow(pid, parent, role, "running", 0, 50.0)
        self.clock[pid] = at

    def add(self, pid: int, stack: Stack, count: int = 1) -> None:
        for _ in range(count):
            self.log_of[pid].add(stack, self.clock[pid])
            self.clock[pid] += 0.01

    def end(self, pid: int) -> None:
        self.row_of[pid] = replace(self.row_of[pid], state="ended", cpu_percent=0.0)

    def rows(self) -> list[ProcessRow]:
        self.rows_calls += 1
        return [replace(r, samples=len(self.log_of[r.pid])) for r in self.row_of.values()]

    def logs(self) -> dict[int, SampleLog]:
        return dict(self.log_of)


def family() -> tuple[FakeLive, FakeProcesses]:
    """A live source whose target waits in mclapply while two workers crunch."""
    source = FakeLive()
    processes = FakeProcesses()
    # Workers list after the target whatever the order they are found in.
    processes.start(WORKER_B, "mclapply worker", at=0.001)
    processes.start(TARGET, "target", source.log)
    processes.start(WORKER_A, "mclapply worker", at=0.002)
    source.processes = processes
    return source, processes


def fill(source: FakeLive, processes: FakeProcesses) -> None:
    source.add(WAIT, 10)  # the target's own samples go through its log (`add`)
    processes.add(WORKER_A, WORK, 7)
    processes.add(WORKER_A, FIB, 3)
    processes.add(WORKER_B, WORK, 4)
    processes.add(WORKER_B, LOOP, 6)


def top_level(tree: CallTree) -> dict[str, int]:
    return {str(tree.key[n]): tree.total[n] for n in tree.children[CallTree.ROOT].values()}


# -- the merged log ----------------------------------------------------------------------------


def test_merged_log_interleaves_by_time_and_keeps_each_process_apart() -> None:
    a, b = SampleLog(10_000), SampleLog(10_000)
    for i in range(3):
        a.add(WORK, 100.0 + 0.02 * i)  # 100.00, 100.02, 100.04
        b.add(WORK, 100.01 + 0.02 * i)  # 100.01, 100.03, 100.05
    merged = MergedLog(10_000)
    assert merged.pull({1: a, 2: b}) == 6
    # The same stack in two processes: two merged stacks, each naming its process.
    assert [merged.process_of[sid] for sid in merged.stack_ids] == [1, 2, 1, 2, 1, 2]
    assert merged.stacks[merged.stack_ids[0]] == merged.stacks[merged.stack_ids[1]] == WORK
    assert [round(t, 3) for t in merged.times] == [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]


def test_merged_log_takes_in_only_new_samples_and_times_never_go_back() -> None:
    a, b = SampleLog(10_000), SampleLog(10_000)
    a.add(WORK, 10.0)
    a.add(FIB, 10.5)
    merged = MergedLog(10_000)
    merged.pull({1: a, 2: b})
    before = list(merged.stack_ids)
    assert merged.pull({1: a, 2: b}) == 0, "nothing new"
    b.add(LOOP, 10.2)  # taken before a's last merged sample, arrived after it
    a.add(FIB, 10.6)
    assert merged.pull({1: a, 2: b}) == 2
    assert list(merged.stack_ids[:2]) == before, "merged samples are never rewritten"
    assert list(merged.times) == sorted(merged.times)
    assert merged.times[2] == merged.times[1], "the late sample takes the latest time"
    assert [merged.process_of[sid] for sid in merged.stack_ids] == [1, 1, 2, 1]


def test_merged_log_follows_a_reused_pid_to_the_new_process() -> None:
    old, new = SampleLog(10_000), SampleLog(10_000)
    old.add(WORK, 1.0)
    merged = MergedLog(10_000)
    merged.pull({7: old})
    new.add(LOOP, 2.0)
    new.add(LOOP, 2.01)
    assert merged.pull({7: new}) == 2
    assert [merged.stacks[s] for s in merged.stack_ids] == [WORK, LOOP, LOOP]


# -- the view model ----------------------------------------------------------------------------


def test_all_processes_sum_functions_and_the_tree_has_one_node_per_process() -> None:
    source, processes = family()
    fill(source, processes)
    model = ViewModel(source)
    model.take_in_new()
    agg = model.current()
    assert agg.samples == 20, "the target's idle wait is left out, as for one process"
    assert agg.total["crunch"] == 11 and agg.own["crunch"] == 11
    assert agg.total["fib"] == 3 and agg.total["loop"] == 6
    assert top_level(agg.tree) == {
        f"PID {WORKER_A} (mclapply worker)": 10,
        f"PID {WORKER_B} (mclapply worker)": 10,
    }
    agg.tree.check()
    assert "PID" not in " ".join(map(str, agg.total)), "processes are no functions"
    status = model.status()
    assert status.processes == "all 3 processes" and status.samples == 30


def test_one_process_shows_its_own_samples_and_functions_on_top() -> None:
    source, processes = family()
    fill(source, processes)
    model = ViewModel(source, include_idle=True)
    model.take_in_new()
    assert model.select_process(WORKER_B)
    assert not model.select_process(WORKER_B), "already shown"
    assert not model.select_process(999), "no such process"
    model.take_in_new()
    agg = model.current()
    assert dict(agg.own) == {"crunch": 4, "loop": 6}
    assert top_level(agg.tree) == {"mclapply": 4, "outer": 6}
    status = model.status()
    assert status.processes == f"PID {WORKER_B} (mclapply worker)" and status.samples == 10
    assert model.now_stack() == LOOP
    model.select_process(None)
    model.take_in_new()
    assert model.current().samples == 30 and model.status().processes == "all 3 processes"


def test_the_list_is_read_once_per_refresh_target_first() -> None:
    source, processes = family()
    fill(source, processes)
    model = ViewModel(source)
    model.take_in_new()
    calls = processes.rows_calls
    model.status()
    rows, shown = model.process_list()
    assert processes.rows_calls == calls, "CPU shares span a whole refresh"
    assert [r.pid for r in rows] == [TARGET, WORKER_A, WORKER_B] and shown is None


def test_refresh_takes_in_only_the_new_samples() -> None:
    source, processes = family()
    fill(source, processes)
    model = ViewModel(source)
    model.take_in_new()
    tree = model.current().tree
    model.dirty = False
    model.take_in_new()
    assert not model.dirty, "nothing new: nothing to draw"
    processes.add(WORKER_A, LOOP, 5)
    model.take_in_new()
    agg = model.current()
    assert model.dirty and agg.tree is tree, "the same aggregate, updated in place"
    assert agg.consumed == 35 and agg.total["loop"] == 11


def test_reset_holds_for_every_process_and_for_all() -> None:
    source, processes = family()
    fill(source, processes)
    model = ViewModel(source)
    model.take_in_new()
    model.reset()
    assert model.current().samples == 0
    processes.add(WORKER_A, LOOP, 2)
    processes.add(WORKER_B, FIB, 3)
    model.take_in_new()
    assert dict(model.current().own) == {"loop": 2, "fib": 3}
    model.select_process(WORKER_A)
    model.take_in_new()
    assert dict(model.current().own) == {"loop": 2}, "the reset holds for one process too"


def test_a_process_chosen_while_paused_shows_what_it_has() -> None:
    source, processes = family()
    fill(source, processes)
    model = ViewModel(source)
    model.take_in_new()
    model.toggle_pause()
    model.select_process(WORKER_A)
    assert model.current().samples == 10 and model.view_state.paused


def test_window_spans_the_last_seconds_of_every_process() -> None:
    source, processes = family()
    processes.add(WORKER_A, WORK, 2000)  # 20 s
    processes.add(WORKER_B, FIB, 1500)  # 15 s
    processes.add(WORKER_B, LOOP, 500)  # then 5 s
    model = ViewModel(source)
    model.take_in_new()
    model.cycle_window()  # last 10 s: 10 s of each worker
    agg = model.current()
    assert abs(agg.samples - 2000) <= 2
    assert abs(agg.total["loop"] - 500) <= 1 and abs(agg.total["fib"] - 500) <= 1


def test_window_keeps_the_process_level_of_the_tree() -> None:
    source, processes = family()
    processes.add(WORKER_A, WORK, 2000)
    processes.add(WORKER_B, LOOP, 2000)
    model = ViewModel(source)
    model.take_in_new()
    model.cycle_window()
    assert set(top_level(model.current().tree)) == {
        f"PID {WORKER_A} (mclapply worker)",
        f"PID {WORKER_B} (mclapply worker)",
    }


def test_a_role_known_late_renames_the_process_node() -> None:
    source, processes = family()
    processes.row_of[WORKER_A] = replace(processes.row_of[WORKER_A], role="R child")
    processes.add(WORKER_A, WORK, 5)
    model = ViewModel(source)
    model.take_in_new()
    assert top_level(model.current().tree) == {f"PID {WORKER_A} (R child)": 5}
    # The sampler names the fork by what it runs, after its first samples.
    processes.row_of[WORKER_A] = replace(processes.row_of[WORKER_A], role="callr")
    processes.add(WORKER_A, WORK, 2)
    model.take_in_new()
    assert top_level(model.current().tree) == {f"PID {WORKER_A} (callr)": 7}
    tree = model.current().tree
    model.take_in_new()
    assert model.current().tree is tree, "renamed once, then updated in place again"


# -- the process list --------------------------------------------------------------------------


async def test_process_list_chooses_one_process_and_a_shows_all_again() -> None:
    source, processes = family()
    fill(source, processes)
    processes.end(WORKER_B)
    app = XrtopApp(source, refresh_s=60)
    async with app.run_test(size=(100, 30)) as pilot:
        header = app.query_one(StatusHeader)
        assert "all 3 processes" in str(header.render())
        await pilot.press("5")
        assert app.active_view == "procs"
        table = app.query_one(ProcessList)
        assert app.focused is table
        lines = [table.render_line(y).text for y in range(5)]
        assert lines[1].startswith("●") and "all" in lines[1] and "3 processes" in lines[1]
        assert str(TARGET) in lines[2] and "target" in lines[2]
        assert str(WORKER_B) in lines[4] and "ended" in lines[4]
        assert any(s.style and s.style.dim for s in table.render_line(4)), "ended: dimmed"
        assert not any(s.style and s.style.dim for s in table.render_line(3))
        await pilot.press("down", "down", "enter")  # the first worker
        assert app.model.processes is not None and app.model.processes.selected == WORKER_A
        assert table.render_line(3).text.startswith("●")
        assert f"PID {WORKER_A} (mclapply worker)" in str(header.render())
        await pilot.press("2")
        tree = app.query_one(CallTreeView)
        assert tree.calltree is not None and top_level(tree.calltree) == {"mclapply": 7, "outer": 3}
        await pilot.press("a")
        assert app.model.processes.selected is None
        assert tree.calltree is not None
        assert set(top_level(tree.calltree)) == {
            f"PID {WORKER_A} (mclapply worker)",
            f"PID {WORKER_B} (mclapply worker)",
        }
        assert re.search(r"▾ PID 500[12] \(mclapply worker\)", tree.render_line(1).text)


async def test_process_list_shows_an_ending_without_new_samples() -> None:
    source, processes = family()
    fill(source, processes)
    app = XrtopApp(source, refresh_s=60)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("5")
        table = app.query_one(ProcessList)
        assert "running" in table.render_line(3).text
        processes.end(WORKER_A)  # no sample arrives after it
        app.refresh_data()
        assert "ended" in table.render_line(3).text


async def test_one_process_has_an_empty_list_and_a_does_nothing() -> None:
    source = FakeLive()
    source.add(FIB, 3)
    app = XrtopApp(source, refresh_s=60)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a", "5")
        table = app.query_one(ProcessList)
        assert table.keys == [] and "--subprocesses" in table.render_line(1).text
        assert "processes" not in str(app.query_one(StatusHeader).render())
        assert app.model.current().samples == 3


# -- a recording's children beside it (xrtop view F.out) ---------------------------------------


def rprof(path: Path, *stacks: tuple[str, ...]) -> Path:
    lines = ["sample.interval=10000"]
    lines += [" ".join(f'"{name}"' for name in names) for names in stacks]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_child_files_are_the_pid_named_siblings_only(tmp_path: Path) -> None:
    target = rprof(tmp_path / "run.out", ("mclapply",))
    one = rprof(tmp_path / "run.123.out", ("crunch",))
    two = rprof(tmp_path / "run.45678.out", ("crunch",))
    for other in ("run.x.out", "run.0.out", "run.12.prof", "runs.9.out", "run.12.out.bak"):
        rprof(tmp_path / other, ("crunch",))
    (tmp_path / "run.77.out").mkdir()
    assert child_files(target) == {123: one, 45678: two}
    bare = rprof(tmp_path / "prof", ("f",))
    assert child_files(bare) == {} and child_files(tmp_path / "run") == {}
    assert child_files(rprof(tmp_path / "prof.31", ("f",)).with_name("prof")) == {
        31: tmp_path / "prof.31"
    }


async def test_view_of_a_recording_lists_its_children(tmp_path: Path) -> None:
    path = rprof(tmp_path / "run.out", *[("selectChildren", "mclapply")] * 4)
    rprof(tmp_path / "run.123.out", *[("crunch", "FUN", "lapply")] * 6)
    rprof(tmp_path / "run.456.out", *[("loop", "FUN", "lapply")] * 3)
    (tmp_path / "run.789.out").write_text("not a profile\n")
    app = FileViewApp(path)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(100):
            await pilot.pause(0.02)
            if app.model.processes is not None:
                break
        assert app.model.current().samples == 13 and app.model.current().total["lapply"] == 9
        header = str(app.query_one(StatusHeader).render())
        assert "all 3 processes" in header
        assert "elapsed 60ms" in header, "as long as the longest process (6 samples)"
        assert any("run.789.out" in n.message for n in app._notifications), "said, left out"
        await pilot.press("5")
        table = app.query_one(ProcessList)
        lines = [table.render_line(y).text for y in range(1, 5)]
        assert "all" in lines[0] and "13" in lines[0]
        assert lines[1].split()[:3] == ["?", "target", "recorded"]
        assert lines[2].split()[:4] == ["123", "R", "child", "recorded"]
        await pilot.press("down", "down", "enter")
        assert dict(app.model.current().own) == {"crunch": 6}
        assert "PID 123 (R child)" in str(app.query_one(StatusHeader).render())


async def test_save_writes_each_child_beside_the_target_since_the_reset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source, processes = family()
    fill(source, processes)
    app = XrtopApp(source, refresh_s=60)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        source.add(FIB, 1)
        processes.add(WORKER_A, LOOP, 2)
        path, samples, size = app.save()
    assert samples == 3
    assert [s.names for s in read_rprof(path).stacks] == [FIB.names]
    child_a = Path(child_output_path(str(path), WORKER_A))
    child_b = Path(child_output_path(str(path), WORKER_B))
    assert [s.names for s in read_rprof(child_a).stacks] == [LOOP.names] * 2
    assert read_rprof(child_b).stacks == [], "nothing since the reset"
    assert size == sum(p.stat().st_size for p in (path, child_a, child_b))
    assert child_files(path) == {WORKER_A: child_a, WORKER_B: child_b}


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("keys", [["5"], ["2"], ["5", "down", "down", "enter", "1"]])
def test_screens_of_several_processes(
    snap_compare: Any, keys: list[str], size: tuple[int, int]
) -> None:
    # The --subprocesses demo recording (a parent waiting for two mclapply workers) replayed
    # as a running session: the list, the tree with a process level, one worker's top view.
    app = XrtopApp(procs_source(), refresh_s=3600)
    assert snap_compare(app, press=keys, terminal_size=size)


async def test_export_holds_every_process_under_its_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source, processes = family()
    fill(source, processes)
    app = XrtopApp(source, refresh_s=60)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        processes.add(WORKER_A, LOOP, 2)
        processes.add(WORKER_B, FIB, 3)
        path, samples, _ = app.save("collapsed")
        speedscope, _, _ = app.save("speedscope")
    lines = dict(line.rsplit(" ", 1) for line in path.read_text().splitlines())
    assert lines == {
        f"PID {WORKER_A} (mclapply worker);outer;loop": "2",
        f"PID {WORKER_B} (mclapply worker);outer;middle;fib;fib": "3",
    }, "each process outermost, from the reset on"
    assert samples == 5 and list(Path().glob("*.txt")) == [path], "one file"
    profiles = json.loads(speedscope.read_text())["profiles"]
    assert [p["name"] for p in profiles] == [
        f"PID {TARGET} (target)",
        f"PID {WORKER_A} (mclapply worker)",
        f"PID {WORKER_B} (mclapply worker)",
    ]
