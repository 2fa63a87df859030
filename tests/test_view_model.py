"""What the live view shows, tested without a terminal: `xrtop.view_model.ViewModel` over a
fake live source (samples the test appends) or a recorded file.

The same behaviours seen through the keys and widgets are tests/test_app.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_app import FIB
from test_app import LOOP
from test_app import SLEEP
from test_app import FakeLive
from test_model import counts_of

from sampler.model import Aggregate
from sampler.model import Stack
from sampler.rprof import read_rprof
from sampler.thread import MAX_HZ
from sampler.thread import MIN_HZ
from sampler.thread import State
from xrtop import view_model
from xrtop.sources import FileSource
from xrtop.view_model import RATES
from xrtop.view_model import ViewModel
from xrtop.view_model import state_text
from xrtop.view_model import step_rate

DEMO_LINES = Path(__file__).parent / "data" / "demo-rprof-lines.out"


def model_of(*runs: tuple[Stack, int]) -> tuple[FakeLive, ViewModel]:
    """A fake live source holding `runs` (stack, count), 100 samples a second, and a
    model that has taken them in."""
    source = FakeLive()
    for stack, count in runs:
        source.add(stack, count)
    model = ViewModel(source)
    model.take_in_new()
    return source, model


def test_new_samples_are_taken_in_and_mark_the_view_dirty() -> None:
    source, model = model_of((FIB, 3))
    assert model.current().samples == 3 and model.dirty
    model.dirty = False
    model.take_in_new()
    assert not model.dirty, "nothing new: nothing to draw"
    source.add(LOOP, 2)
    model.take_in_new()
    assert model.dirty and model.current().total["loop"] == 2


def test_pause_freezes_the_samples_and_counts_the_waiting_ones() -> None:
    source, model = model_of((FIB, 30))
    model.toggle_pause()
    source.add(LOOP, 20)
    model.take_in_new()
    assert model.current().samples == 30 and "loop" not in model.current().total
    status = model.status()
    assert status.paused and status.waiting == 20
    assert model.now_stack() == FIB, "the Now view shows the last sample shown"
    model.toggle_pause()
    model.take_in_new()
    assert model.current().total["loop"] == 20 and model.status().waiting == 0
    assert model.now_stack() == LOOP


def test_reset_counts_from_the_next_sample() -> None:
    source, model = model_of((FIB, 30))
    model.reset()
    assert model.reset_at == 30 and model.current().samples == 0
    assert not model.unsaved(0), "nothing taken since the reset"
    source.add(LOOP, 5)
    model.take_in_new()
    assert dict(model.current().total) == {"loop": 5, "outer": 5}
    assert model.unsaved(0) and not model.unsaved(1)


def test_window_cycles_through_the_last_10_and_60_seconds() -> None:
    _, model = model_of((FIB, 2000), (LOOP, 500))  # 20 s of fib, then 5 s of loop
    model.cycle_window()
    assert model.view_state.window == 10.0
    agg = model.current()
    assert agg.total["loop"] == 500 and agg.total["fib"] == 500
    assert model.status().window == 10.0
    model.cycle_window()
    assert model.current().total["fib"] == 2000, "60 s hold the whole run"
    model.cycle_window()
    assert model.view_state.window is None and model.current() is model.agg


def test_idle_toggle_counts_idle_samples_in_and_out() -> None:
    _, model = model_of((FIB, 6), (SLEEP, 4))
    assert model.current().samples == 6
    assert model.toggle_idle()
    model.take_in_new()
    assert model.current().samples == 10 and model.current().total["nap"] == 4
    assert not model.tree_reset, "the tree keeps what was open"
    assert model.toggle_idle()
    model.take_in_new()
    assert model.current().samples == 6


def test_toggling_back_shows_the_aggregate_of_before_with_the_samples_since() -> None:
    source, model = model_of((FIB, 6), (SLEEP, 4))
    by_function = model.agg
    model.toggle_by_line()
    assert model.agg is not by_function and model.agg.by_line
    assert model.current().samples == 6, "counted again at once, not read again"
    source.add(LOOP, 3)
    model.take_in_new()
    model.toggle_by_line()
    assert model.agg is by_function and not model.agg.by_line
    model.take_in_new()
    assert model.current().samples == 9 and model.current().total["loop"] == 3
    model.toggle_idle()  # another way of counting: not the one of before
    assert model.agg is not by_function and model.current().samples == 13


def test_the_ways_a_toggle_leads_to_are_counted_ahead() -> None:
    source, model = model_of((FIB, 6), (SLEEP, 4))
    while model.fold_ahead():
        pass
    source.add(LOOP, 2)
    model.take_in_new()
    model.fold_ahead()  # kept up to date with the new samples
    model.toggle_by_line()
    assert not model.agg.fold_due(1, tree=False), "its function counts are built"
    model.take_in_new()
    assert model.current().by_line and model.current().total["loop"] == 2
    while model.fold_ahead():  # now the ways one toggle away from by-line
        pass
    model.toggle_idle()
    assert not model.agg.fold_due(1, tree=False), "and those of the idle toggle"
    model.take_in_new()
    assert model.current().samples == 12 and model.current().total["nap"] == 4


def test_the_key_right_after_a_toggle_finds_its_aggregate_built() -> None:
    source, model = model_of((FIB, 6), (SLEEP, 4), (LOOP, 3))
    while model.fold_ahead():
        pass
    # No work ahead between the toggles: each finds the way it leads to counted, with its
    # function counts and its tree, the same as counting every sample that way.
    for toggle in ("by_line", "idle", "by_line", "idle", "idle"):
        getattr(model, f"toggle_{toggle}")()
        shown = model.agg
        assert not shown.due, f"after {toggle}: built ahead"
        fresh = Aggregate(source.log, by_line=shown.by_line, include_idle=shown.include_idle)
        fresh.update()
        assert counts_of(shown) == counts_of(fresh)


def test_window_aggregates_are_reused_while_they_hold_the_same_samples() -> None:
    source, model = model_of((FIB, 2000), (LOOP, 500))
    model.cycle_window()
    ten = model.current()
    model.cycle_window()
    model.cycle_window()
    model.cycle_window()
    assert model.current() is ten, "a file or a pause: the same samples"
    source.add(LOOP, 1)
    model.take_in_new()
    assert model.current() is not ten and model.current().total["loop"] == 501


def test_work_is_folded_ahead_for_the_shown_aggregate_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(view_model, "FOLD_AHEAD_SLICE_S", 0.0)  # one step a call
    _, model = model_of((FIB, 2000), (LOOP, 500))
    model.cycle_window()
    window = model.current()
    # Two aggregates, each with its function counts and its tree left.
    assert model.fold_ahead() and window.due
    assert model.fold_ahead() and not window.due, "the window (shown) is done first"
    assert model.agg.due and not model.fold_ahead()
    assert not model.agg.due


def test_a_file_has_no_idle_toggle_and_states_it_is_a_file() -> None:
    profile = read_rprof(DEMO_LINES)
    model = ViewModel(FileSource(DEMO_LINES, profile))
    model.take_in_new()
    before = model.current().samples
    assert not model.toggle_idle()
    assert model.current().samples == before == len(profile.stacks)
    status = model.status()
    assert status.state == "file (read-only)" and not status.idle_known
    assert not model.unsaved(0), "a file loses nothing when closed"


def test_toggles_while_paused_recount_the_frozen_samples() -> None:
    source, model = model_of((FIB, 2000), (SLEEP, 500))
    model.toggle_pause()
    source.add(LOOP, 300)
    model.take_in_new()
    model.toggle_idle()
    assert model.current().samples == 2500 and "loop" not in model.current().total
    model.toggle_by_line()
    model.toggle_by_line()
    assert model.current().samples == 2500
    model.cycle_window()
    assert model.current().samples in (1000, 1001)  # 10 s at 100 Hz (float times)
    assert model.status().waiting == 300


def test_filter_is_stripped_and_shown_in_the_status() -> None:
    _, model = model_of((FIB, 1))
    model.dirty = False
    assert model.set_filter("  fib ")
    assert model.view_state.needle == "fib" and model.dirty
    assert model.status().filter_text == "fib"
    model.dirty = False
    assert not model.set_filter("fib  "), "the same filter: nothing to redraw"
    assert not model.dirty


def test_seconds_per_sample_follows_the_sample_times() -> None:
    source, model = model_of((FIB, 1))
    assert model.seconds_per_sample(model.current()) == pytest.approx(0.01), "one: interval"
    for i in range(1, 11):  # 20 ms apart: the rate was lowered
        source.log.add(FIB, 0.02 * i)
    model.take_in_new()
    assert model.seconds_per_sample(model.current()) == pytest.approx(0.02)


def test_lines_note_is_due_once_and_only_by_line() -> None:
    source, model = model_of((FIB, 1))
    source.note = "R keeps no source references"
    assert model.lines_note_due() is None, "rows are by function"
    model.toggle_by_line()
    assert model.lines_note_due() == source.note
    assert model.lines_note_due() is None, "said once"
    assert model.status().no_source
    model.set_source(source)  # rows stay by line
    assert model.lines_note_due() == source.note, "a new source is told afresh"


def test_state_changes_are_reported_once_each() -> None:
    source, model = model_of((FIB, 1))
    assert model.state_change() == (True, State.RUNNING)
    assert model.state_change() == (False, State.RUNNING)
    source.state_value = State.EXITED
    assert model.state_change() == (True, State.EXITED)
    assert model.status().state == "target exited"
    assert state_text(None) == "file (read-only)"


def test_set_source_starts_afresh() -> None:
    _, model = model_of((FIB, 10))
    model.toggle_pause()
    model.reset()
    other = FakeLive()
    other.add(LOOP, 4)
    model.set_source(other)
    model.take_in_new()
    assert model.reset_at == 0 and not model.view_state.paused
    assert model.current().samples == 4 and model.tree_reset


def test_unsaved_only_for_a_live_source_that_is_not_streamed() -> None:
    source, model = model_of((FIB, 3))
    assert model.unsaved(0)
    source.stream_path = "stream.out"
    assert not model.unsaved(0)
    model.set_source(None)
    assert not model.unsaved(0) and model.now_stack() is None


@pytest.mark.parametrize(
    ("now", "step", "expected"),
    [
        (100, 1, 200),
        (100, -1, 50),
        (150, 1, 200),
        (150, -1, 100),
        (RATES[-1], 1, MAX_HZ),
        (RATES[0], -1, MIN_HZ),
    ],
)
def test_rate_steps_along_the_ladder(now: float, step: int, expected: float) -> None:
    assert step_rate(now, step) == expected
