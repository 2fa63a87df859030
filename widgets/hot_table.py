"""`HotTable`: the Top view, one row per function (or per function and line).

The app hands over `Aggregate.rows()` with the sample count; the table filters, sorts by its
current column and shows the result. Sorting: click a heading, or `<`/`>` to move the
sorted column and `I` (shift+i) to invert; `o`, `t`, `n` jump to own, total and name.
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Sequence
from typing import ClassVar

from textual.binding import Binding
from textual.binding import BindingType

from sampler.model import FunctionKey
from sampler.model import FunctionRow
from widgets.format import TOP_COLUMNS
from widgets.format import default_descending
from widgets.format import is_native_key
from widgets.format import row_matches
from widgets.format import sort_rows
from widgets.format import top_cells
from widgets.row_table import RowTable


class HotTable(RowTable):
    """The flat table of hot functions, sortable by any column."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("less_than_sign", "sort_step(-1)", "Sort ←", show=False),
        Binding("greater_than_sign", "sort_step(1)", "Sort →", show=False),
        Binding("o", "sort_by('own_pct')", "Sort own", show=False),
        Binding("t", "sort_by('total_pct')", "Sort total", show=False),
        Binding("n", "sort_by('function')", "Sort name", show=False),
        Binding("I", "invert", "Invert sort", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        """An empty table sorted by own time, hottest first."""
        super().__init__(
            TOP_COLUMNS,
            self._cells,
            empty_text="  (nothing to show yet)",
            id=id,
            native=lambda key: isinstance(key, (str, tuple)) and is_native_key(key),
        )
        self.rows: Sequence[FunctionRow] = ()
        self.samples = 0
        self.seconds_per_sample = 0.0
        self.needle = ""
        self._by_key: dict[FunctionKey, FunctionRow] = {}
        self.set_sort("own_pct", True)

    def show(
        self,
        rows: Sequence[FunctionRow],
        samples: int,
        seconds_per_sample: float,
        needle: str = "",
    ) -> None:
        """Show `rows` (shares of `samples`), keeping only those matching `needle`."""
        shown = (self.rows, self.samples, self.seconds_per_sample, self.needle)
        if (rows, samples, seconds_per_sample, needle) == shown:
            return  # the same rows (a view switch, a redraw): filtered and sorted already
        self.rows = rows
        self.samples = samples
        self.seconds_per_sample = seconds_per_sample
        self.needle = needle
        self._resort()

    def _resort(self) -> None:
        kept = [r for r in self.rows if row_matches(r, self.needle)] if self.needle else self.rows
        ordered = sort_rows(kept, self.sort_column, self.descending)
        self._by_key = {r.key: r for r in ordered}
        self.set_rows([r.key for r in ordered])

    def _cells(self, key: Hashable) -> tuple[str, ...]:
        row = self._by_key.get(key)  # type: ignore[call-overload]
        if row is None:
            return ()
        return top_cells(row, self.samples, self.seconds_per_sample)

    def sort_by(self, column: str) -> None:
        """Sort by `column`; choosing the sorted column again inverts the order."""
        if column == self.sort_column:
            self.set_sort(column, not self.descending)
        else:
            self.set_sort(column, default_descending(column))
        self._resort()

    def action_sort_by(self, column: str) -> None:
        """Sort by `column` (a `Column.key` of TOP_COLUMNS)."""
        self.sort_by(column)

    def action_sort_step(self, step: int) -> None:
        """Sort by the column `step` places left or right of the sorted one."""
        keys = [c.key for c in TOP_COLUMNS]
        index = keys.index(self.sort_column) if self.sort_column in keys else 0
        self.sort_by(keys[(index + step) % len(keys)])

    def action_invert(self) -> None:
        """Invert the sort order."""
        self.set_sort(self.sort_column, not self.descending)
        self._resort()

    def on_row_table_header_clicked(self, event: RowTable.HeaderClicked) -> None:
        """Sort by the clicked column."""
        event.stop()
        self.sort_by(event.column)
