"""The views' pure formatting (widgets.format) and the widgets in a harness app."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from textual.app import App
from textual.app import ComposeResult

from sampler.model import Aggregate
from sampler.model import CallTree
from sampler.model import FunctionRow
from sampler.model import SampleLog
from sampler.model import Stack
from widgets.call_tree import CallTreeView
from widgets.format import TOP_COLUMNS
from widgets.format import Column
from widgets.format import Status
from widgets.format import flatten_tree
from widgets.format import fmt_bytes
from widgets.format import fmt_pct
from widgets.format import fmt_seconds
from widgets.format import key_label
from widgets.format import matching_nodes
from widgets.format import now_caption
from widgets.format import now_rows
from widgets.format import pct
from widgets.format import row_matches
from widgets.format import sort_rows
from widgets.format import status_lines
from widgets.format import top_cells
from widgets.format import tree_cells
from widgets.hot_table import HotTable
from widgets.now_view import NowView
from widgets.row_table import RowTable
from widgets.row_table import column_widths
from widgets.row_table import fit

# -- numbers and labels ------------------------------------------------------------------------


@given(st.integers(-5, 10_000), st.integers(-5, 10_000))
def test_pct_is_always_within_0_and_100(count: int, whole: int) -> None:
    assert 0.0 <= pct(count, whole) <= 100.0


def test_pct_of_part_and_clamping() -> None:
    assert fmt_pct(1, 8) == "12.5%"
    assert fmt_pct(9, 8) == "100.0%"  # never past 100 %, whatever the caller passes
    assert fmt_pct(3, 0) == "0.0%"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.0123, "12ms"),
        (0.9994, "999ms"),
        (1.0, "1.00s"),
        (12.34, "12.3s"),
        (185, "3m05s"),
        (7260, "2h01m"),
    ],
)
def test_fmt_seconds(seconds: float, text: str) -> None:
    assert fmt_seconds(seconds) == text


def test_fmt_bytes() -> None:
    assert fmt_bytes(812) == "812 B"
    assert fmt_bytes(12_595) == "12.3 KiB"
    assert fmt_bytes(3 * 1024**3) == "3.0 GiB"


def test_key_label_by_function_and_by_line() -> None:
    assert key_label("fib") == "fib"
    assert key_label(("fib", "/home/me/demo.R", 6)) == "fib @ demo.R:6"


# -- the Top view ------------------------------------------------------------------------------


def rows() -> list[FunctionRow]:
    return [
        FunctionRow("b", "b", own=5, total=10, location=("x.R", 2)),
        FunctionRow("a", "a", own=5, total=10, location=None),
        FunctionRow("c", "c", own=1, total=30, location=("w.R", 9)),
        FunctionRow("d", "d", own=20, total=20, location=("x.R", 1)),
    ]


def names(ordered: list[FunctionRow]) -> list[str]:
    return [r.name for r in ordered]


def test_sort_by_own_then_total_then_name() -> None:
    assert names(sort_rows(rows(), "own_pct", descending=True)) == ["d", "a", "b", "c"]
    assert names(sort_rows(rows(), "own_pct", descending=False)) == ["c", "a", "b", "d"]


def test_sort_by_total_samples_name_and_location() -> None:
    assert names(sort_rows(rows(), "total_pct", True)) == ["c", "d", "a", "b"]
    assert names(sort_rows(rows(), "samples", True)) == ["c", "d", "a", "b"]
    assert names(sort_rows(rows(), "function", False)) == ["a", "b", "c", "d"]
    # Unknown locations go last; known ones sort by file then line.
    assert names(sort_rows(rows(), "location", False)) == ["c", "d", "b", "a"]


def test_every_top_column_sorts() -> None:
    for column in TOP_COLUMNS:
        assert sorted(names(sort_rows(rows(), column.key, True))) == ["a", "b", "c", "d"]


def test_filter_matches_name_or_location_case_insensitively() -> None:
    kept = [r.name for r in rows() if row_matches(r, "X.r")]
    assert kept == ["b", "d"]
    assert all(row_matches(r, "") for r in rows())


def test_top_cells_show_shares_times_and_samples() -> None:
    row = FunctionRow("fib", "fib", own=25, total=50, location=("/a/demo.R", 6))
    assert top_cells(row, 200, 0.01) == (
        "12.5%",
        "25.0%",
        "250ms",
        "500ms",
        "50",
        "fib",
        "demo.R:6",
    )


def test_recursion_never_shows_more_than_100_percent() -> None:
    # GIVEN samples deep in recursion (fib called by fib called by fib)
    log = SampleLog.from_stacks([Stack(("fib", "fib", "fib", "main"))] * 10, 10_000)
    agg = Aggregate(log)
    agg.update()
    # THEN every share is at most 100 %
    for row in agg.rows():
        for cell in top_cells(row, agg.samples, 0.01)[:2]:
            assert float(cell.rstrip("%")) <= 100.0
    assert {r.name: r.total for r in agg.rows()} == {"fib": 10, "main": 10}


# -- the Tree view -----------------------------------------------------------------------------


def sample_tree() -> CallTree:
    tree = CallTree()
    tree.add_path(["main", "f", "g"], 6)
    tree.add_path(["main", "f"], 1)
    tree.add_path(["main", "h"], 3)
    tree.add_path(["other"], 2)
    tree.check()
    return tree


def test_flatten_lists_only_expanded_nodes_hottest_first() -> None:
    tree = sample_tree()
    main = tree.children[0]["main"]
    f = tree.children[main]["f"]
    assert [tree.key[x.node] for x in flatten_tree(tree, set())] == ["main", "other"]
    lines = flatten_tree(tree, {main, f})
    assert [(tree.key[x.node], x.depth) for x in lines] == [
        ("main", 0),
        ("f", 1),
        ("g", 2),
        ("h", 1),
        ("other", 0),
    ]
    assert [x.expanded for x in lines] == [True, True, False, False, False]


def test_flatten_a_focused_subtree_starts_at_that_node() -> None:
    tree = sample_tree()
    main = tree.children[0]["main"]
    f = tree.children[main]["f"]
    lines = flatten_tree(tree, {f}, root=f)
    assert [tree.key[x.node] for x in lines] == ["f", "g"]


def test_tree_cells() -> None:
    tree = sample_tree()
    main = tree.children[0]["main"]
    f = tree.children[main]["f"]
    line = flatten_tree(tree, {main})[1]
    assert line.node == f
    assert tree_cells(tree, line, 12) == ("58.3%", "8.3%", "7", "  ▸ f")


def test_matching_nodes_keep_the_path_to_each_match() -> None:
    tree = sample_tree()
    found = {tree.key[n] for n in matching_nodes(tree, "G")}
    assert found == {"main", "f", "g"}
    assert matching_nodes(tree, "nothing") == set()


# -- the Now view and the header ---------------------------------------------------------------


def test_now_rows_innermost_first_with_gc_marker() -> None:
    stack = Stack(("g", "f"), sites=(("a.R", 3), ("a.R", 9), None), gc=True)
    assert now_rows(stack) == [("", "<GC>", ""), ("1", "g", "a.R:3"), ("2", "f", "a.R:9")]
    assert now_rows(None) == []
    assert "idle" in now_caption(Stack((), idle=True))
    assert "2 frames" in now_caption(stack)


def test_status_lines_show_state_rates_and_pause() -> None:
    status = Status(
        title="script.R",
        pid=42,
        r_version="4.2.2",
        state="running",
        elapsed=65,
        samples=6400,
        shown=6000,
        requested_hz=100,
        achieved_hz=98.44,
        errors=3,
        cpu_percent=99.0,
        rss_bytes=64 * 1024**2,
        paused=True,
        waiting=120,
        window=10.0,
        filter_text="fib",
    )
    one, two, three = status_lines(status)
    assert one == "script.R  PID 42  R 4.2.2  [running · PAUSED: 120 new samples]"
    assert two == ("elapsed 1m05s  samples 6400  rate 100→98.4 Hz  errors 3  CPU 99%  mem 64.0 MiB")
    assert three.startswith("last 10.0s  ·  by function  ·  6000 samples shown")
    assert "filter 'fib'" in three


def test_status_lines_busy_and_gc_shares_and_compact_spelling() -> None:
    live = Status(
        title="s.R", pid=1, r_version="4.5.0", state="running", elapsed=1.0,
        samples=1000, shown=730, requested_hz=100, achieved_hz=100, errors=0,
        idle=270, in_range=1000, idle_known=True, gc=31, gc_available=True,
    )  # fmt: skip
    three = status_lines(live)[2]
    # busy: samples not idle / all samples; GC: samples in GC / samples shown
    assert "idle hidden  ·  busy 73%  ·  GC 4.2%" in three
    shown = replace(live, shown=1000, include_idle=True)
    assert "idle shown  ·  busy 73%  ·  GC 3.1%" in status_lines(shown)[2]
    assert "GC n/a" in status_lines(replace(live, gc_available=False))[2]
    # a file: no idle marker, no GC profiling: neither share
    recorded = replace(live, idle_known=False, gc_available=None, idle=0)
    assert "busy" not in status_lines(recorded)[2] and "GC" not in status_lines(recorded)[2]
    # WHEN the width is short, the compact spelling is taken (and only then)
    narrow = status_lines(live, 60)
    assert narrow[2] == "cumulative · by function · 730 shown · idle hidden · busy 73% · GC 4.2%"
    assert "errors 0" in narrow[1]  # it fits in 60 columns
    assert "errors" not in status_lines(live, 50)[1]
    assert status_lines(live, 200) == status_lines(live)
    assert "errors 2" in status_lines(replace(live, errors=2), 40)[1]


# -- table layout ------------------------------------------------------------------------------


def test_fit_pads_and_cuts_to_exact_width() -> None:
    assert fit("abc", 5, right=True) == "  abc"
    assert fit("abc", 5, right=False) == "abc  "
    assert fit("abcdef", 4, right=False) == "abc…"
    assert fit("abc", 0, right=False) == ""
    assert fit("日本語", 4, right=False) == "日 …"  # 4 cells: a wide char is never split


def test_column_widths_give_the_rest_to_the_flexible_column() -> None:
    columns = [Column("a", "A", 5), Column("b", "B", 0), Column("c", "C", 3)]
    assert column_widths(columns, 20) == [5, 10, 3]
    assert column_widths(columns, 4) == [5, 0, 3]  # too narrow: nothing left, no error


# -- widgets in a harness app ------------------------------------------------------------------


class Harness(App[None]):
    def __init__(self, widget: RowTable | NowView) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


async def test_hot_table_sorts_on_header_click_and_keeps_the_cursor() -> None:
    table = HotTable()
    async with Harness(table).run_test(size=(100, 12)) as pilot:
        table.show(rows(), 40, 0.01)
        assert table.keys == ["d", "a", "b", "c"]
        table.focus()
        await pilot.press("down", "down")
        assert table.cursor_key == "b"
        # WHEN the user clicks the "Total %" heading (columns: 8 + 1 space, then 8)
        await pilot.click(table, offset=(12, 0))
        # THEN rows sort by total, marked in the header, and the cursor stays on "b"
        assert table.sort_column == "total_pct"
        assert table.keys == ["c", "d", "a", "b"]
        assert table.cursor_key == "b"
        # AND a second click inverts the order
        await pilot.click(table, offset=(12, 0))
        assert table.keys == ["a", "b", "d", "c"]  # ties stay A-Z
        await pilot.press("n")
        assert table.sort_column == "function" and table.keys == ["a", "b", "c", "d"]
        await pilot.press("greater_than_sign")
        assert table.sort_column == "location"


async def test_hot_table_filters_and_survives_tiny_sizes() -> None:
    table = HotTable()
    async with Harness(table).run_test(size=(100, 12)) as pilot:
        table.show(rows(), 40, 0.01, needle="x.r")
        assert table.keys == ["d", "b"]
        for size in ((10, 3), (1, 1), (200, 5)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
        assert table.cursor_key == "d"


async def test_hot_table_shown_the_same_rows_again_sorts_nothing_again() -> None:
    table = HotTable()
    shown = rows()
    async with Harness(table).run_test(size=(100, 12)):
        table.show(shown, 40, 0.01)
        keys = table.keys
        table.show(shown, 40, 0.01)  # a view switch or a redraw
        assert table.keys is keys
        table.show(shown, 40, 0.01, needle="x.r")
        assert table.keys == ["d", "b"]
        table.show(shown, 41, 0.01, needle="x.r")  # one sample more
        assert table.samples == 41


async def test_call_tree_opens_hottest_path_and_toggles() -> None:
    tree = sample_tree()
    view = CallTreeView()
    async with Harness(view).run_test(size=(80, 15)) as pilot:
        view.show(tree, 12)
        main = tree.children[0]["main"]
        f = tree.children[main]["f"]
        g = tree.children[f]["g"]
        # The hottest path main → f → g is open without any key.
        assert view.keys[:3] == [main, f, g]
        view.focus()
        # enter on main closes it (and stops following the hottest path)
        await pilot.press("enter")
        assert view.keys == [main, tree.children[0]["other"]]
        await pilot.press("right")
        assert main in view.expanded
        await pilot.press("C")
        assert view.expanded == set()
        await pilot.press("E")
        assert {main, f} <= view.expanded
        # focus on f: only its subtree; u goes back with the cursor on f
        view.move_to(f)
        await pilot.press("f")
        assert view.keys == [f, g]
        await pilot.press("u")
        assert view.cursor_key == f and view.keys[0] == main


async def test_call_tree_shown_the_same_samples_again_lists_nothing_again() -> None:
    tree = sample_tree()
    view = CallTreeView()
    async with Harness(view).run_test(size=(80, 15)):
        view.show(tree, 12)
        keys = view.keys
        view.show(tree, 12)  # a view switch or a redraw
        assert view.keys is keys
        # WHEN samples arrive in the same tree (counted in place): other is now hottest
        tree.add_path(["other"], 20)
        view.show(tree, 32)
        # THEN the lines are listed again, hottest first
        assert view.keys is not keys and view.keys[0] == tree.children[0]["other"]
        keys = view.keys
        view.show(tree, 32, needle="g")  # the filter changed
        main = tree.children[0]["main"]
        f = tree.children[main]["f"]
        assert view.keys == [main, f, tree.children[f]["g"]]
        view.show(tree, 32, needle="g", reset=True)  # a new aggregate: always afresh
        assert view.expanded == set(tree.hottest_path()[1:])


async def test_call_tree_carries_expansion_to_a_rebuilt_tree() -> None:
    view = CallTreeView()
    async with Harness(view).run_test(size=(80, 15)) as pilot:
        old = sample_tree()
        view.show(old, 12)
        view.focus()
        await pilot.press("C")
        main = old.children[0]["main"]
        view.move_to(main)
        await pilot.press("right")
        # WHEN the app hands over a new tree with the same shape (a window rebuilt)
        new = CallTree()
        new.add_path(["other"], 9)
        new.add_path(["main", "h"], 3)
        view.show(new, 12)
        # THEN "main" is still open (by its path, though its node id changed)
        new_main = new.children[0]["main"]
        assert new_main != main
        assert view.expanded == {new_main}
        assert view.cursor_key == new_main


async def test_now_view_lists_the_last_stack() -> None:
    view = NowView()
    async with Harness(view).run_test(size=(80, 10)):
        view.show(Stack(("g", "f")))
        assert view.table.keys == [0, 1]
        cells: list[Hashable] = list(view.table.cells(1))
        assert cells == ["2", "f", ""]
