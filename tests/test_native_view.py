"""Native frames in the live view, without R: N and V in the view model, row styles."""

from __future__ import annotations

from pathlib import Path

from test_view_model import model_of

from sampler.model import Stack
from sampler.rprof import RprofOptions
from sampler.rprof import RprofWriter
from sampler.rprof import read_rprof
from widgets.hot_table import HotTable
from widgets.row_table import RowTable
from xrtop.app import XrtopApp
from xrtop.sources import FileSource

MIXED = Stack(
    (
        "<Native:my_leaf>",
        "<Native:my_c_fun>",
        ".C",
        "<Native:Rf_eval>",
        "inner_r",
        "<Native:libR.so+0x159602>",
        "outer_r",
        "<Native:main>",
    )
)


def test_native_frames_are_shown_and_the_evaluators_hidden_until_asked() -> None:
    _source, model = model_of((MIXED, 4))
    own = model.current().own
    total = model.current().total
    assert own["<Native:my_leaf>"] == 4
    assert "<Native:my_c_fun>" in total and "<Native:Rf_eval>" not in total
    assert "<Native:libR.so+0x159602>" not in total and "<Native:main>" not in total
    assert model.now_stack() == Stack(
        ("<Native:my_leaf>", "<Native:my_c_fun>", ".C", "inner_r", "outer_r")
    )

    model.toggle_evaluator()  # V
    model.take_in_new()
    total = model.current().total
    assert total["<Native:Rf_eval>"] == 4 and total["<Native:main>"] == 4
    assert model.now_stack() == MIXED

    model.toggle_native()  # N: R's frames only, the tree from outer_r down
    model.take_in_new()
    agg = model.current()
    assert set(agg.total) == {".C", "inner_r", "outer_r"} and agg.own[".C"] == 4
    assert [agg.tree.key[n] for n in agg.tree.hottest_path()[1:]] == ["outer_r", "inner_r", ".C"]
    assert model.now_stack() == Stack((".C", "inner_r", "outer_r"))


async def test_native_rows_are_styled_apart() -> None:
    # (async: on Python 3.9 a widget needs an event loop to be made)
    table = HotTable()
    assert table.row_class("<Native:my_c_fun>") == "row-table--native"
    assert table.row_class(("<Native:my_c_fun>", "f.c", 3)) == "row-table--native"
    assert table.row_class("inner_r") == "row-table--row"
    plain = RowTable((), lambda key: ())
    assert plain.row_class("<Native:my_c_fun>") == "row-table--row"


async def test_keys_n_and_v_change_what_the_top_view_counts(tmp_path: Path) -> None:
    path = tmp_path / "mixed.out"
    with path.open("w") as out:
        RprofWriter(out, 10000, RprofOptions()).add_all([MIXED] * 5 + [Stack(("f",))] * 2)
    app = XrtopApp(FileSource(path, read_rprof(path)), refresh_s=60)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert set(app.query_one(HotTable).keys) == {
            "<Native:my_leaf>",
            "<Native:my_c_fun>",
            ".C",
            "inner_r",
            "outer_r",
            "f",
        }
        await pilot.press("V")
        await pilot.pause()
        assert set(app.query_one(HotTable).keys) == {*MIXED.names, "f"}
        await pilot.press("N")
        await pilot.pause()
        assert set(app.query_one(HotTable).keys) == {".C", "inner_r", "outer_r", "f"}
