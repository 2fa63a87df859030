"""The process picker widget: a sortable, filter-as-you-type table of R processes.

It shows `RProcessInfo` rows it is given (`set_processes`); it never looks at the system.
The R column reads e.g. "4.5.0 ctr" for a process in a container, "4.5.0 ctr web" when its
engine names it (web). Typing filters (every word must match the PID, user, command, R
version, "container" or the container's name), Backspace edits the filter, Escape clears
it; F6 cycles the sort column, ctrl+r reverses it, and clicking a header sorts by that
column. Enter posts `ProcessPicker.Chosen`.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar
from typing import Union

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.binding import BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets import Static

from sampler.model import RProcessInfo

SortValue = Union[float, str, tuple[int, ...]]


@dataclass(frozen=True)
class Column:
    """A column: its key, header, how to sort by it and whether it sorts high-first."""

    key: str
    label: str
    sort: Callable[[RProcessInfo], SortValue]
    descending: bool


def _version_key(info: RProcessInfo) -> tuple[int, ...]:
    if not info.r_version:
        return ()
    return tuple(int(p) for p in info.r_version.split(".") if p.isdigit())


COLUMNS: tuple[Column, ...] = (
    Column("pid", "PID", lambda r: r.pid, False),
    Column("user", "USER", lambda r: r.user, False),
    Column("cpu", "CPU%", lambda r: r.cpu_percent, True),
    Column("mem", "MEM", lambda r: r.rss, True),
    Column("time", "TIME", lambda r: r.elapsed, True),
    Column("r", "R", _version_key, True),
    Column("status", "STATUS", lambda r: r.blocker, False),
    Column("command", "SCRIPT / COMMAND", lambda r: r.command.lower(), False),
)
_BY_KEY = {c.key: c for c in COLUMNS}
DEFAULT_SORT = "cpu"
_KEY_CHARACTERS = {
    "slash": "/",
    "backslash": "\\",
    "at": "@",
    "minus": "-",
    "plus": "+",
    "underscore": "_",
    "space": " ",
}


def format_bytes(n: int) -> str:
    """Resident memory the way top prints it: 812K, 81.5M, 2.1G."""
    value = float(n)
    unit = "B"
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            break
        value /= 1024
    return f"{value:.0f}{unit}" if unit in ("B", "K") else f"{value:.1f}{unit}"


def format_elapsed(seconds: float) -> str:
    """Elapsed time like ps: 0:07, 12:34, 1:02:03, 3d04h."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}:{minutes:02d}:{s:02d}"
    return f"{minutes}:{s:02d}"


def matches(info: RProcessInfo, text: str) -> bool:
    """Whether every word of the filter `text` occurs (case-insensitively) in the row."""
    words = text.lower().split()
    if not words:
        return True
    hay = " ".join(
        [
            str(info.pid),
            info.user,
            info.name,
            info.command,
            f"r{info.r_version}" if info.r_version else "",
            info.r_version or "",
            "container ctr" if info.container else "",
            info.container_name,
            info.blocker,
        ]
    ).lower()
    return all(word in hay for word in words)


def order(rows: Sequence[RProcessInfo], key: str, reverse: bool = False) -> list[RProcessInfo]:
    """`rows` sorted by column `key` in its natural direction (flipped by `reverse`); ties
    by PID so that the order is stable from one refresh to the next."""
    column = _BY_KEY[key]
    by_pid = sorted(rows, key=lambda r: r.pid)
    return sorted(by_pid, key=column.sort, reverse=column.descending != reverse)


class ProcessTable(DataTable[Text]):
    """The table itself: one row per process, keyed by PID."""

    DEFAULT_CSS = """
    ProcessTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """A row-cursor table with the picker's columns."""
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.shown: list[RProcessInfo] = []
        self._sorted_by: tuple[str, bool] | None = None

    def show(self, rows: list[RProcessInfo], sort_key: str, reverse: bool) -> None:
        """Replace the rows, keeping the cursor on the same process when it is still shown."""
        current = self.highlighted()
        if (sort_key, reverse) != self._sorted_by:
            # Headers are re-made (not relabelled) so that their widths follow the arrow.
            self.clear(columns=True)
            for column in COLUMNS:
                arrow = ""
                if column.key == sort_key:
                    arrow = " ▼" if column.descending != reverse else " ▲"
                self.add_column(column.label + arrow, key=column.key)
            self._sorted_by = (sort_key, reverse)
        self.clear()
        self.shown = rows
        cells = [self._cells(info) for info in rows]
        room = self._command_room(cells)
        for info, row in zip(rows, cells):
            row[-1] = Text(fit_command(info.command, room), style=row[-1].style)
            self.add_row(*row, key=str(info.pid))
        if rows:
            index = 0
            if current is not None:
                for i, info in enumerate(rows):
                    if info.pid == current.pid:
                        index = i
                        break
            self.move_cursor(row=index, animate=False)
        self.refresh()

    def _command_room(self, cells: list[list[Text]]) -> int:
        """The cells left for the last column (scripts) once the others have theirs."""
        used = 0
        for i, column in enumerate(self.ordered_columns[:-1]):
            width = max([column.label.cell_len, *(row[i].cell_len for row in cells)])
            used += width + 2 * self.cell_padding
        return self.size.width - used - 2 * self.cell_padding - 1  # 1: the scroll bar

    def on_resize(self) -> None:
        """Fit the scripts to the new width."""
        if self._sorted_by is not None:
            self.show(self.shown, *self._sorted_by)

    def highlighted(self) -> RProcessInfo | None:
        """The process under the cursor, if any."""
        row = self.cursor_row
        if 0 <= row < len(self.shown) and self.row_count == len(self.shown):
            return self.shown[row]
        return None

    def check_consume_key(self, key: str, character: str | None) -> bool:
        """Printable keys type into the picker's filter, so no key binding (e.g. the live
        view's q or s) may take them, and the footer does not offer them."""
        if character is None:
            # Textual gives no character for some key names (e.g. "slash"): look them up.
            character = _KEY_CHARACTERS.get(key)
        return character is not None and character.isprintable() and not _modified(key)

    @staticmethod
    def _cells(info: RProcessInfo) -> list[Text]:
        style = "" if info.profilable else "dim"
        status = Text("ok", style="green") if info.profilable else Text(info.blocker, "red")
        return [
            Text(str(info.pid), style=style, justify="right"),
            Text(info.user, style=style),
            Text(f"{info.cpu_percent:.1f}", style=style, justify="right"),
            Text(format_bytes(info.rss), style=style, justify="right"),
            Text(format_elapsed(info.elapsed), style=style, justify="right"),
            Text.assemble(
                (info.r_version or "?", style),
                (container_label(info), style or "cyan"),
            ),
            status,
            Text(info.command, style=style),
        ]


def container_label(info: RProcessInfo, width: int = 16) -> str:
    """The R column's container mark: ' ctr', then the name when known (cut to `width`)."""
    if not info.container:
        return ""
    name = info.container_name
    if len(name) > width:
        name = name[: width - 1] + "…"
    return f" ctr {name}" if name else " ctr"


def fit_command(command: str, width: int) -> str:
    """`command` in about `width` cells: a long script path loses leading directories
    first ("…/r/busy.R 60"), as the script's own name is what tells processes apart."""
    if len(command) <= width or width < 8:
        return command
    head, sep, rest = command.partition(" ")
    if "/" not in head:
        return command
    keep = max(width - len(sep + rest) - 1, len(head.rsplit("/", 1)[1]) + 1)
    return "…" + head[-keep:] + sep + rest if keep < len(head) else command


def _modified(key: str) -> bool:
    # alt+x arrives as Escape followed by x; it must not type an odd character
    return any(key.startswith(m) for m in ("alt+", "ctrl+", "super+", "meta+"))


class ProcessPicker(Vertical):
    """A filter line, the process table, and a message when nothing is shown."""

    DEFAULT_CSS = """
    ProcessPicker { height: 1fr; }
    ProcessPicker > #picker-filter { height: 1; padding: 0 1; background: $boost; }
    ProcessPicker > #picker-empty { height: auto; padding: 1 2; display: none; }
    ProcessPicker.-empty > #picker-empty { display: block; }
    ProcessPicker.-empty > ProcessTable { height: 1; overflow: hidden hidden; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f6", "next_sort", "Sort by"),
        Binding("ctrl+r", "reverse_sort", "Reverse"),
    ]

    class Chosen(Message):
        """Enter was pressed on a process."""

        def __init__(self, info: RProcessInfo) -> None:
            """`info` is the chosen row."""
            super().__init__()
            self.info = info

    def __init__(self, *, empty_help: str = "", id: str | None = None) -> None:
        """`empty_help` is shown under "No R processes" (how to start one)."""
        super().__init__(id=id)
        self.empty_help = empty_help
        self.processes: list[RProcessInfo] = []
        self.filter_text = ""
        self.sort_key = DEFAULT_SORT
        self.reverse = False
        self.loaded = False

    def compose(self) -> ComposeResult:
        """Filter line, table, empty message."""
        yield Static(id="picker-filter")
        yield ProcessTable(id="picker-table")
        yield Static(id="picker-empty")

    @property
    def table(self) -> ProcessTable:
        """The table widget."""
        return self.query_one(ProcessTable)

    def on_mount(self) -> None:
        """Focus the table so arrows and Enter work while typing filters."""
        self.table.focus()
        self._update_view()

    def set_processes(self, rows: Sequence[RProcessInfo]) -> None:
        """Show a new list of processes (filtered and sorted as currently chosen)."""
        self.processes = list(rows)
        self.loaded = True
        self._update_view()

    def set_filter(self, text: str) -> None:
        """Filter by `text` (words that must all match)."""
        self.filter_text = text
        self._update_view()

    def sort_by(self, key: str, reverse: bool = False) -> None:
        """Sort by column `key` ("cpu", "mem", "pid", ...)."""
        if key not in _BY_KEY:
            raise ValueError(f"no column {key!r}")
        self.sort_key = key
        self.reverse = reverse
        self._update_view()

    @property
    def shown(self) -> list[RProcessInfo]:
        """The rows shown now, in order."""
        return self.table.shown

    def _update_view(self) -> None:
        if not self.is_mounted:
            return
        rows = order(
            [r for r in self.processes if matches(r, self.filter_text)],
            self.sort_key,
            self.reverse,
        )
        self.table.show(rows, self.sort_key, self.reverse)
        label = _BY_KEY[self.sort_key].label
        if self.filter_text:
            line = f"Filter: {self.filter_text}█   ({len(rows)} of {len(self.processes)})"
        else:
            count = len(self.processes)
            line = f"{count} R process{'es' if count != 1 else ''}; type to filter"
        self.query_one("#picker-filter", Static).update(
            Text(f"{line}    sort: {label}{' (reversed)' if self.reverse else ''}")
        )
        empty = self.query_one("#picker-empty", Static)
        if not rows and self.loaded:
            if self.processes:
                empty.update(
                    f"No R process matches '{self.filter_text}'. "
                    "Backspace edits the filter, Escape clears it."
                )
            else:
                empty.update(f"[b]No R processes are running.[/b]\n\n{self.empty_help}")
        self.set_class(not rows and self.loaded, "-empty")

    def on_key(self, event: events.Key) -> None:
        """Printable keys edit the filter; Escape clears a non-empty filter."""
        if event.key == "backspace":
            if self.filter_text:
                self.set_filter(self.filter_text[:-1])
            event.stop()
        elif event.key == "escape" and self.filter_text:
            self.set_filter("")
            event.stop()
        elif event.is_printable and event.character and not _modified(event.key):
            self.set_filter(self.filter_text + event.character)
            event.stop()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: tell the screen which process was chosen."""
        event.stop()
        info = self.table.highlighted()
        if info is not None:
            self.post_message(self.Chosen(info))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a header sorts by it; a second click reverses."""
        event.stop()
        key = str(event.column_key.value)
        self.sort_by(key, not self.reverse if key == self.sort_key else False)

    def action_next_sort(self) -> None:
        """Sort by the next column."""
        keys = [c.key for c in COLUMNS]
        self.sort_by(keys[(keys.index(self.sort_key) + 1) % len(keys)])

    def action_reverse_sort(self) -> None:
        """Reverse the sort order."""
        self.sort_by(self.sort_key, not self.reverse)
