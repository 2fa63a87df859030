"""The Flame view: its layout and colours as pure functions, the widget in a harness app,
and the view in the app (key 4), live and from a file."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from test_app import FIB
from test_app import LOOP
from test_app import FakeLive
from textual.app import App
from textual.app import ComposeResult
from textual.widgets import Input

from sampler.model import Aggregate
from sampler.model import CallTree
from sampler.model import SampleLog
from sampler.model import Stack
from sampler.model import TreeChange
from sampler.rprof import read_rprof
from widgets.flame import DIMMED
from widgets.flame import NEW
from widgets.flame import Cell
from widgets.flame import FlameView
from widgets.flame import change_colour
from widgets.flame import flame_rows
from widgets.flame import legend
from widgets.flame import matched_samples
from widgets.flame import own_colour
from widgets.flame import package_of
from xrtop.app import XrtopApp
from xrtop.sources import FileSource

DEMO_LINES = Path(__file__).parent / "data" / "demo-rprof-lines.out"


def tree_of(*stacks: tuple[tuple[str, ...], int]) -> CallTree:
    """A call tree of (names innermost first, samples) pairs."""
    log = SampleLog.from_stacks(
        [Stack(names) for names, count in stacks for _ in range(count)], 10_000
    )
    agg = Aggregate(log)
    agg.update()
    return agg.tree


def names(tree: CallTree, row: list[Cell]) -> list[str]:
    return [str(tree.key[cell[0]]) for cell in row]


# -- layout ------------------------------------------------------------------------------------


def test_cells_are_as_wide_as_their_share_hottest_first() -> None:
    # GIVEN main calling a (60 samples: 20 in a alone, 40 in b under it) and c (20)
    tree = tree_of((("b", "a", "main"), 40), (("a", "main"), 20), (("c", "main"), 20))
    rows = flame_rows(tree, CallTree.ROOT, 80, 10)
    # THEN the root and main span the width, a takes 3/4 of it and c 1/4, side by side
    assert [(c.x, c.width) for c in rows[0]] == [(0, 80)]
    assert names(tree, rows[1]) == ["main"] and rows[1][0].width == 80
    assert names(tree, rows[2]) == ["a", "c"]
    assert [(c.x, c.width) for c in rows[2]] == [(0, 60), (60, 20)]
    # AND b sits under a's left part, as wide as its 40 of 80 samples
    assert names(tree, rows[3]) == ["b"] and (rows[3][0].x, rows[3][0].width) == (0, 40)
    assert len(rows) == 4


def test_cells_narrower_than_a_column_are_left_out_with_their_callees() -> None:
    # cold's samples, 894 to 899 of 1000 in 100 columns, hold no column's edge
    tree = tree_of(
        (("hot", "main"), 600),
        (("warm", "main"), 294),
        (("deep", "cold", "main"), 5),
        (("main",), 101),
    )
    rows = flame_rows(tree, CallTree.ROOT, 100, 10)
    assert names(tree, rows[2]) == ["hot", "warm"]
    assert len(rows) == 3  # nothing drawn under the missing cold


def test_zoom_root_takes_the_full_width_and_depth_is_limited() -> None:
    tree = tree_of((("b", "a", "main"), 40), (("c", "main"), 20))
    a = tree.children[tree.children[CallTree.ROOT]["main"]]["a"]
    rows = flame_rows(tree, a, 50, 1)
    assert [(c.node, c.x, c.width) for c in rows[0]] == [(a, 0, 50)]
    assert len(rows) == 1
    assert flame_rows(tree, CallTree.ROOT, 0, 5) == []


@st.composite
def random_trees(draw: st.DrawFn) -> CallTree:
    names_ = st.sampled_from(["a", "b", "c", "d", "e"])
    stacks = draw(
        st.lists(
            st.tuples(st.lists(names_, min_size=1, max_size=6).map(tuple), st.integers(1, 50)),
            min_size=1,
            max_size=30,
        )
    )
    return tree_of(*stacks)


@settings(max_examples=150, deadline=None)
@given(random_trees(), st.integers(1, 200))
def test_children_tile_inside_their_parent_without_overlap(tree: CallTree, width: int) -> None:
    rows = flame_rows(tree, CallTree.ROOT, width, 50)
    for depth in range(1, len(rows)):
        above, row = rows[depth - 1], rows[depth]
        extent = {c.node: (c.x, c.x + c.width) for c in above}
        previous_end = 0
        for cell in row:
            assert cell.width >= 1
            assert cell.x >= previous_end  # side by side, in order, no overlap
            previous_end = cell.x + cell.width
            left, right = extent[tree.parent[cell.node]]
            assert left <= cell.x and cell.x + cell.width <= right
        # A cell's width never exceeds its share of the width by a column or more.
        for cell in row:
            assert cell.width <= tree.total[cell.node] * width / tree.total[0] + 1


def test_matched_samples_count_a_match_inside_a_match_once() -> None:
    # fib under fib: 30 samples have fib at all, whatever the depth
    tree = tree_of((("fib", "fib", "main"), 20), (("fib", "main"), 10), (("other", "main"), 5))
    assert matched_samples(tree, CallTree.ROOT, lambda k: k == "fib") == 30
    assert matched_samples(tree, CallTree.ROOT, lambda k: k == "nothing") == 0


# -- colours -----------------------------------------------------------------------------------


def test_package_groups() -> None:
    assert package_of("data.table::fread") == "data.table"
    assert package_of("pkg:::hidden") == "pkg"
    assert package_of("<GC>") == "<special>"
    assert package_of(("fib", "/home/me/demo.R", 6)) == "demo.R"
    assert package_of("lapply") == ""


def test_own_and_change_colours_step_with_the_value() -> None:
    assert own_colour(0.0) != own_colour(30.0)
    assert own_colour(30.0) == own_colour(90.0)
    blue, grey, red = change_colour(-20), change_colour(0.1), change_colour(20)
    assert len({blue, grey, red}) == 3
    assert blue[2] > blue[0] and red[0] > red[2]  # less is blue, more is red
    assert change_colour(-0.3) == grey == change_colour(0.3)
    labels = [label for label, _ in legend("change", [])]
    assert labels[0] == "new" and "±0" in labels
    assert legend("package", ["stats"])[0][0] == "stats"


# -- the widget --------------------------------------------------------------------------------


class Harness(App[None]):
    def __init__(self, widget: FlameView) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def screen_text(view: FlameView) -> list[str]:
    return [view.render_line(y).text for y in range(view.size.height)]


async def test_arrows_move_between_cells_enter_zooms_backspace_zooms_out() -> None:
    tree = tree_of((("b", "a", "main"), 40), (("a", "main"), 20), (("c", "main"), 20))
    view = FlameView()
    async with Harness(view).run_test(size=(80, 12)) as pilot:
        view.show(tree, 80)
        view.focus()
        await pilot.pause()
        lines = screen_text(view)
        assert lines[0].startswith("all")
        assert lines[2].startswith("a ") and " c " in lines[2]
        assert lines[-2].startswith(" all  total 100.0% (80)")
        # down to main, down to its hottest callee a, right to c
        await pilot.press("down", "down")
        assert view.label(view.selected) == "a"
        await pilot.press("right")
        assert view.label(view.selected) == "c"
        assert "c  total 25.0% (20)  own 25.0%" in screen_text(view)[-2]
        await pilot.press("left", "down")
        assert view.label(view.selected) == "b"
        await pilot.press("up")
        # enter: a becomes the full width, its share still of all samples
        await pilot.press("enter")
        lines = screen_text(view)
        assert lines[0].startswith("a ") and lines[1].startswith("b ")
        assert view.rows[1][0].width == 80 * 40 // 60
        assert "zoomed: a" in lines[-2]
        await pilot.press("backspace")
        assert screen_text(view)[0].startswith("all")
        assert view.label(view.selected) == "a"  # the selection stays


async def test_filter_text_highlights_matches_and_sums_their_share() -> None:
    tree = tree_of((("fib", "fib", "main"), 20), (("fib", "main"), 10), (("other", "main"), 10))
    view = FlameView()
    async with Harness(view).run_test(size=(80, 10)):
        view.show(tree, 40, needle="FIB")
        info = screen_text(view)[-2]
        assert "match 'FIB': 75.0%" in info
        fib_cell = next(c for c in view.rows[2] if tree.key[c.node] == "fib")
        other = next(c for c in view.rows[2] if tree.key[c.node] == "other")
        line = view.render_line(2)
        styles = {seg.text.strip(): seg.style for seg in line if seg.text.strip()}
        assert styles["other"] is not None and styles["fib"] is not None
        assert styles["other"].bgcolor is not None and styles["fib"].bgcolor is not None
        assert styles["other"].bgcolor.triplet == DIMMED
        assert styles["fib"].bgcolor.triplet != DIMMED
        assert fib_cell.width == 60 and other.width == 20


async def test_cells_are_laid_out_again_only_when_the_samples_under_the_zoom_change() -> None:
    log = SampleLog.from_stacks([Stack(("b", "main"))] * 30 + [Stack(("c", "main"))] * 10, 10_000)
    agg = Aggregate(log)
    agg.update()
    view = FlameView()
    async with Harness(view).run_test(size=(80, 10)):
        view.show(agg.tree, agg.samples)
        rows = view.rows
        view.show(agg.tree, agg.samples, needle="c")  # a view switch, a filter key
        assert view.rows is rows
        log.add(Stack(("c", "main")), 1.0)
        agg.update()
        view.show(agg.tree, agg.samples)
        assert view.rows is not rows and names(agg.tree, view.rows[2]) == ["b", "c"]
        assert view.rows[2][1].width == 80 - 80 * 30 // 41  # c: from 30/41 to the end


class CountingFlame(FlameView):
    """A FlameView that counts the times it asked to be drawn again."""

    refreshes = 0

    def refresh(self, *args: object, **kwargs: object) -> CountingFlame:
        self.refreshes += 1
        return super().refresh(*args, **kwargs)  # type: ignore[arg-type]


async def test_the_flame_is_drawn_again_only_when_what_it_draws_changed() -> None:
    log = SampleLog.from_stacks([Stack(("b", "main"))] * 30 + [Stack(("c", "main"))] * 10, 10_000)
    agg = Aggregate(log)
    agg.update()
    view = CountingFlame()
    async with Harness(view).run_test(size=(80, 10)) as pilot:
        view.show(agg.tree, agg.samples)
        await pilot.pause()
        drawn = view.refreshes
        view.show(agg.tree, agg.samples)  # a view switch, a redraw
        assert view.refreshes == drawn
        # WHEN hidden (another view shown: no size) and samples arrive
        view.display = False
        await pilot.pause()
        assert view.size.width == 0
        rows = view.rows
        drawn = view.refreshes
        view.show(agg.tree, agg.samples)
        assert view.rows is rows and view.refreshes == drawn, "nothing changed while hidden"
        log.add(Stack(("c", "main")), 1.0)
        agg.update()
        view.show(agg.tree, agg.samples)
        # THEN it is laid out again for the width it had, and drawn again
        assert view.rows is not rows and view.refreshes > drawn
        assert view.rows[2][1].width == 80 - 80 * 30 // 41
        view.display = True
        await pilot.pause()
        assert "(41)" in screen_text(view)[-2]
        drawn = view.refreshes
        view.show(agg.tree, agg.samples, needle="c")  # the filter: drawn again
        assert view.refreshes > drawn


async def test_colour_key_cycles_and_a_diff_starts_coloured_by_change() -> None:
    tree = tree_of((("b", "a"), 10), (("c",), 10))
    base_share = [100.0, 50.0, TreeChange.ABSENT, 50.0]  # root, a, b (new), c
    view = FlameView()
    async with Harness(view).run_test(size=(60, 8)) as pilot:
        view.show(tree, 20)
        assert view.mode == "package"
        view.focus()
        await pilot.press("c")
        assert view.mode == "own" and "own share:" in screen_text(view)[-1]
        await pilot.press("c")
        assert view.mode == "package"
        view.show(tree, 20, change=TreeChange(base_share))
        assert view.mode == "change"
        b = tree.children[tree.children[0]["a"]]["b"]
        assert view.colour(b) == NEW
        a = tree.children[0]["a"]
        assert view.colour(a) == change_colour(0.0)
        assert "change, pp:" in screen_text(view)[-1]


# -- in the app --------------------------------------------------------------------------------


async def test_key_4_shows_the_flame_live_and_honours_pause() -> None:
    source = FakeLive()
    source.add(FIB, 30)
    source.add(LOOP, 10)
    app = XrtopApp(source, refresh_s=60)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        view = app.query_one(FlameView)
        assert app.active_view == "flame" and app.focused is view
        assert view.whole == 40 and view.calltree is app.model.agg.tree
        outer = view.rows[1][0]
        assert view.label(outer.node) == "outer" and outer.width == 100
        middle = view.rows[2][0]
        assert view.label(middle.node) == "middle" and middle.width == 75
        # live: new samples change the widths at the next refresh
        source.add(LOOP, 40)
        app.refresh_data()
        assert view.whole == 80 and view.rows[2][0].width == 62  # loop, now the hotter
        # paused: the view stays while samples arrive
        await pilot.press("space")
        source.add(FIB, 100)
        app.refresh_data()
        assert view.whole == 80
        await pilot.press("space")
        app.refresh_data()
        assert view.whole == 180


async def test_escape_zooms_out_first_then_clears_the_filter() -> None:
    app = XrtopApp(FileSource(DEMO_LINES, read_rprof(DEMO_LINES)), refresh_s=60)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4", "slash", "f", "i", "b", "enter")
        view = app.query_one(FlameView)
        assert view.needle == "fib" and "match 'fib':" in view.info_line()
        await pilot.press("down", "enter")
        assert view.zoom != CallTree.ROOT
        await pilot.press("escape")
        assert view.zoom == CallTree.ROOT and app.model.view_state.needle == "fib"
        await pilot.press("escape")  # not zoomed: the key goes on to clear the filter
        assert app.model.view_state.needle == "" and not app.query_one("#filter", Input).display


async def test_lines_key_regroups_the_flame_by_line_and_keeps_the_selection() -> None:
    app = XrtopApp(FileSource(DEMO_LINES, read_rprof(DEMO_LINES)), refresh_s=60)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("4", "down")
        view = app.query_one(FlameView)
        before = view.label(view.selected)
        await pilot.press("l")
        assert view.calltree is app.model.agg.tree
        assert view.label(view.selected) == before  # by line, the outer frames keep names
        assert any("@" in view.label(c.node) for row in view.rows for c in row)


async def test_down_scrolls_a_graph_deeper_than_the_screen() -> None:
    chain = tuple(f"f{i}" for i in range(20))  # f0 innermost, f19 outermost
    tree = tree_of((chain, 10))
    view = FlameView()
    async with Harness(view).run_test(size=(40, 8)) as pilot:  # 6 rows of graph
        view.show(tree, 10)
        view.focus()
        await pilot.press(*["down"] * 10)
        assert view.label(view.selected) == "f10"  # all, f19, ..., f10
        lines = screen_text(view)
        assert view.top_depth == 5 and lines[5].startswith("f10")
        assert lines[0].startswith("f15")
        await pilot.press(*["up"] * 10)
        assert view.top_depth == 0 and screen_text(view)[0].startswith("all")
