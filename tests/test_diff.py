"""`xrtop diff BASE NEW`: the change model (pure), `--print` on profiles of real R runs
checked against R's own summaryRprof, user mistakes, and the diff views (Pilot)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest
from conftest import IN_CI
from conftest import R_SCRIPTS
from conftest import require_live
from conftest import rscript
from test_user_errors import bad_profile

from sampler.diff import change_table
from sampler.diff import function_changes
from sampler.diff import tree_change
from sampler.errors import EXIT_FILE
from sampler.errors import EXIT_USAGE
from sampler.model import Aggregate
from sampler.model import CallTree
from sampler.model import FunctionKey
from sampler.model import SampleLog
from sampler.model import Stack
from sampler.model import signed_points
from sampler.rprof import read_rprof
from widgets.diff_views import DiffTable
from widgets.diff_views import DiffTreeView
from widgets.flame import NEW
from widgets.flame import FlameView
from xrtop.diff_app import DiffApp
from xrtop.screenshots import DIFF_PROFILES

BEFORE, AFTER = DIFF_PROFILES  # R's Rprof of tests/r/optimise.R before and after


def aggregate(*stacks: tuple[tuple[str, ...], int]) -> Aggregate:
    log = SampleLog.from_stacks(
        [Stack(names) for names, count in stacks for _ in range(count)], 10_000
    )
    agg = Aggregate(log)
    agg.update()
    return agg


# -- the model ---------------------------------------------------------------------------------


def test_changes_are_shares_of_each_profile_largest_change_first() -> None:
    # BASE: 8 samples, slow in 6 of them; NEW: 4 samples, fast in 1, work in 3
    base = aggregate((("slow", "main"), 6), (("work", "main"), 2))
    new = aggregate((("fast", "main"), 1), (("work", "main"), 3))
    changes = {c.key: c for c in function_changes(base, new)}
    assert changes["slow"].delta_total == pytest.approx(-75.0)
    assert changes["slow"].only == "gone"
    assert changes["fast"].delta_own == pytest.approx(25.0) and changes["fast"].only == "new"
    assert changes["work"].delta_total == pytest.approx(50.0) and changes["work"].only == ""
    assert changes["main"].delta_total == 0.0
    order = [c.key for c in function_changes(base, new)]
    assert order == ["slow", "work", "fast", "main"]


def test_signed_points() -> None:
    assert signed_points(12.5) == "+12.5"
    assert signed_points(-50.0) == "-50.0"
    assert signed_points(-0.04) == "0.0"


def test_change_table_lists_the_largest_changes_with_signs_and_marks() -> None:
    base = aggregate((("slow", "main"), 6), (("work", "main"), 2))
    new = aggregate((("fast", "main"), 1), (("work", "main"), 3))
    lines = change_table(function_changes(base, new), limit=3).splitlines()
    assert len(lines) == 4
    assert lines[1].split() == ["-75.0", "-75.0", "75.0%", "0.0%", "slow", "(gone)"]
    assert lines[2].split() == ["+50.0", "+50.0", "25.0%", "75.0%", "work"]
    assert lines[3].split() == ["+25.0", "+25.0", "0.0%", "25.0%", "fast", "(new)"]


def test_tree_change_matches_call_paths() -> None:
    base = aggregate((("b", "a"), 3), (("c", "a"), 1))
    new = aggregate((("b", "a"), 1), (("d", "a"), 1))
    change = tree_change(base.tree, base.samples, new.tree)
    a = new.tree.children[CallTree.ROOT]["a"]
    b, d = new.tree.children[a]["b"], new.tree.children[a]["d"]
    assert change.base_share[a] == 100.0 and not change.is_new(a)
    assert change.delta(b, 50.0) == pytest.approx(-25.0)
    assert change.is_new(d) and change.delta(d, 50.0) == 50.0


# -- real R: two runs of code that changed -----------------------------------------------------


def summary(path: Path) -> dict[str, tuple[float, float]]:
    """summaryRprof's (total %, self %) per function of `path`."""
    out = rscript(
        f'x <- summaryRprof("{path}")$by.total; '
        'cat(sprintf("%s\\t%.6f\\t%.6f\\n", rownames(x), x$total.pct, x$self.pct), sep="")'
    )
    rows = (line.split("\t") for line in out.splitlines() if line)
    return {name.strip('"'): (float(total), float(own)) for name, total, own in rows}


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("Rscript") is None:
        if IN_CI:
            pytest.fail("R is not installed")
        pytest.skip("R is not installed")
    require_live("the optimise.R runs")
    tmp = tmp_path_factory.mktemp("diff")
    runs = {"before": (tmp / "before.out", "30"), "after": (tmp / "after.out", "90")}
    for version, (path, steps) in runs.items():
        subprocess.run(
            ["Rscript", str(R_SCRIPTS / "optimise.R"), version, str(path), steps],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return runs["before"][0], runs["after"][0]


@pytest.mark.live
def test_print_matches_summaryrprof_of_each_profile(profiles: tuple[Path, Path]) -> None:
    # GIVEN R's own Rprof of a workload before and after replacing grow() by prealloc()
    base, new = profiles
    # WHEN xrtop compares them
    out = subprocess.run(
        [sys.executable, "-m", "xrtop", "diff", "--print", str(base), str(new)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"# {new.name} (") and lines[1].split()[-1] == "function"
    rows = [line.split() for line in lines[2:]]
    assert 5 <= len(rows) <= 30
    # THEN every share is summaryRprof's, and every change the difference of the two
    before, after = summary(base), summary(new)
    for row in rows:
        d_total, d_own, base_pct, new_pct, name = row[:5]
        mark = row[5] if len(row) > 5 else ""
        b_total, b_own = before.get(name, (0.0, 0.0))
        n_total, n_own = after.get(name, (0.0, 0.0))
        assert float(base_pct.rstrip("%")) == pytest.approx(b_total, abs=0.051), name
        assert float(new_pct.rstrip("%")) == pytest.approx(n_total, abs=0.051), name
        assert float(d_total) == pytest.approx(n_total - b_total, abs=0.051), name
        assert float(d_own) == pytest.approx(n_own - b_own, abs=0.051), name
        assert d_total[0] in "+-" or d_total == "0.0"
        assert mark == ("(gone)" if name not in after else "(new)" if name not in before else "")
    # AND the rows are the largest changes first; the function that went and the one
    # that came are marked
    sizes = [abs(float(row[0])) for row in rows]
    assert sizes == sorted(sizes, reverse=True)
    names = {row[4]: row[5:] for row in rows}
    assert names["grow"] == ["(gone)"] and names["prealloc"] == ["(new)"]
    assert float(next(r for r in rows if r[4] == "fib")[0]) > 0


def test_diff_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.out"
    out = subprocess.run(
        [sys.executable, "-m", "xrtop", "diff", "--print", str(BEFORE), str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.startswith(f"xrtop: cannot read {missing}") and "Traceback" not in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "xrtop", "diff", str(BEFORE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "the following arguments are required: new" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "xrtop", "diff", str(BEFORE), str(AFTER)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("xrtop: the live view needs a terminal")


# -- the views ---------------------------------------------------------------------------------


def diff_app() -> DiffApp:
    return DiffApp(BEFORE, read_rprof(BEFORE), AFTER, read_rprof(AFTER))


async def test_top_lists_the_changes_largest_first() -> None:
    app = diff_app()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(DiffTable)
        assert app.focused is table
        sizes = [
            abs(c.delta_total) for c in (table._by_key[cast(FunctionKey, k)] for k in table.keys)
        ]
        assert sizes == sorted(sizes, reverse=True)
        assert table.keys[0] in ("grow", "clean", "fib")
        assert table._by_key["grow"].only == "gone"
        # a click on a heading (or n) sorts by it; the filter keeps matching functions
        await pilot.press("n")
        assert table.keys == sorted(table.keys, key=lambda key: str(key).lower())
        await pilot.press("slash", "f", "i", "b", "enter")
        assert table.keys == ["fib"]


async def test_tree_and_flame_show_each_paths_change() -> None:
    app = diff_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        tree_view = app.query_one(DiffTreeView)
        await pilot.press("E")  # open everything
        rows = {c[-1].strip().lstrip("▸▾ "): c for c in map(tree_view.cells, tree_view.keys)}
        # step -> clean -> prealloc: clean's share fell, prealloc is new
        assert rows["step"][1] in ("0.0",) or rows["step"][1][0] in "+-"
        assert float(rows["clean"][1]) < -50
        assert rows["prealloc"][1] == "new"
        assert float(rows["model"][1]) > 50
        await pilot.press("3")  # a diff has no Now view: nothing happens
        assert app.active_view == "tree"
        await pilot.press("4")
        flame = app.query_one(FlameView)
        assert app.active_view == "flame" and flame.mode == "change"
        prealloc = next(
            c.node for row in flame.rows for c in row if flame.label(c.node) == "prealloc"
        )
        assert flame.colour(prealloc) == NEW
        assert "change, pp:" in flame.legend_strip(120).text
        await pilot.press("tab")
        assert app.active_view == "top"


@pytest.mark.parametrize("which", ["base", "new"])
@pytest.mark.parametrize(
    ("content", "code", "says"),
    [
        (None, EXIT_USAGE, "No such file or directory"),
        (b"", EXIT_FILE, ":1: not a valid Rprof.out file: the file is empty"),
        (b"library(stats)\nx <- 1\n", EXIT_FILE, ":1: not a valid Rprof.out file"),
        ("DIR", EXIT_USAGE, "Is a directory"),
    ],
    ids=["missing", "empty", "not-rprof", "dir"],
)
def test_bad_profile_files_name_the_file(
    which: str, content: bytes | str | None, code: int, says: str, tmp_path: Path
) -> None:
    path = bad_profile(content, tmp_path)
    files = [str(path), str(AFTER)] if which == "base" else [str(BEFORE), str(path)]
    for view in ([], ["--print"]):  # the view reads both files before it needs a terminal
        out = subprocess.run(
            [sys.executable, "-m", "xrtop", "diff", *view, *files],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == code, out.stderr
        assert out.stdout == ""
        line = out.stderr.splitlines()[0]
        assert says in line and str(path) in line, line
        assert "Traceback" not in out.stderr
