"""The views of `xrtop diff BASE NEW`: NEW's Top, Tree and Flame views, each with the
change against BASE (`DiffApp`, an `XrtopApp` over NEW's file)."""

from __future__ import annotations

import sys
from pathlib import Path

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets import Input
from textual.widgets import Static
from textual.widgets import TabbedContent
from textual.widgets import TabPane

from sampler.diff import function_changes
from sampler.diff import tree_change
from sampler.model import Aggregate
from sampler.model import CallTree
from sampler.model import TreeChange
from sampler.rprof import RprofFile
from widgets.diff_views import DiffTable
from widgets.diff_views import DiffTreeView
from widgets.flame import FlameView
from widgets.status import StatusHeader
from xrtop.app import FileSource
from xrtop.app import XrtopApp
from xrtop.app import require_terminal

DIFF_VIEWS = ("top", "tree", "flame")


class DiffSource(FileSource):
    """The new profile, titled as a comparison."""

    def __init__(self, base_path: Path, path: Path, profile: RprofFile) -> None:
        """Show `profile` (from `path`), compared with the one at `base_path`."""
        super().__init__(path, profile)
        self.title = f"diff {base_path.name} → {path.name}"


class DiffApp(XrtopApp):
    """NEW's views with the change against BASE; the same keys, without Now and window."""

    def __init__(
        self,
        base_path: Path,
        base: RprofFile,
        new_path: Path,
        new: RprofFile,
        refresh_s: float = 3600,
    ) -> None:
        """Compare `new` (read from `new_path`) with `base`; files do not change, so the
        refresh timer is only a fallback."""
        super().__init__(DiffSource(base_path, new_path, new), refresh_s=refresh_s)
        self.base_log = base.to_log()
        self._base: Aggregate | None = None
        self._change: tuple[CallTree, TreeChange] | None = None

    def compose(self) -> ComposeResult:
        """Header, the three views, the filter line, the footer."""
        yield StatusHeader(id="status")
        yield Static("", id="message", markup=False)
        with TabbedContent(id="views", initial="top"):
            with TabPane("1 Top", id="top"):
                yield DiffTable(id="top-table")
            with TabPane("2 Tree", id="tree"):
                yield DiffTreeView(id="tree-view")
            with TabPane("4 Flame", id="flame"):
                yield FlameView(id="flame-view")
        yield Input(placeholder="filter: function (enter keeps, escape clears)", id="filter")
        yield Footer()

    def base(self) -> Aggregate:
        """BASE aggregated as NEW is (by function or line)."""
        agg = self.current()
        if self._base is None or (self._base.by_line, self._base.include_idle) != (
            agg.by_line,
            agg.include_idle,
        ):
            self._base = Aggregate(
                self.base_log, by_line=agg.by_line, include_idle=agg.include_idle
            )
            self._base.update()
        return self._base

    def tree_change(self) -> TreeChange:
        """BASE's share of each node of NEW's tree shown."""
        tree = self.current().tree
        if self._change is None or self._change[0] is not tree:
            base = self.base()
            self._change = (tree, tree_change(base.tree, base.samples, tree))
        return self._change[1]

    def _show_view(self) -> None:
        self._dirty = False
        agg = self.current()
        view = self.active_view
        needle = self.view_state.needle
        if view == "top":
            self.query_one(DiffTable).show(function_changes(self.base(), agg), needle)
        elif view == "tree":
            tree_view = self.query_one(DiffTreeView)
            tree_view.set_change(self.tree_change())
            reset = self._tree_reset
            self._tree_reset = False
            tree_view.show(agg.tree, agg.samples, needle, reset=reset)
        else:
            flame = self.query_one(FlameView)
            flame.show(agg.tree, agg.samples, needle, change=self.tree_change())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A comparison of whole files has no window."""
        if action == "window":
            return False
        return super().check_action(action, parameters)

    def action_view(self, name: str) -> None:
        """Show the view `name` (a diff has no Now view)."""
        if name in DIFF_VIEWS:
            super().action_view(name)

    def action_next_view(self) -> None:
        """Show the next view."""
        index = DIFF_VIEWS.index(self.active_view)
        self.action_view(DIFF_VIEWS[(index + 1) % len(DIFF_VIEWS)])


def run_diff(base_path: Path, base: RprofFile, new_path: Path, new: RprofFile) -> int:
    """`xrtop diff BASE NEW`: browse NEW against BASE."""
    require_terminal()
    app = DiffApp(base_path, base, new_path, new)
    app.handle_signals = True
    app.run()
    for saved in app.saved_files:
        print(f"xrtop: wrote {saved}", file=sys.stderr)
    return app.return_code or 0
