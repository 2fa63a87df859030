"""`RowTable`: a virtual, keyed table that formats only the rows on screen.

Textual's DataTable keeps every cell as a styled object; with thousands of functions
refreshed twice a second that is the dominant cost. Here a refresh hands over a list of row
keys and a function that formats one key on demand, so the cost of a refresh is the list
plus the rows actually visible. The cursor follows its key across refreshes.

Contracts: `set_rows` may be called at any rate from the UI thread; the `cells` callback is
called only from `render_line`; a column of width 0 takes the room left (possibly none).
Tiny sizes never raise: cells are cut to fit.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.binding import BindingType
from textual.geometry import Region
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from widgets.format import Column
from widgets.format import header_label

CellFn = Callable[[Hashable], Sequence[str]]


def fit(text: str, width: int, right: bool) -> str:
    """`text` padded or cut to exactly `width` cells (cut text ends with "…")."""
    if width <= 0:
        return ""
    size = cell_len(text)
    if size > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else "…"
    pad = " " * (width - size)
    return pad + text if right else text + pad


def column_widths(columns: Sequence[Column], total: int) -> list[int]:
    """Widths per column for a line `total` cells wide (one space between columns)."""
    fixed = sum(c.width for c in columns) + max(0, len(columns) - 1)
    flexible = [i for i, c in enumerate(columns) if c.width == 0]
    spare = max(0, total - fixed)
    widths = [c.width for c in columns]
    for n, i in enumerate(flexible):
        share = spare // len(flexible) + (1 if n < spare % len(flexible) else 0)
        widths[i] = share
    return widths


def format_line(columns: Sequence[Column], widths: Sequence[int], cells: Sequence[str]) -> str:
    """One table line: each cell fitted to its column, columns joined by one space."""
    parts = [
        fit(cell, width, column.right)
        for column, width, cell in zip(columns, widths, cells)
        if width > 0
    ]
    return " ".join(parts)


class RowTable(ScrollView, can_focus=True):
    """A scrollable table of keyed rows with a cursor and a clickable header."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "row-table--header",
        "row-table--cursor",
        "row-table--row",
        "row-table--native",
    }
    DEFAULT_CSS = """
    RowTable {
        overflow-x: hidden;
        overflow-y: auto;
        height: 1fr;
        scrollbar-size-vertical: 1;
    }
    RowTable > .row-table--header { text-style: bold; background: $panel; }
    RowTable > .row-table--cursor { background: $primary 40%; }
    RowTable:focus > .row-table--cursor { background: $primary; color: $text; }
    RowTable > .row-table--row { }
    RowTable > .row-table--native { color: $accent; text-style: italic; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
    ]

    class HeaderClicked(Message):
        """The user clicked the heading of column `column` (a `Column.key`)."""

        def __init__(self, table: RowTable, column: str) -> None:
            super().__init__()
            self.table = table
            self.column = column

        @property
        def control(self) -> RowTable:
            return self.table

    class RowSelected(Message):
        """The user pressed enter (or clicked twice) on the row with `key`."""

        def __init__(self, table: RowTable, key: Hashable) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> RowTable:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column],
        cells: CellFn,
        *,
        empty_text: str = "",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        native: Callable[[Hashable], bool] | None = None,
    ) -> None:
        """A table with `columns`; `cells(key)` gives the strings of one row, `native(key)`
        whether it is a native frame's (`--native`: styled apart)."""
        super().__init__(name=name, id=id, classes=classes)
        self.columns: tuple[Column, ...] = tuple(columns)
        self.cells = cells
        self.native = native
        self.empty_text = empty_text
        self.keys: list[Hashable] = []
        self.cursor = 0
        self.sort_column = ""
        self.descending = True
        #: The style of each component class, worked out once per `render_lines` pass.
        self._styles: dict[str, Style] = {}

    # -- data ----------------------------------------------------------------------------

    def set_rows(self, keys: list[Hashable]) -> None:
        """Show the rows `keys` (in order); the cursor stays on its key when still present."""
        current = self.cursor_key
        self.keys = keys
        if current is not None:
            try:
                self.cursor = keys.index(current)
            except ValueError:
                self.cursor = min(self.cursor, max(0, len(keys) - 1))
        else:
            self.cursor = 0
        self.virtual_size = Size(self.size.width, len(keys) + 1)
        self.refresh()

    def set_sort(self, column: str, descending: bool) -> None:
        """Mark `column` as the sorted one in the header."""
        self.sort_column = column
        self.descending = descending
        self.refresh(self._header_region())

    @property
    def cursor_key(self) -> Hashable | None:
        """The key of the row under the cursor, or None when the table is empty."""
        if 0 <= self.cursor < len(self.keys):
            return self.keys[self.cursor]
        return None

    def move_to(self, key: Hashable) -> None:
        """Put the cursor on `key` when it is listed, and scroll to it."""
        try:
            self.cursor = self.keys.index(key)
        except ValueError:
            return
        self._scroll_to_cursor()
        self.refresh()

    # -- actions -------------------------------------------------------------------------

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 2)

    def action_cursor(self, delta: int) -> None:
        """Move the cursor by `delta` rows."""
        self._set_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        """Move the cursor by a page."""
        self._set_cursor(self.cursor + direction * self._page)

    def action_jump(self, index: int) -> None:
        """Jump to the first (0) or last (-1) row."""
        self._set_cursor(0 if index == 0 else len(self.keys) - 1)

    def action_select(self) -> None:
        """Report the row under the cursor."""
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def _set_cursor(self, index: int) -> None:
        if not self.keys:
            return
        self.cursor = max(0, min(index, len(self.keys) - 1))
        self._scroll_to_cursor()
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        rows = max(1, self.scrollable_content_region.height - 1)
        top = round(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + rows:
            self.scroll_to(y=self.cursor - rows + 1, animate=False)

    def _header_region(self) -> Region:
        return self.size.region.crop_size(Size(self.size.width, 1))

    # -- events --------------------------------------------------------------------------

    def on_click(self, event: events.Click) -> None:
        """A click on the header sorts; a click on a row moves the cursor (twice: selects)."""
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            widths = column_widths(self.columns, self.scrollable_content_region.width)
            x = 0
            for column, width in zip(self.columns, widths):
                if width <= 0:
                    continue
                if x <= offset.x < x + width + 1:
                    self.post_message(self.HeaderClicked(self, column.key))
                    return
                x += width + 1
            return
        index = round(self.scroll_y) + offset.y - 1
        if 0 <= index < len(self.keys):
            if index == self.cursor and event.chain >= 2:
                self.action_select()
            self._set_cursor(index)

    def on_resize(self, event: events.Resize) -> None:
        """Keep the virtual size in step with the width."""
        self.virtual_size = Size(event.size.width, len(self.keys) + 1)

    # -- rendering -----------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        """The lines in `crop`, each component's style worked out afresh for them."""
        self._styles = {}
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        """Line 0 is the header (never scrolls); the rest are rows from the scroll offset."""
        width = self.scrollable_content_region.width
        widths = column_widths(self.columns, width)
        if y == 0:
            labels = [header_label(c, self.sort_column, self.descending) for c in self.columns]
            text = format_line(self.columns, widths, labels)
            return self._strip(text, width, "row-table--header")
        index = round(self.scroll_y) + y - 1
        if index >= len(self.keys):
            if index == 0 and self.empty_text:
                return self._strip(self.empty_text, width, "row-table--row")
            return Strip.blank(width, self.rich_style)
        cells = self.cells(self.keys[index])
        text = format_line(self.columns, widths, cells)
        key = self.keys[index]
        cls = "row-table--cursor" if index == self.cursor else self.row_class(key)
        return self._strip(text, width, cls)

    def row_class(self, key: Hashable) -> str:
        """The component class of the row of `key` when not under the cursor."""
        native = self.native
        return "row-table--native" if native is not None and native(key) else "row-table--row"

    def _strip(self, text: str, width: int, component: str) -> Strip:
        style = self._styles.get(component)
        if style is None:  # `rich_style` walks every ancestor: once per pass, not per line
            style = self.rich_style + self.get_component_rich_style(component)
            self._styles[component] = style
        return Strip([Segment(fit(text, width, right=False), style)], width)
