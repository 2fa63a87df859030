"""`KeysFooter`: Textual's footer, changed in place when the keys it shows change.

Textual's footer recomposes (removes every key widget, mounts new ones, styles them and lays
the screen out again) whenever the screen's bindings may have changed, which includes every
change of focus. Switching views moves the focus, and the views' keys differ only by a few
keys of the view itself; the filter line hides most keys while it has the focus. The
recompose and the layout passes it caused were more than half of the time a view switch
took with a big profile (#27). This footer skips the rebuild when the keys shown are the
same; otherwise it hides the items no longer shown (for when they come back), shows those
it has, and mounts only the new ones. When it has every item needed, the change is made at
once (`bindings_changed` may be called right after the focus moved), so that it is laid out
with the view switch that caused it rather than two frames later.
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


def placement(mounted: Sequence[Signature], wanted: Sequence[Signature]) -> list[int] | None:
    """Where each of `wanted` is among `mounted` (-1: not mounted), when the mounted ones
    are in the wanted order and none is wanted twice; else None (mount all afresh)."""
    where = {sig: i for i, sig in enumerate(mounted)}
    if len(where) != len(mounted) or len(set(wanted)) != len(wanted):
        return None
    places = [where.get(sig, -1) for sig in wanted]
    found = [i for i in places if i >= 0]
    return places if found == sorted(found) else None


class KeysFooter(Footer):
    """A `Footer` that shows and hides the items it has, mounting only new ones, when the
    keys shown change."""

    #: Hidden items kept for when their keys come back (a view's keys, the filter line's).
    KEEP_HIDDEN = 24

    def __init__(self) -> None:
        """An empty footer; the keys come with the screen's bindings."""
        super().__init__()
        self._shown: Hashable = None
        #: The items mounted now, shown or hidden, in order, with what each shows.
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
            fresh = self._compose_items()
            places = placement([sig for sig, _ in self._items], [sig for sig, _ in fresh])
            hidden = sum(1 for _, item in self._items if not item.display)
            if places is None or hidden > self.KEEP_HIDDEN:
                self.call_after_refresh(self._remount)
                return
            # Shown, hidden and mounted now: laid out with the change that moved the focus
            # (a view switch), not one more frame later (a mount is not waited for).
            self._mount_missing(fresh, places)
            self._show_only({sig for sig, _ in fresh})

    async def _remount(self) -> None:
        """Remove every item and mount those the keys now need (in another order, or too
        many hidden)."""
        if not self.is_attached:
            return
        fresh = self._compose_items()
        async with self.batch():
            await self.remove_children([item for _, item in self._items])
            self._items = []
            self._mount_missing(fresh, [-1] * len(fresh))

    def _compose_items(self) -> list[tuple[Signature, Widget]]:
        """The items the keys now need (not mounted), with what each shows."""
        # Textual's footer sets its grid's column count (one per action) as it composes,
        # and a new count lays every item out again, one more layout pass after the view
        # switch that changed the keys (#27). The footer is laid out horizontally, so the
        # count is unused: set quietly first, it is no change.
        actions = {b.action for _, b, _, _ in self.screen.active_bindings.values() if b.show}
        self.styles.set_rule("grid_size_columns", len(actions))
        with self._context():  # composed as by the footer itself, whoever calls
            return [(item_signature(item), item) for item in compose(self)]

    def _show_only(self, wanted: set[Signature]) -> None:
        """Show the mounted items of the `wanted` signatures, hide the others."""
        for sig, item in self._items:
            item.display = sig in wanted

    def _mount_missing(self, fresh: list[tuple[Signature, Widget]], places: list[int]) -> None:
        """Mount the `fresh` items not mounted (place -1) before the next one that is."""
        mounted = self._items
        before: Widget | None = None
        items: list[tuple[Signature, Widget]] = []
        for (sig, item), place in reversed(list(zip(fresh, places))):
            if place >= 0:
                if items:
                    self._mount_run(items, before)
                    items = []
                before = mounted[place][1]
            else:
                items.insert(0, (sig, item))
        if items:
            self._mount_run(items, before)

    def _mount_run(self, run: list[tuple[Signature, Widget]], before: Widget | None) -> None:
        widgets = [item for _, item in run]
        if before is None:
            self.mount_all(widgets)
            self._items.extend(run)
        else:
            self.mount_all(widgets, before=before)
            at = next(i for i, (_, item) in enumerate(self._items) if item is before)
            self._items[at:at] = run
