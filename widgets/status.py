"""`StatusHeader`: what is watched, how sampling goes, and what the view shows."""

from __future__ import annotations

from textual import events
from textual.widgets import Static

from widgets.format import Status
from widgets.format import status_lines


class StatusHeader(Static):
    """Three lines built by `widgets.format.status_lines` for the header's width; state
    classes colour it."""

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
        self._width = 0

    def show(self, status: Status) -> None:
        """Display `status` (skips the update when nothing changed)."""
        width = self.content_size.width
        if status == self.status and width == self._width:
            return
        self.status = status
        self._width = width
        # Three lines across the whole width whatever they say: no layout pass of the screen.
        self.update("\n".join(status_lines(status, width or None)), layout=False)
        self.set_class(status.state == "target exited", "-exited")
        self.set_class(status.state in ("detached", "failed"), "-detached")
        self.set_class(status.paused, "-paused")

    def on_resize(self, event: events.Resize) -> None:
        """Spell the lines again for the new width."""
        if self.status is not None:
            self.show(self.status)
