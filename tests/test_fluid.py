"""The live view with a big profile in memory (#27): what keeps its keys fast, as logic.

The footer changes in place when a view's keys come and go; the cyclic garbage collector is
kept out of the profile's data once it is built (which needs that data to be free of
reference cycles). How fast the keys answer is measured in bench/ui_big.py, not here.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from test_app import file_app
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from sampler.model import Aggregate
from sampler.model import SampleLog
from sampler.model import Stack
from widgets.footer import KeysFooter
from widgets.footer import placement
from xrtop import heap
from xrtop.app import XrtopApp
from xrtop.heap import FREEZE_FROM_STACKS
from xrtop.heap import REFREEZE_STACKS
from xrtop.heap import HeapSettler


def test_placement_finds_the_wanted_items_in_the_mounted_order() -> None:
    mounted = [("q",), ("s",), ("E",)]
    assert placement(mounted, [("q",), ("s",)]) == [0, 1]
    assert placement(mounted, [("C",), ("q",), ("E",)]) == [-1, 0, 2]
    assert placement(mounted, [("s",), ("q",)]) is None, "another order: mount afresh"
    assert placement(mounted, [("q",), ("q",)]) is None
    assert placement([], [("a",)]) == [-1]


def footer_keys(footer: KeysFooter) -> list[str]:
    """The keys the footer shows, in order (a key in a hidden group is not shown)."""
    return [
        w.key
        for w in footer.query(FooterKey)
        if w.display and (w.parent is None or w.parent.display)
    ]


async def test_footer_mounts_only_keys_it_never_showed() -> None:
    app = file_app()
    async with app.run_test(size=(160, 30)) as pilot:
        footer = app.query_one(KeysFooter)
        await pilot.pause()
        top_items = list(footer.children)
        top_keys = footer_keys(footer)
        assert "q" in top_keys and "E" not in top_keys
        await pilot.press("2")
        await pilot.pause()
        tree_keys = footer_keys(footer)
        # What Textual's footer shows: the bindings shown, in order, the palette last.
        shown = [k for k, b in app.screen.active_bindings.items() if b.binding.show]
        assert tree_keys == [*shown, app.COMMAND_PALETTE_BINDING]
        assert tree_keys[:3] == ["E", "C", "f"] and tree_keys[3:] == top_keys
        # The keys both views show are the very widgets mounted for the Top view.
        assert list(footer.children)[3:] == top_items
        tree_items = list(footer.children)
        await pilot.press("1")
        await pilot.pause()
        assert footer_keys(footer) == top_keys and list(footer.children) == tree_items
        # The filter line hides the keys it takes as text; escape shows them again.
        await pilot.press("slash")
        await pilot.pause()
        assert "q" not in footer_keys(footer) and "slash" in footer_keys(footer)
        await pilot.press("escape", "2")
        await pilot.pause()
        assert footer_keys(footer) == tree_keys and list(footer.children) == tree_items
        await pilot.press("4")
        await pilot.pause()
        assert footer_keys(footer)[:3] == ["enter", "backspace", "c"]
        assert footer_keys(footer)[3:] == top_keys


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test froze is given back to the collector."""
    yield
    gc.unfreeze()


def test_heap_is_frozen_once_per_big_aggregate(unfrozen: None) -> None:
    settler = HeapSettler()
    small, big, other = object(), object(), object()
    before = gc.get_freeze_count()
    assert not settler.settle(small, FREEZE_FROM_STACKS - 1)
    assert gc.get_freeze_count() == before
    assert settler.settle(big, FREEZE_FROM_STACKS)
    assert gc.get_freeze_count() > before
    assert not settler.settle(big, FREEZE_FROM_STACKS + REFREEZE_STACKS - 1)
    assert settler.settle(big, FREEZE_FROM_STACKS + REFREEZE_STACKS), "grown: again"
    assert settler.settle(other, FREEZE_FROM_STACKS + REFREEZE_STACKS), "a new one: again"


def test_tidy_freezes_again_between_keys_once_many_objects_are_not_frozen(
    unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settler = HeapSettler()
    monkeypatch.setattr(heap, "TIDY_EVERY_S", 0.0)
    assert not settler.tidy(), "nothing frozen: a small profile is left alone"
    settler.settle(object(), FREEZE_FROM_STACKS)
    assert not settler.tidy(), "all frozen just now"
    alive: list[list[int]] = [[] for _ in range(heap.TIDY_FROM_OBJECTS)]  # tracked
    before = gc.get_freeze_count()
    assert settler.tidy() and gc.get_freeze_count() >= before + len(alive)
    monkeypatch.setattr(heap, "TIDY_EVERY_S", 3600.0)
    alive += [[] for _ in range(heap.TIDY_FROM_OBJECTS)]
    assert not settler.tidy(), "not looked at again so soon"


def test_an_aggregate_is_freed_without_the_cyclic_collector() -> None:
    log = SampleLog(10_000)
    for i in range(50):
        log.add(Stack((f"f{i % 7}", f"g{i % 3}", "main")), i / 100)
    agg = Aggregate(log, by_line=False)
    agg.update()
    assert len(agg.tree.children[0]) == 1
    tree, whole = weakref.ref(agg.tree), weakref.ref(agg)
    gc.disable()
    try:
        del agg
        assert whole() is None and tree() is None, "a reference cycle keeps it alive"
    finally:
        gc.enable()


async def test_footer_changes_its_keys_at_once_when_the_focus_moves() -> None:
    app = file_app()
    async with app.run_test(size=(160, 30)) as pilot:
        footer = app.query_one(KeysFooter)
        await pilot.pause()
        top_keys = footer_keys(footer)
        box = app.query_one("#filter", Input)
        box.display = True
        for _ in range(2):  # the filter line's keys mounted, then mounted already
            # WHEN the focus moves and the footer is told (as a view switch does)
            app.screen.set_focus(box)
            footer.bindings_changed(app.screen)
            # THEN the keys change at once, laid out in the same frame (no refresh between)
            assert "q" not in footer_keys(footer) and "slash" in footer_keys(footer)
            app.screen.set_focus(app.hot)
            footer.bindings_changed(app.screen)
            assert footer_keys(footer) == top_keys
            await pilot.pause()
            assert footer_keys(footer) == top_keys


async def test_a_view_key_shows_and_focuses_the_view_at_once() -> None:
    app = file_app()
    async with app.run_test(size=(160, 30)) as pilot:
        footer = app.query_one(KeysFooter)
        await pilot.pause()
        # WHEN the Tree view's key is handled (no message handled after it yet)
        app.action_view("tree")
        # THEN the tree is listed, focused and its keys in the footer, for the next frame
        assert app.tree_view.keys and app.screen.focused is app.tree_view
        assert footer_keys(footer)[:3] == ["E", "C", "f"]
        await pilot.pause()
        assert app.active_view == "tree" and app.screen.focused is app.tree_view


async def test_a_view_switch_lays_out_only_the_footer_keys_it_shows_or_hides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = file_app()
    asked: list[Widget] = []
    refresh = Widget.refresh

    def recorded(widget: Widget, *regions: Region, **how: bool) -> Widget:
        if how.get("layout"):
            asked.append(widget)
        return refresh(widget, *regions, **how)

    monkeypatch.setattr(Widget, "refresh", recorded)
    async with app.run_test(size=(160, 30)) as pilot:
        footer = app.query_one(KeysFooter)
        for key in ("2", "4", "1"):  # every view's keys mounted once
            await pilot.press(key)
        for view in ("tree", "top", "flame", "tree", "top"):
            await pilot.pause()
            items = list(footer.query(Widget))
            shown = {item: item.display for item in items}
            asked.clear()
            # WHEN a view key is handled (the footer's keys change with the view)
            app.action_view(view)
            changed = {item for item in items if item.display != shown[item]}
            # THEN only the key items shown or hidden ask for a layout (each one more
            # message for the screen, which may come after it laid out the views)
            assert changed, view
            assert {w for w in asked if w in shown} <= changed, view


async def test_a_view_key_draws_the_view_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = file_app()
    drawn: list[str] = []
    draw_tree = XrtopApp._show_tree

    def counted_draw(app: XrtopApp) -> None:
        drawn.append("tree")
        draw_tree(app)

    monkeypatch.setattr(XrtopApp, "_show_tree", counted_draw)
    async with app.run_test(size=(160, 30)) as pilot:
        for key in ("2", "1", "2"):
            await pilot.pause()
            drawn.clear()
            # WHEN a view key is pressed (and Textual says the tab was activated)
            await pilot.press(key)
            await pilot.pause()
            # THEN the view is drawn once, when the key is handled
            assert drawn == (["tree"] if key == "2" else []), key
