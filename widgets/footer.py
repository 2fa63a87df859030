"""`KeysFooter`: Textual's footer, changed in place when the keys it shows change.

Textual's footer recomposes (removes every key widget, mounts new ones, styles them and lays
the screen out again) whenever the screen's bindings may have changed, which includes every
change of focus. Switching views moves the focus, and the views' keys differ only by a few
keys of the view itself; the recompose and the layout passes it caused were more than half
of the time a view switch took with a big profile (#27). This footer skips the rebuild when
the keys shown are the same, and otherwise mounts and removes only the items that differ.
"""

from __future__ import annotations

from collections.abc import Hashable
from collections.abc import Sequence

from textual.compose import compose
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets import Static
from textual.widgets._footer import FooterKey

#: What one footer item shows (see `item_signature`).
Signature = tuple[Hashable, ...]


def item_signature(item: Widget) -> Signature:
    """What a composed (not yet mounted) footer item shows: its kind, classes, tooltip, key
    and text, and the same of the items inside it (a group of keys)."""
    inner = tuple(item_signature(child) for child in item._pending_children)
    common = (type(item).__name__, tuple(sorted(item.classes)), str(item.tooltip), inner)
    if isinstance(item, FooterKey):
        return (*common, item.key, item.key_display, item.description, item.action)
    if isinstance(item, Static):
        return (*common, str(item.content))
    return common


def changed_span(old: Sequence[Signature], new: Sequence[Signature]) -> tuple[int, int]:
    """(p, s): `old` and `new` share their first p and last s items (p + s <= either length);
    only the items between differ."""
    limit = min(len(old), len(new))
    p = 0
    while p < limit and old[p] == new[p]:
        p += 1
    s = 0
    while s < limit - p and old[-1 - s] == new[-1 - s]:
        s += 1
    return p, s


class KeysFooter(Footer):
    """A `Footer` that changes only the items that differ when the keys shown change."""

    def __init__(self) -> None:
        """An empty footer; the keys come with the screen's bindings."""
        super().__init__()
        self._shown: Hashable = None
        #: The items mounted now, in order, with what each shows.
        self._items: list[tuple[Signature, Widget]] = []

    def bindings_changed(self, screen: Screen[object]) -> None:
        """Update the keys (where Textual's footer recomposes) unless they have not changed."""
        self._bindings_ready = True
        palette = self.app.COMMAND_PALETTE_BINDING
        shown = tuple(
            (binding, enabled, tooltip)
            for key, (_node, binding, enabled, tooltip) in screen.active_bindings.items()
            if binding.show or key == palette
        )
        if shown == self._shown or not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self._shown = shown  # the update is due and will show these
            self.call_after_refresh(self._update_items)

    async def _update_items(self) -> None:
        """Mount the items the keys now need where they differ from those mounted."""
        if not self.is_attached:
            return
        fresh = [(item_signature(item), item) for item in compose(self)]
        old = self._items
        p, s = changed_span([sig for sig, _ in old], [sig for sig, _ in fresh])
        stale = [item for _, item in old[p : len(old) - s]]
        added = [item for _, item in fresh[p : len(fresh) - s]]
        if not stale and not added:
            return
        self._items = old[:p] + fresh[p : len(fresh) - s] + old[len(old) - s :]
        async with self.batch():
            if stale:
                await self.remove_children(stale)
            if added:
                if s:
                    await self.mount_all(added, before=old[len(old) - s][1])
                else:
                    await self.mount_all(added)
