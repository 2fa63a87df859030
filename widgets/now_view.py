"""`NowView`: the most recent sample's stack, innermost frame first."""

from __future__ import annotations

from collections.abc import Hashable

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from sampler.model import Stack
from widgets.format import NOW_COLUMNS
from widgets.format import is_native_key
from widgets.format import now_caption
from widgets.format import now_rows
from widgets.row_table import RowTable


class NowView(Vertical):
    """A caption and a table of the frames of the last stack."""

    DEFAULT_CSS = """
    NowView { height: 1fr; }
    NowView > #now-caption { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """Empty until the first `show()`."""
        super().__init__(id=id)
        self.stack: Stack | None = None
        self._rows: list[tuple[str, str, str]] = []
        self.table = RowTable(
            NOW_COLUMNS,
            self._cells,
            empty_text="  (no frames)",
            id="now-table",
            native=self._native,
        )
        self.caption = Static(now_caption(None), id="now-caption", markup=False)

    def compose(self) -> ComposeResult:
        """Caption above the frames."""
        yield self.caption
        yield self.table

    def show(self, stack: Stack | None) -> None:
        """Show `stack` (no work when it is the stack already shown)."""
        if stack is self.stack and self._rows:
            return
        self.stack = stack
        self._rows = now_rows(stack)
        self.caption.update(now_caption(stack))
        self.table.set_rows(list(range(len(self._rows))))

    def _native(self, key: Hashable) -> bool:
        return isinstance(key, int) and key < len(self._rows) and is_native_key(self._rows[key][1])

    def _cells(self, key: Hashable) -> tuple[str, ...]:
        assert isinstance(key, int)
        return self._rows[key] if key < len(self._rows) else ()
