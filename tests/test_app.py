"""The live view's keys and views, driven with Textual's Pilot.

A recorded file (`xrtop view`) and a fake live source (a `SampleLog` the test appends to)
stand in for the sampler: what is tested here is the UI's logic and layout. The real
sampler under the real UI is tests/test_e2e_tmux.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import cast

import pytest
from conftest import rscript
from test_pprof import go_pprof
from textual.command import CommandList

from sampler.errors import NotRProcessError
from sampler.errors import UsageError
from sampler.model import SampleLog
from sampler.model import SamplerStats
from sampler.model import Stack
from sampler.rprof import RprofOptions
from sampler.rprof import read_rprof
from sampler.thread import State
from widgets.call_tree import CallTreeView
from widgets.hot_table import HotTable
from widgets.status import StatusHeader
from xrtop.app import KEYS
from xrtop.app import XrtopApp
from xrtop.live import run_live
from xrtop.processes_view import SampledProcesses
from xrtop.screens import ChoiceScreen
from xrtop.screens import HelpScreen
from xrtop.screenshots import DEMO_PROFILE  # xrtop record of xrtop/demo/demo.R
from xrtop.session import SamplingOptions
from xrtop.sources import FileSource

DATA = Path(__file__).parent / "data"
DEMO_LINES = DATA / "demo-rprof-lines.out"  # R's own Rprof, line and GC profiling

FIB = Stack(("fib", "fib", "middle", "outer"))
LOOP = Stack(("loop", "outer"))


class FakeLive:
    """A live source whose samples the test appends."""

    live = True

    def __init__(self) -> None:
        self.log = SampleLog(10_000)
        self.options = RprofOptions()
        self.title = "fake.R"
        self.pid: int | None = 4242
        self.r_version = "4.2.2"
        self.stream_path = ""
        self.idle_known = True
        self.gc_available: bool | None = True
        self.processes: SampledProcesses | None = None
        self.note: str | None = None
        self.rate = 100.0
        self.stopped = False
        self.state_value: State | None = State.RUNNING
        self._t = 0.0

    def add(self, stack: Stack, count: int = 1) -> None:
        for _ in range(count):
            self.log.add(stack, self._t)
            self._t += 0.01

    def state(self) -> State | None:
        return self.state_value

    def stats(self) -> SamplerStats:
        n = len(self.log)
        return SamplerStats(requested_hz=self.rate, samples=n, elapsed=n / 100)

    def last_stack(self) -> Stack | None:
        return self.log.stack_at(len(self.log) - 1) if len(self.log) else None

    def rate_hz(self) -> float:
        return self.rate

    def set_rate(self, hz: float) -> None:
        self.rate = hz

    def usage(self) -> tuple[float | None, int | None]:
        return 50.0, 1 << 20

    def stop(self) -> None:
        self.stopped = True

    def lines_note(self) -> str | None:
        return self.note


def file_app() -> XrtopApp:
    return XrtopApp(FileSource(DEMO_LINES, read_rprof(DEMO_LINES)), refresh_s=60)


def live_app(source: FakeLive) -> XrtopApp:
    return XrtopApp(source, refresh_s=60)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- views -------------------------------------------------------------------------------------


async def test_file_view_shows_rprof_totals_like_summaryrprof() -> None:
    profile = read_rprof(DEMO_LINES)
    app = file_app()
    async with app.run_test(size=(120, 40)):
        table = app.query_one(HotTable)
        # Every sample of R's own file is shown, and each function's total counts each
        # sample once, as summaryRprof's by.total does.
        assert table.samples == len(profile.stacks)
        totals = {r.key: r.total for r in table.rows}
        expected_fib = sum(1 for s in profile.stacks if "fib" in s.names)
        assert totals["fib"] == expected_fib
        assert table.keys[0] == max(table.rows, key=lambda r: (r.own, r.total)).key


async def test_views_switch_with_digits_and_tab() -> None:
    app = file_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.active_view == "top"
        await pilot.press("2")
        assert app.active_view == "tree"
        assert app.focused is app.query_one(CallTreeView)
        assert app.tree_view.keys, "the tree lists the hottest path"
        await pilot.press("3")
        assert app.active_view == "now"
        assert app.now_view.table.keys
        await pilot.press("tab")
        assert app.active_view == "flame"
        await pilot.press("tab")
        assert app.active_view == "procs"
        await pilot.press("tab")
        assert app.active_view == "top"


async def test_file_view_is_read_only() -> None:
    app = file_app()
    async with app.run_test(size=(100, 30)) as pilot:
        before = app.model.reset_at
        await pilot.press("r", "plus")
        assert app.model.reset_at == before
        assert app.check_action("reset", ()) is False
        assert app.check_action("rate", ()) is False
        footer_keys = {k for k, b in app.active_bindings.items() if b.binding.show}
        assert "r" not in footer_keys


async def test_by_line_splits_functions_by_line() -> None:
    app = file_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("l")
        keys = app.query_one(HotTable).keys
        assert any(isinstance(k, tuple) and k[0] == "fib" for k in keys)
        await pilot.press("l")
        assert "fib" in app.query_one(HotTable).keys


async def test_filter_as_you_type_and_escape_clears() -> None:
    app = file_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("slash", "f", "i", "b")
        table = app.query_one(HotTable)
        assert table.keys and all("fib" in str(k) for k in table.keys)
        await pilot.press("enter")
        assert app.focused is table
        assert app.model.view_state.needle == "fib"
        await pilot.press("2")  # the tree shows only paths to matches
        tree = app.tree_view.calltree
        assert tree is not None
        labels = {tree.key[cast(int, node)] for node in app.tree_view.keys}
        assert "fib" in labels and "simulate" not in labels
        status = app.query_one(StatusHeader)
        assert status.status is not None and status.status.filter_text == "fib"
        await pilot.press("1", "escape")
        assert app.model.view_state.needle == ""
        assert len(table.keys) > 5
        assert status.status.filter_text == "", "the header no longer names the filter"


async def test_help_screen_lists_every_key() -> None:
    app = file_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_tiny_terminals_and_resizes_never_crash() -> None:
    app = file_app()
    async with app.run_test(size=(80, 24)) as pilot:
        for view in ("1", "2", "3"):
            await pilot.press(view)
            for size in ((20, 5), (1, 1), (200, 60), (40, 10)):
                await pilot.resize_terminal(*size)
                await pilot.pause()
        assert app.is_running


# -- live keys ---------------------------------------------------------------------------------


async def test_pause_freezes_the_display_while_samples_arrive() -> None:
    source = FakeLive()
    source.add(FIB, 30)
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one(HotTable)
        assert table.samples == 30
        await pilot.press("space")
        source.add(LOOP, 20)
        app.refresh_data()
        assert table.samples == 30 and "loop" not in table.keys
        status = app.model.status()
        assert status.paused and status.waiting == 20
        await pilot.press("space")
        assert table.samples == 50 and "loop" in table.keys


async def test_reset_counts_from_now_and_saves_from_now(in_tmp: Path) -> None:
    source = FakeLive()
    source.add(FIB, 30)
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r")
        assert app.query_one(HotTable).samples == 0
        source.add(LOOP, 5)
        app.refresh_data()
        assert app.query_one(HotTable).keys == ["loop", "outer"]
        path, samples, _ = app.save()
        assert samples == 5
        assert [s.names for s in read_rprof(path).stacks] == [LOOP.names] * 5


async def test_rate_keys_step_the_sampling_rate() -> None:
    source = FakeLive()
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("plus")
        assert source.rate == 200
        await pilot.press("minus", "minus")
        assert source.rate == 50


async def test_save_writes_rprof_and_notifies(in_tmp: Path) -> None:
    source = FakeLive()
    source.add(FIB, 12)
    source.add(Stack(("idle_fn",), idle=True), 3)
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        await app.workers.wait_for_complete()
        await pilot.pause()
        files = list(in_tmp.glob("xrtop-4242-*.out"))
        assert len(files) == 1
        profile = read_rprof(files[0])
        assert len(profile.stacks) == 12  # idle samples are left out, as Rprof does
        texts = [n.message for n in app._notifications]
        assert any("Saved 12 samples" in t and files[0].name in t for t in texts), texts


async def test_export_collapsed_and_speedscope(in_tmp: Path) -> None:
    source = FakeLive()
    source.add(FIB, 4)
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("e")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("c")
        await app.workers.wait_for_complete()
        await pilot.press("e", "j")
        await app.workers.wait_for_complete()
    (collapsed,) = in_tmp.glob("*.collapsed.txt")
    assert collapsed.read_text() == "outer;middle;fib;fib 4\n"
    (speedscope,) = in_tmp.glob("*.speedscope.json")
    assert '"samples"' in speedscope.read_text()


async def test_export_pprof_keeps_what_was_recorded(in_tmp: Path) -> None:
    # GIVEN samples recorded with lines, shown by function
    source = FakeLive()
    source.options = RprofOptions(lines=True)
    source.add(Stack(("work", "outer"), (("w.R", 3), ("w.R", 9), None)), 5)
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        assert not app.model.view_state.by_line
        # WHEN they are exported as pprof (`p` in the export prompt)
        await pilot.press("e", "p")
        await app.workers.wait_for_complete()
    # THEN go tool pprof reads every sample, each function at its line, and the process
    (pprof,) = in_tmp.glob("xrtop-4242-*.pb.gz")
    raw = go_pprof(in_tmp, "-raw", str(pprof))
    assert re.search(r"^\s+5\s+50000000: 1 2 $", raw, re.M), raw
    assert "work w.R:3" in raw and "outer w.R:9" in raw and "pid:[4242]" in raw


async def test_quit_offers_to_save_unsaved_samples(in_tmp: Path) -> None:
    source = FakeLive()
    source.add(FIB, 7)
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("escape")  # cancel: still running
        assert app.is_running and not isinstance(app.screen, ChoiceScreen)
        await pilot.press("q", "s")
    (saved,) = in_tmp.glob("xrtop-4242-*.out")
    assert len(read_rprof(saved).stacks) == 7
    assert app.return_code == 0


async def test_quit_without_prompt_when_streaming_or_saved(in_tmp: Path) -> None:
    source = FakeLive()
    source.add(FIB, 3)
    source.stream_path = "stream.out"
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running
    assert list(in_tmp.iterdir()) == []


async def test_target_exit_keeps_the_view_and_says_so() -> None:
    source = FakeLive()
    source.add(FIB, 5)
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        source.state_value = State.EXITED
        app.refresh_data()
        await pilot.pause()
        header = app.query_one("#status")
        assert header.has_class("-exited")
        assert "[target exited]" in str(header.render())
        assert any("target exited" in n.message for n in app._notifications)
        assert app.query_one(HotTable).samples == 5  # still browsable


async def test_window_shows_only_recent_samples() -> None:
    source = FakeLive()
    source.add(FIB, 2000)  # 20 s at 100 Hz
    source.add(LOOP, 500)  # then 5 s of loop
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("w")  # last 10 s
        agg = app.model.current()
        assert agg.total["loop"] == 500
        assert agg.total["fib"] == 500  # the 5 s of fib inside the last 10 s
        assert app.query_one(HotTable).samples == agg.samples
        await pilot.press("w", "w")  # 60 s, then cumulative
        assert app.model.current().total["fib"] == 2000


async def test_start_session_failure_stays_in_the_app() -> None:
    app = XrtopApp(None, refresh_s=60)
    async with app.run_test(size=(100, 30)) as pilot:
        # The picker opens by itself with no source; leave it, then attach to a non-R PID.
        await pilot.pause()
        if app.screen is not app.screen_stack[0]:
            app.pop_screen()
        app.start_session(os.getpid())
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.is_running and app.source is None
        message = str(app.query_one("#message").render())
        assert f"Cannot profile PID {os.getpid()}" in message


async def test_show_picker_pushes_the_picker_screen() -> None:
    from xrtop.picker import PickerScreen

    source = FakeLive()
    source.add(FIB, 3)
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("p")
        assert isinstance(app.screen, ChoiceScreen)  # 3 samples were never saved
        assert not source.stopped
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, PickerScreen)
        assert source.stopped, "the current target is detached before picking another"


def test_run_live_attach_error_is_raised_before_the_ui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PID that is not R: the error comes back as an exception (cli prints it), and no
    # -o file is left behind.
    monkeypatch.setattr("xrtop.live.require_terminal", lambda: None)
    out = tmp_path / "x.out"
    with pytest.raises(NotRProcessError):
        run_live(os.getpid(), None, SamplingOptions(), str(out))
    assert not out.exists()


def test_run_live_without_a_terminal_is_a_usage_error() -> None:
    # Under pytest standard output is captured, so it is not a terminal.
    with pytest.raises(UsageError, match="needs a terminal"):
        run_live(os.getpid(), None, SamplingOptions(), None)


@pytest.mark.live
async def test_top_view_matches_summaryrprof_on_rs_own_file(tmp_path: Path) -> None:
    # GIVEN a profile written by R's own Rprof (no line profiling) and R's summary of it
    out = tmp_path / "r.out"
    csv = tmp_path / "summary.csv"
    rscript(
        f'Rprof("{out}", interval = 0.005)\n'
        "f <- function(n) if (n < 2) n else f(n - 1) + f(n - 2)\n"
        "g <- function() for (i in 1:40) f(16)\n"
        "h <- function() { x <- 0; for (i in 1:300000) x <- x + sqrt(i); x }\n"
        "g(); h()\n"
        "Rprof(NULL)\n"
        f's <- summaryRprof("{out}")\n'
        "t <- s$by.total; t$self <- s$by.self[rownames(t), 'self.time']\n"
        "t$self[is.na(t$self)] <- 0\n"
        f'write.csv(t[, c("total.time", "self")], "{csv}")\n'
    )
    expected: dict[str, tuple[float, float]] = {}
    for line in csv.read_text().splitlines()[1:]:
        name, total_text, own_text = line.rsplit(",", 2)
        expected[name.strip('"').replace('""', '"').strip('"')] = (
            float(total_text),
            float(own_text),
        )
    # WHEN xrtop views the file
    app = XrtopApp(FileSource(out, read_rprof(out)), refresh_s=60)
    async with app.run_test(size=(120, 40)):
        table = app.query_one(HotTable)
        step = table.seconds_per_sample
        shown = {r.name: (r.total * step, r.own * step) for r in table.rows}
    # THEN every function's total and own time is what summaryRprof says
    assert step == pytest.approx(0.005)
    assert set(shown) == set(expected)
    for name, (total, own) in expected.items():
        assert shown[name][0] == pytest.approx(total, abs=1e-6), name
        assert shown[name][1] == pytest.approx(own, abs=1e-6), name


async def test_command_palette_saves(in_tmp: Path) -> None:
    source = FakeLive()
    source.add(FIB, 4)
    app = live_app(source)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Save Rprof")
        # The palette searches asynchronously: wait (up to 10 s) until it lists a match.
        for _ in range(200):
            found = app.screen.query(CommandList)
            if found and found.first().option_count:
                break
            await pilot.pause(0.05)
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
    (saved,) = in_tmp.glob("xrtop-4242-*.out")
    assert len(read_rprof(saved).stacks) == 4


# -- idle samples, the busy and GC shares, missing source references ---------------------------

SLEEP = Stack(("Sys.sleep", "nap"), idle=True)
PROMPT = Stack((), idle=True)  # R waiting at its top-level prompt
GC_FIB = Stack(("fib", "fib", "middle", "outer"), gc=True)


def header_text(app: XrtopApp) -> str:
    return str(app.query_one("#status").render())


def shares(table: HotTable) -> list[float]:
    return [
        float(cell.rstrip("%"))
        for key in table.keys
        for cell in table._cells(key)[:2]  # own %, total %
    ]


async def test_idle_key_counts_idle_samples_in_and_out() -> None:
    # GIVEN a target busy in 60 samples (6 of them in GC) and waiting in 40
    source = FakeLive()
    source.add(FIB, 54)
    source.add(GC_FIB, 6)
    source.add(SLEEP, 30)
    source.add(PROMPT, 10)
    app = live_app(source)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one(HotTable)
        # THEN by default idle samples are left out of the percentages
        assert table.samples == 60
        assert "nap" not in table.keys and "<idle>" not in table.keys
        assert table._cells("fib")[1] == "100.0%"
        header = header_text(app)
        assert "60 samples shown" in header and "idle hidden" in header
        assert "busy 60%" in header and "GC 10.0%" in header
        # WHEN the user presses i
        await pilot.press("i")
        # THEN every sample counts, the waiting ones under their own rows
        assert app.model.view_state.include_idle and app.model.current().include_idle
        assert table.samples == 100
        assert {"nap", "Sys.sleep", "<idle>"} <= set(table.keys)
        assert table._cells("fib")[1] == "60.0%"
        assert table._cells("nap")[1] == "30.0%"
        assert all(0 <= share <= 100 for share in shares(table))
        assert sum(float(table._cells(k)[0].rstrip("%")) for k in table.keys) == pytest.approx(100)
        header = header_text(app)
        assert "100 samples shown" in header and "idle shown" in header
        # the busy share does not depend on what is shown; GC is a share of what is shown
        assert "busy 60%" in header and "GC 6.0%" in header
        # AND the tree and a window follow the same choice
        await pilot.press("2")
        assert app.tree_view.whole == 100
        await pilot.press("w")
        assert app.model.current().samples == 100  # the whole fake run is 1 s: all in the window
        # WHEN i is pressed again, idle samples are out again
        await pilot.press("i")
        assert app.model.current().samples == 60 and app.tree_view.whole == 60


async def test_idle_key_starts_included_with_the_idle_option() -> None:
    source = FakeLive()
    source.options = RprofOptions(idle=True)  # xrtop --idle
    source.add(FIB, 5)
    source.add(SLEEP, 5)
    app = live_app(source)
    async with app.run_test(size=(120, 30)) as pilot:
        assert app.query_one(HotTable).samples == 10
        await pilot.press("i")
        assert app.query_one(HotTable).samples == 5


async def test_idle_key_is_shown_and_in_help_and_palette() -> None:
    source = FakeLive()
    source.add(FIB, 3)
    app = live_app(source)
    async with app.run_test(size=(120, 30)) as pilot:
        shown = {k: b.binding.description for k, b in app.active_bindings.items() if b.binding.show}
        assert shown.get("i") == "Idle"
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Toggle idle samples" in titles
        await pilot.press("question_mark")
        body = str(app.screen.query_one("#help-body").render())
        assert any(line.split()[:1] == ["i"] and "idle" in line for line in body.splitlines())
        assert "I inverts" in body


async def test_help_shows_every_key_at_80x24() -> None:
    async with file_app().run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        box = pilot.app.screen.query_one("#help-box")
        assert len(str(box.query_one("#help-body").render()).splitlines()) == len(KEYS)
        # One row per key inside the border, and the box within the screen: nothing cut.
        assert box.region.height == len(KEYS) + 2 and box.region.bottom <= 24
        assert box.border_subtitle == "escape closes"


async def test_top_view_inverts_the_sort_with_shift_i() -> None:
    source = FakeLive()
    source.add(FIB, 5)
    source.add(LOOP, 2)
    app = live_app(source)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one(HotTable)
        assert table.descending and table.keys[0] == "fib"
        await pilot.press("I")
        assert not table.descending and table.keys[-1] == "fib"
        assert not app.model.view_state.include_idle, "I is not the idle key"


async def test_a_file_has_no_idle_key_and_no_busy_share() -> None:
    app = file_app()  # R's own Rprof with GC profiling: a GC share, no idle marker
    async with app.run_test(size=(120, 30)) as pilot:
        assert app.check_action("toggle_idle", ()) is False
        before = app.query_one(HotTable).samples
        await pilot.press("i")
        assert app.query_one(HotTable).samples == before
        header = header_text(app)
        assert "busy" not in header and "idle" not in header
        profile = read_rprof(DEMO_LINES)
        gc = sum(1 for s in profile.stacks if s.gc)
        assert gc > 0
        assert f"GC {100 * gc / len(profile.stacks):.1f}%" in header


async def test_file_without_gc_profiling_shows_no_gc_share() -> None:
    app = XrtopApp(FileSource(DEMO_PROFILE, read_rprof(DEMO_PROFILE)), refresh_s=60)
    async with app.run_test(size=(120, 30)):
        assert "GC" not in header_text(app)


async def test_gc_marker_unavailable_says_n_a() -> None:
    source = FakeLive()
    source.gc_available = False
    source.add(FIB, 3)
    app = live_app(source)
    async with app.run_test(size=(120, 30)):
        assert "GC n/a" in header_text(app)


async def test_header_fits_80_columns() -> None:
    # GIVEN a long run with every view-line item the header can show at once
    source = FakeLive()
    source.add(SLEEP, 5_000)
    source.add(FIB, 100_000)
    source.add(GC_FIB, 23_456)
    app = live_app(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("w", "i")
        await pilot.pause()
        header = app.query_one("#status")
        lines = str(header.render()).splitlines()
        assert len(lines) == 3
        # THEN each line fits the header's width (80 less the padding)
        width = header.content_size.width
        assert width == 78
        assert all(len(line) <= width for line in lines), lines
        assert "idle shown" in lines[2]
        assert "busy 100%" in lines[2] and "GC 100.0%" in lines[2]  # the last 10 s: all GC
        # AND wider, the roomier spelling comes back
        await pilot.resize_terminal(140, 30)
        await pilot.pause()
        assert "samples shown" in str(header.render())


async def test_missing_source_references_are_said_once() -> None:
    source = FakeLive()
    source.add(FIB, 3)
    app = live_app(source)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("l")
        # Not known yet (the sampler has just started reading lines): nothing said
        assert not [n for n in app._notifications if "keep.source" in n.message]
        source.note = "R keeps no source references ... options(keep.source = TRUE) ..."
        for _ in range(3):
            app.refresh_data()
        await pilot.pause()
        said = [n for n in app._notifications if "keep.source" in n.message]
        assert len(said) == 1
        assert "no source references" in header_text(app)
        await pilot.press("l")  # by function: the header no longer mentions it
        assert "source references" not in header_text(app)
        await pilot.press("l")  # by line again: not said a second time
        app.refresh_data()
        assert len([n for n in app._notifications if "keep.source" in n.message]) == 1


async def test_toggles_while_paused_recount_the_frozen_samples() -> None:
    # GIVEN a paused display while more samples arrive
    source = FakeLive()
    source.add(FIB, 2000)  # 20 s
    source.add(SLEEP, 500)  # 5 s
    app = live_app(source)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("space")
        source.add(LOOP, 300)
        app.refresh_data()
        # WHEN idle samples are counted in, lines asked for, and a window chosen
        await pilot.press("i")
        # THEN the same frozen samples are shown, counted the new way
        assert app.model.current().samples == 2500 and "loop" not in app.model.current().total
        await pilot.press("l", "l")
        assert app.model.current().samples == 2500
        await pilot.press("w")  # last 10 s of the frozen samples
        assert app.model.current().samples in (1000, 1001)  # 10 s at 100 Hz (float times)
        assert app.model.current().total["nap"] == 500
        assert app.model.status().waiting == 300
        # AND resuming takes in the waiting samples
        await pilot.press("space")
        assert app.model.current().total["loop"] == 300
