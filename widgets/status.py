"""`StatusHeader`: what is watched, how sampling goes, and what the view shows."""

from __future__ import annotations

from textual.widgets import Static

from widgets.format import Status
from widgets.format import status_lines


class StatusHeader(Static):
    """Three lines built by `widgets.format.status_lines`; state classes colour it."""

    DEFAULT_CSS = """
    StatusHeader { height: 3; padding: 0 1; background: $boost; }
    StatusHeader.-exited { background: $warning 30%; }
    StatusHeader.-detached { background: $error 25%; }
    StatusHeader.-paused { background: $accent 30%; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        """An empty header until the first `show()`."""
        super().__init__("", id=id, markup=False)
        self.status: Status | None = None

    def show(self, status: Status) -> None:
        """Display `status` (skips the update when nothing changed)."""
        if status == self.status:
            return
        self.status = status
        self.update("\n".join(status_lines(status)))
        self.set_class(status.state == "target exited", "-exited")
        self.set_class(status.state in ("detached", "failed"), "-detached")
        self.set_class(status.paused, "-paused")
