"""The picker screen driven with Textual's Pilot over real R processes: filter as you type,
sort, Enter dismisses with the PID, a process that cannot be profiled explains why, and an
empty machine says how to start R."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import RLauncher
from conftest import traced_by_another_program
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Static

from sampler.discover import Discovery
from sampler.model import RProcessInfo
from sampler.thread import State
from widgets.process_picker import ProcessPicker
from widgets.process_picker import fit_command
from widgets.process_picker import format_bytes
from widgets.process_picker import format_elapsed
from widgets.process_picker import matches
from widgets.process_picker import order
from xrtop.app import XrtopApp
from xrtop.picker import PickerScreen
from xrtop.picker import ProblemScreen
from xrtop.screens import ChoiceScreen
from xrtop.session import SamplingOptions
from xrtop.sources import LiveSource

ROOT = Path(__file__).parent.parent


class PickerApp(App[int]):
    """Just the picker; exits with the chosen PID."""

    def __init__(self, discovery: Discovery | None = None) -> None:
        super().__init__()
        self.discovery = discovery

    def on_mount(self) -> None:
        self.push_screen(PickerScreen(discovery=self.discovery, interval=0.3), self.exit)


def picker_of(app: App[int]) -> ProcessPicker:
    return app.screen.query_one(ProcessPicker)


async def wait_until(pilot: Pilot[int], predicate, what: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def shown_pids(app: App[int]) -> list[int]:
    return [r.pid for r in picker_of(app).shown]


async def test_filter_as_you_type_and_enter_returns_the_pid(r_launcher: RLauncher) -> None:
    # GIVEN two R scripts running
    busy = r_launcher.start("busy.R", "60")
    shapes = r_launcher.start("shapes.R", "60")
    app = PickerApp()
    async with app.run_test(size=(140, 30)) as pilot:
        await wait_until(
            pilot,
            lambda: {busy.pid, shapes.pid} <= set(shown_pids(app)),
            "both R processes to be listed",
        )
        # WHEN the user types part of one script's name
        await pilot.press(*"shap")
        # THEN only matching processes are shown, and the filter is on screen
        pids = shown_pids(app)
        assert shapes.pid in pids
        assert busy.pid not in pids
        assert all("shap" in r.command.lower() for r in picker_of(app).shown)
        filter_line = str(app.screen.query_one("#picker-filter", Static).render())
        assert "shap" in filter_line
        # AND the filter survives a refresh
        scans = app.screen.scans  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: app.screen.scans > scans + 1, "two more scans")  # type: ignore[attr-defined]
        assert busy.pid not in shown_pids(app)
        # Backspace edits it; Escape clears it
        await pilot.press("backspace", "backspace", "backspace", "backspace")
        assert busy.pid in shown_pids(app)
        await pilot.press(*"busy", "escape")
        assert {busy.pid, shapes.pid} <= set(shown_pids(app))
        # WHEN the user filters down to shapes.R and presses Enter
        await pilot.press(*"shapes.R")
        await wait_until(pilot, lambda: shown_pids(app)[:1] == [shapes.pid], "shapes first")
        await pilot.press("enter")
        await pilot.pause()
    # THEN the picker returned its PID
    assert app.return_value == shapes.pid


async def test_sorted_by_cpu_by_default_and_resortable(r_launcher: RLauncher) -> None:
    busy = r_launcher.start("busy.R", "60")
    app = PickerApp()
    async with app.run_test(size=(140, 30)) as pilot:
        await wait_until(pilot, lambda: busy.pid in shown_pids(app), "busy.R to be listed")
        picker = picker_of(app)
        assert picker.sort_key == "cpu"
        cpu = [r.cpu_percent for r in picker.shown]
        assert cpu == sorted(cpu, reverse=True)
        # F6 moves the sort to the next column (MEM), ctrl+r reverses it
        await pilot.press("f6")
        assert picker.sort_key == "mem"
        mem = [r.rss for r in picker.shown]
        assert mem == sorted(mem, reverse=True)
        await pilot.press("ctrl+r")
        mem = [r.rss for r in picker.shown]
        assert mem == sorted(mem)


async def test_enter_on_traced_process_explains_and_stays(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN an R process another program traces (xrtop cannot attach to it)
    run = r_launcher.start("busy.R", "60")
    with traced_by_another_program(run, tmp_path) as other:
        app = PickerApp()
        async with app.run_test(size=(140, 30)) as pilot:
            await wait_until(pilot, lambda: run.pid in shown_pids(app), "the R process")
            await pilot.press(*str(run.pid))
            await wait_until(pilot, lambda: shown_pids(app)[:1] == [run.pid], "only it")
            row = picker_of(app).shown[0]
            assert not row.profilable
            # WHEN the user presses Enter on it
            await pilot.press("enter")
            await pilot.pause()
            # THEN a dialog says why (who traces it) and what to do, and the app stays
            assert isinstance(app.screen, ProblemScreen)
            text = " ".join(str(w.render()) for w in app.screen.query(Static))
            assert f"PID {other.pid}" in text
            assert "To fix it" in text and "Detach or quit" in text
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, PickerScreen)
            assert app.is_running
    assert app.return_value is None


async def test_app_without_pid_picks_attaches_and_returns_to_picker(
    r_launcher: RLauncher,
) -> None:
    # GIVEN an R workload and xrtop started without a PID
    run = r_launcher.start("busy.R", "60")
    app = XrtopApp(None, sampling=SamplingOptions(), refresh_s=0.2)
    async with app.run_test(size=(140, 35)) as pilot:
        # THEN the picker opens and lists it
        await wait_until(pilot, lambda: isinstance(app.screen, PickerScreen), "the picker")
        await wait_until(pilot, lambda: run.pid in shown_pids(app), "busy.R in the list")
        # WHEN the user types part of its script name (letters that are keys of the live
        # view too: the filter takes them) and presses Enter
        await pilot.press(*"busy", "space", *str(run.pid))
        await wait_until(pilot, lambda: shown_pids(app)[:1] == [run.pid], "it alone on top")
        await pilot.press("enter")
        # THEN the live view attaches to it and shows its hot functions
        await wait_until(
            pilot,
            lambda: isinstance(app.source, LiveSource) and app.source.pid == run.pid,
            "the live view to attach",
        )
        assert not isinstance(app.screen, PickerScreen)
        await wait_until(
            pilot,
            lambda: "fib" in {r.name for r in app.model.current().rows()},
            "fib in the profile",
        )
        assert run.tracer() != 0
        source = app.source
        # WHEN the user presses p in the live view (and, asked about the unsaved samples,
        # p again: pick without saving)
        await pilot.press("p")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, (PickerScreen, ChoiceScreen)),
            "the picker or the question",
        )
        if isinstance(app.screen, ChoiceScreen):
            await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PickerScreen), "the picker again")
        # THEN the target was detached first, and left running
        assert app.source is None
        assert source is not None and source.state() is State.DETACHED
        assert run.tracer() == 0
        assert run.state() in ("R", "S")
        await wait_until(pilot, lambda: run.pid in shown_pids(app), "busy.R listed again")
        # AND Escape in the picker (no filter, nothing attached) quits xrtop
        await pilot.press("escape")
        await pilot.pause()
    assert run.tracer() == 0
    assert run.alive()


async def test_no_r_processes_says_how_to_start_one(tmp_path: Path) -> None:
    # An empty /proc stands in for a machine without R (this one has other tests' R).
    app = PickerApp(Discovery(proc=str(tmp_path)))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: app.screen.scans > 0, "a scan")  # type: ignore[attr-defined]
        await pilot.pause()
        empty = app.screen.query_one("#picker-empty", Static)
        assert empty.display
        text = str(empty.render())
        assert "No R processes" in text
        assert "xrtop -- Rscript" in text


def row(pid: int, **kw: object) -> RProcessInfo:
    base: dict[str, object] = {
        "pid": pid,
        "user": "ann",
        "cpu_percent": 1.0,
        "rss": 1 << 20,
        "elapsed": 5.0,
        "name": "R",
        "command": "analysis.R",
        "r_version": "4.3.1",
        "container": False,
        "embedded": False,
        "profilable": True,
    }
    base.update(kw)
    return RProcessInfo(**base)  # type: ignore[arg-type]


def test_matching_needs_every_word() -> None:
    r = row(4242, command="models/fit.R --fast", container=True)
    assert matches(r, "fit")
    assert matches(r, "FIT.r 4242")
    assert matches(r, "container r4.3")
    assert not matches(r, "fit other")
    assert matches(r, "")


def test_order_is_stable_and_directional() -> None:
    rows = [row(3, cpu_percent=5), row(1, cpu_percent=5), row(2, cpu_percent=90)]
    assert [r.pid for r in order(rows, "cpu")] == [2, 1, 3]
    assert [r.pid for r in order(rows, "cpu", reverse=True)] == [1, 3, 2]
    assert [r.pid for r in order(rows, "pid")] == [1, 2, 3]
    versions = [row(1, r_version="4.10.0"), row(2, r_version="4.9.1"), row(3, r_version=None)]
    assert [r.pid for r in order(versions, "r")] == [1, 2, 3]
    with pytest.raises(KeyError):
        order(rows, "nope")


def test_formats() -> None:
    assert format_bytes(512) == "512B"
    assert format_bytes(85_733_376) == "81.8M"
    assert format_bytes(3 << 30) == "3.0G"
    assert format_elapsed(7.9) == "0:07"
    assert format_elapsed(3723) == "1:02:03"
    assert format_elapsed(3 * 86400 + 4 * 3600) == "3d04h"


def test_fit_command_keeps_the_script_name() -> None:
    cmd = "/home/ann/projects/models/fit.R --fast"
    assert fit_command(cmd, 80) == cmd
    short = fit_command(cmd, 20)
    assert short == "…models/fit.R --fast"
    assert len(short) == 20
    # the script's own name survives even when it does not fit
    assert fit_command(cmd, 10).startswith("…/fit.R")
    # commands that are not a path, and tiny widths, are left to the table to crop
    assert fit_command("python3 -c 'import rpy2'", 10) == "python3 -c 'import rpy2'"
    assert fit_command(cmd, 5) == cmd
