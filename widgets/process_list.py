"""`ProcessList`: the Procs view, one row per sampled process (`--subprocesses`).

The first row stands for all processes together; the others are `ProcessRow`s in the order
given (the target first). The row of what the other views show is marked "●"; processes
that ended stay listed, dimmed. Enter on a row posts `RowTable.RowSelected` with the PID
(`ALL` for the first row); the app does the choosing.
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Sequence

from rich.style import Style
from textual.strip import Strip

from sampler.model import ProcessRow
from widgets.format import Column
from widgets.row_table import RowTable

#: The key of the row that stands for every process (no process has a negative PID).
ALL = -1
#: A process's state when it has exited (its samples are kept).
ENDED = "ended"
#: The states of a process that runs (it has a CPU share).
LIVE_STATES = ("running", "sleeping")

PROCESS_COLUMNS: tuple[Column, ...] = (
    Column("shown", "", 1),
    Column("pid", "PID", 8),
    Column("role", "Role", 16, right=False),
    Column("state", "State", 10, right=False),
    Column("samples", "Samples", 8),
    Column("cpu", "CPU %", 6),
    Column("note", "Note", 0, right=False),
)

#: What the list says for a session of one process.
NO_PROCESSES = "  (one process: xrtop --subprocesses follows R's child processes too)"

_DIM = Style(dim=True)


def process_cells(row: ProcessRow, shown: bool) -> tuple[str, ...]:
    """The cells of one process, in `PROCESS_COLUMNS` order; `shown` marks it "●". PID 0 is
    a process whose PID is not known (a recorded file's target): "?"."""
    cpu = f"{row.cpu_percent:.0f}" if row.state in LIVE_STATES else ""
    return (
        "●" if shown else "",
        str(row.pid) if row.pid > 0 else "?",
        row.role,
        row.state,
        str(row.samples),
        cpu,
        row.note,
    )


def all_cells(rows: Sequence[ProcessRow], shown: bool) -> tuple[str, ...]:
    """The cells of the first row, every process together (CPU summed over the running)."""
    running = [r for r in rows if r.state in LIVE_STATES]
    count = len(rows)
    return (
        "●" if shown else "",
        "all",
        f"{count} process" + ("" if count == 1 else "es"),
        f"{len(running)} live" if running else "",
        str(sum(r.samples for r in rows)),
        f"{sum(r.cpu_percent for r in running):.0f}" if running else "",
        "functions summed over processes",
    )


class ProcessList(RowTable):
    """The sampled processes, with the one shown marked and the ended ones dimmed."""

    def __init__(self, *, id: str | None = None) -> None:
        """An empty list."""
        super().__init__(PROCESS_COLUMNS, self._cells, empty_text=NO_PROCESSES, id=id)
        self.rows: Sequence[ProcessRow] = ()
        #: The PID shown by the other views (`ALL`: every process).
        self.shown = ALL
        self._by_pid: dict[int, ProcessRow] = {}

    def show(self, rows: Sequence[ProcessRow], shown: int | None) -> None:
        """List `rows` (in this order) under the all-processes row; `shown` is the PID the
        views show (None: all)."""
        self.rows = rows
        self.shown = ALL if shown is None else shown
        self._by_pid = {r.pid: r for r in rows}
        self.set_rows([ALL, *self._by_pid] if rows else [])

    def _cells(self, key: Hashable) -> tuple[str, ...]:
        if key == ALL:
            return all_cells(self.rows, self.shown == ALL)
        row = self._by_pid.get(key)  # type: ignore[call-overload]
        return () if row is None else process_cells(row, key == self.shown)

    def render_line(self, y: int) -> Strip:
        """A row as `RowTable` draws it, dimmed when its process ended (not under the
        cursor)."""
        strip = super().render_line(y)
        index = round(self.scroll_y) + y - 1
        if y == 0 or index == self.cursor or not 0 <= index < len(self.keys):
            return strip
        row = self._by_pid.get(self.keys[index])  # type: ignore[call-overload]
        return strip.apply_style(_DIM) if row is not None and row.state == ENDED else strip
