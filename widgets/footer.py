"""`KeysFooter`: Textual's footer, rebuilt only when the keys it shows change.

Textual's footer rebuilds all its key widgets whenever the screen's bindings may have changed,
which includes every change of focus. Switching views moves the focus to the new view's widget
while the footer shows the same keys, and that rebuild (a widget per key, their styles and a
layout pass of the screen) was about half of the time a view switch took.
"""

from __future__ import annotations

from collections.abc import Hashable

from textual.screen import Screen
from textual.widgets import Footer


class KeysFooter(Footer):
    """A `Footer` that skips rebuilding when the keys, their state and tooltips are the same."""

    _shown: Hashable = None

    def bindings_changed(self, screen: Screen[object]) -> None:
        """Rebuild (as Textual's footer does) unless the keys shown have not changed."""
        palette = self.app.COMMAND_PALETTE_BINDING
        shown = tuple(
            (binding, enabled, tooltip)
            for key, (_node, binding, enabled, tooltip) in screen.active_bindings.items()
            if binding.show or key == palette
        )
        if shown == self._shown and self._bindings_ready:
            return
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            self._shown = shown  # a rebuild is due and will show these
        super().bindings_changed(screen)
