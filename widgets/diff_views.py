"""The Top and Tree views of `xrtop diff BASE NEW`: the new profile, with each function's
(and call path's) change against the base in percentage points.

`DiffTable` lists every function of either profile, largest change in total share first;
functions in only one profile are marked "new" or "gone". `DiffTreeView` is the Tree view
with a column for each call path's change.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Sequence
from typing import ClassVar

from textual.binding import Binding
from textual.binding import BindingType

from sampler.model import FunctionChange
from sampler.model import FunctionKey
from sampler.model import TreeChange
from sampler.model import signed_points
from widgets.call_tree import CallTreeView
from widgets.format import Column
from widgets.format import key_label
from widgets.format import pct
from widgets.row_table import RowTable

DIFF_COLUMNS: tuple[Column, ...] = (
    Column("delta_total", "ΔTotal", 7),
    Column("delta_own", "ΔOwn", 7),
    Column("new_total", "Total %", 8),
    Column("base_total", "Base %", 7),
    Column("new_own", "Own %", 7),
    Column("function", "Function", 0, right=False),
    Column("only", "Only", 5, right=False),
)

_SORT_KEYS: dict[str, Callable[[FunctionChange], float]] = {
    "delta_total": lambda c: abs(c.delta_total),
    "delta_own": lambda c: abs(c.delta_own),
    "new_total": lambda c: c.new_total,
    "base_total": lambda c: c.base_total,
    "new_own": lambda c: c.new_own,
}


def sort_changes_by(
    changes: Sequence[FunctionChange], column: str, descending: bool
) -> list[FunctionChange]:
    """`changes` by `column` of DIFF_COLUMNS (a change by its size), ties by label A-Z."""
    ordered = sorted(changes, key=lambda c: key_label(c.key))
    if column == "function":
        ordered.sort(key=lambda c: key_label(c.key).lower(), reverse=descending)
    elif column == "only":
        ordered.sort(key=lambda c: c.only, reverse=descending)
    else:
        ordered.sort(key=_SORT_KEYS[column], reverse=descending)
    return ordered


def change_cells(change: FunctionChange) -> tuple[str, ...]:
    """The cells of one row, in DIFF_COLUMNS order."""
    return (
        signed_points(change.delta_total),
        signed_points(change.delta_own),
        f"{change.new_total:.1f}%",
        f"{change.base_total:.1f}%",
        f"{change.new_own:.1f}%",
        key_label(change.key),
        change.only,
    )


class DiffTable(RowTable):
    """Every function of two profiles with its change; click a heading to sort by it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "sort_by('delta_total')", "Sort Δtotal", show=False),
        Binding("o", "sort_by('delta_own')", "Sort Δown", show=False),
        Binding("n", "sort_by('function')", "Sort name", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        """An empty table sorted by the size of the change in total share."""
        super().__init__(DIFF_COLUMNS, self._cells, empty_text="  (no samples)", id=id)
        self.changes: Sequence[FunctionChange] = ()
        self.needle = ""
        self._by_key: dict[FunctionKey, FunctionChange] = {}
        self.set_sort("delta_total", True)

    def show(self, changes: Sequence[FunctionChange], needle: str = "") -> None:
        """Show `changes`, keeping only the functions whose label contains `needle`."""
        self.changes = changes
        self.needle = needle
        self._resort()

    def _resort(self) -> None:
        needle = self.needle.lower()
        kept = [c for c in self.changes if needle in key_label(c.key).lower()]
        ordered = sort_changes_by(kept, self.sort_column, self.descending)
        self._by_key = {c.key: c for c in ordered}
        self.set_rows([c.key for c in ordered])

    def _cells(self, key: Hashable) -> tuple[str, ...]:
        change = self._by_key.get(key)  # type: ignore[call-overload]
        return () if change is None else change_cells(change)

    def action_sort_by(self, column: str) -> None:
        """Sort by `column`; the sorted column again inverts the order."""
        descending = not self.descending if column == self.sort_column else column != "function"
        self.set_sort(column, descending)
        self._resort()

    def on_row_table_header_clicked(self, event: RowTable.HeaderClicked) -> None:
        """Sort by the clicked column."""
        event.stop()
        self.action_sort_by(event.column)


DIFF_TREE_COLUMNS: tuple[Column, ...] = (
    Column("total_pct", "Total %", 8),
    Column("delta_total", "ΔTotal", 7),
    Column("own_pct", "Own %", 8),
    Column("samples", "Samples", 8),
    Column("function", "Call tree", 0, right=False),
)


class DiffTreeView(CallTreeView):
    """The call tree of the new profile with each call path's change in total share."""

    def __init__(self, *, id: str | None = None) -> None:
        """An empty tree; `set_change` gives the base's shares."""
        super().__init__(id=id)
        self.columns = DIFF_TREE_COLUMNS
        self.cells = self._diff_cells
        self.change: TreeChange | None = None

    def set_change(self, change: TreeChange) -> None:
        """The base profile's share per node of the tree shown next."""
        self.change = change

    def _diff_cells(self, key: Hashable) -> tuple[str, ...]:
        plain = self._cells(key)
        tree, change = self.calltree, self.change
        if not plain or tree is None or change is None or not isinstance(key, int):
            return plain
        if change.is_new(key):
            delta = "new"
        else:
            delta = signed_points(change.delta(key, pct(tree.total[key], self.whole)))
        return (plain[0], delta, *plain[1:])
