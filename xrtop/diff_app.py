"""The views of `xrtop diff BASE NEW`: NEW's Top, Tree and Flame views, each with the
change against BASE (`DiffApp`, an `XrtopApp` over NEW's file with its own tabs)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from sampler.diff import function_changes
from sampler.diff import tree_change
from sampler.model import Aggregate
from sampler.model import CallTree
from sampler.model import TreeChange
from sampler.rprof import RprofFile
from widgets.diff_views import DiffTable
from widgets.diff_views import DiffTreeView
from widgets.flame import FlameView
from xrtop.app import VIEW_TABS
from xrtop.app import ViewTab
from xrtop.app import XrtopApp
from xrtop.sources import FileSource

_FLAME = next(tab for tab in VIEW_TABS if tab.id == "flame")

#: The diff's views: the Top and Tree views with the change, the Flame view coloured by it.
DIFF_TABS: tuple[ViewTab, ...] = (
    ViewTab("top", "Top", "1", lambda: DiffTable(id="top-table"), "#top-table", "Changes"),
    ViewTab("tree", "Tree", "2", lambda: DiffTreeView(id="tree-view"), "#tree-view", "Call tree"),
    _FLAME,
)


class DiffApp(XrtopApp):
    """NEW's views with the change against BASE; the same keys, without Now and window."""

    TABS: ClassVar[tuple[ViewTab, ...]] = DIFF_TABS
    FILTER_MATCHES: ClassVar[str] = "function"

    def __init__(
        self,
        base_path: Path,
        base: RprofFile,
        new_path: Path,
        new: RprofFile,
        *,
        handle_signals: bool = False,
        refresh_s: float = 3600,
    ) -> None:
        """Compare `new` (read from `new_path`) with `base`; files do not change, so the
        refresh timer is only a fallback."""
        source = FileSource(new_path, new)
        source.title = f"diff {base_path.name} → {new_path.name}"
        super().__init__(source, handle_signals=handle_signals, refresh_s=refresh_s)
        self.base_log = base.to_log()
        self._base: Aggregate | None = None
        self._change: tuple[CallTree, TreeChange] | None = None

    def base(self) -> Aggregate:
        """BASE aggregated as NEW is (by function or line, idle in or out)."""
        agg = self.model.current()
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
        tree = self.model.current().tree
        if self._change is None or self._change[0] is not tree:
            base = self.base()
            self._change = (tree, tree_change(base.tree, base.samples, tree))
        return self._change[1]

    def _show_top(self) -> None:
        changes = function_changes(self.base(), self.model.current())
        self.query_one(DiffTable).show(changes, self.model.view_state.needle)

    def _show_tree(self) -> None:
        self.query_one(DiffTreeView).set_change(self.tree_change())
        super()._show_tree()

    def _show_flame(self) -> None:
        agg = self.model.current()
        flame = self.query_one(FlameView)
        flame.show(agg.tree, agg.samples, self.model.view_state.needle, change=self.tree_change())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A comparison of whole files has no window."""
        if action == "window":
            return False
        return super().check_action(action, parameters)
