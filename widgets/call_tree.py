"""`CallTreeView`: the aggregated call tree, opened node by node.

Only expanded nodes contribute lines, so a refresh costs what the user opened. Until the
user opens or closes anything, the hottest path is kept open as it evolves. When the app
hands over a different `CallTree` (a window rebuilt, a reset), expansion, focus and cursor
carry over by their path of function keys.

Keys: enter toggles, right opens (or steps into), left closes (or steps out), `E` opens
everything under the cursor (up to `EXPAND_LIMIT` nodes), `C` closes all, `f` focuses the
subtree under the cursor, `u` (or backspace) leaves the focus.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import ClassVar

from textual.binding import Binding
from textual.binding import BindingType

from sampler.model import CallTree
from widgets.format import TREE_COLUMNS
from widgets.format import TreeLine
from widgets.format import descendants
from widgets.format import find_path
from widgets.format import flatten_tree
from widgets.format import is_native_key
from widgets.format import key_path
from widgets.format import matching_nodes
from widgets.format import tree_cells
from widgets.row_table import RowTable

#: "Expand all" opens at most this many nodes (a deep recursion can have 100,000).
EXPAND_LIMIT = 5000


class CallTreeView(RowTable):
    """An expandable call tree with total %, own % and samples per node."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right", "open", "Open", show=False),
        Binding("left", "close", "Close", show=False),
        Binding("E", "expand_all", "Expand all"),
        Binding("C", "collapse_all", "Collapse all"),
        Binding("f", "focus_node", "Focus"),
        Binding("u,backspace", "unfocus", "Unfocus", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        """An empty tree view."""
        super().__init__(
            TREE_COLUMNS,
            self._cells,
            empty_text="  (nothing to show yet)",
            id=id,
            native=self._native,
        )
        self.calltree: CallTree | None = None
        self.whole = 0
        self.expanded: set[int] = set()
        self.root = CallTree.ROOT
        self.auto_open = True
        self.needle = ""
        self._lines: dict[int, TreeLine] = {}
        self._match_cache: tuple[str, int, set[int]] | None = None
        #: What the lines listed were listed from (see `show`).
        self._listed: tuple[object, ...] = ()

    def show(self, tree: CallTree, whole: int, needle: str = "", reset: bool = False) -> None:
        """Show `tree` (shares of `whole` samples); `reset` forgets expansion and focus."""
        # The same tree with the same samples (its counts only grow) and filter: the lines
        # listed stand (a view switch, a redraw), as do expansion and focus, which only
        # the keys here change (and list again).
        listed = (tree, len(tree), tree.total[CallTree.ROOT], whole, needle)
        if not reset and listed == self._listed:
            return
        self._listed = listed
        if reset:
            self.expanded = set()
            self.root = CallTree.ROOT
            self.auto_open = True
            self.cursor = 0
            self.keys = []
        elif self.calltree is not None and tree is not self.calltree:
            self._carry_over(self.calltree, tree)
        if tree is not self.calltree:
            self._match_cache = None
        self.calltree = tree
        self.whole = whole
        self.needle = needle
        self._relist()

    def _carry_over(self, old: CallTree, new: CallTree) -> None:
        """Map expansion, focus and cursor from `old` node ids to `new` ones."""
        expanded = set()
        for node in self.expanded:
            found = find_path(new, key_path(old, node))
            if found is not None:
                expanded.add(found)
        self.expanded = expanded
        root = find_path(new, key_path(old, self.root)) if self.root else CallTree.ROOT
        self.root = root if root is not None else CallTree.ROOT
        cursor = self.cursor_key
        if isinstance(cursor, int) and cursor < len(old):
            moved = find_path(new, key_path(old, cursor))
            self.keys = [moved] if moved is not None else []
            self.cursor = 0

    def _relist(self) -> None:
        tree = self.calltree
        if tree is None:
            return
        if self.auto_open:
            self.expanded.update(tree.hottest_path()[1:])
        expanded = self.expanded
        keep = None
        if self.needle:
            matched = self._matches(tree)
            keep = matched.__contains__
            expanded = expanded | matched
        lines = flatten_tree(tree, expanded, self.root, keep)
        self._lines = {line.node: line for line in lines}
        self.set_rows([line.node for line in lines])

    def _matches(self, tree: CallTree) -> set[int]:
        cache = self._match_cache
        if cache is None or cache[0] != self.needle or cache[1] != len(tree):
            cache = (self.needle, len(tree), matching_nodes(tree, self.needle))
            self._match_cache = cache
        return cache[2]

    def _native(self, key: Hashable) -> bool:
        """Whether the node `key` is a native frame's."""
        tree = self.calltree
        return tree is not None and isinstance(key, int) and is_native_key(tree.key[key])

    def _cells(self, key: Hashable) -> tuple[str, ...]:
        line = self._lines.get(key)  # type: ignore[call-overload]
        if line is None or self.calltree is None:
            return ()
        return tree_cells(self.calltree, line, self.whole)

    # -- actions -------------------------------------------------------------------------

    def _node(self) -> int | None:
        key = self.cursor_key
        return key if isinstance(key, int) else None

    def _touch(self) -> None:
        self.auto_open = False

    def action_select(self) -> None:
        """Toggle the node under the cursor."""
        node = self._node()
        if node is None or self.calltree is None or not self.calltree.children[node]:
            return
        self._touch()
        if node in self.expanded:
            self.expanded.discard(node)
        else:
            self.expanded.add(node)
        self._relist()

    def action_open(self) -> None:
        """Open the node under the cursor, or step to its first child when open."""
        node = self._node()
        if node is None or self.calltree is None or not self.calltree.children[node]:
            return
        if node in self.expanded:
            self.action_cursor(1)
            return
        self._touch()
        self.expanded.add(node)
        self._relist()

    def action_close(self) -> None:
        """Close the node under the cursor, or step to its parent when closed."""
        node = self._node()
        if node is None or self.calltree is None:
            return
        if node in self.expanded:
            self._touch()
            self.expanded.discard(node)
            self._relist()
            return
        parent = self.calltree.parent[node]
        if parent > 0:
            self.move_to(parent)

    def action_expand_all(self) -> None:
        """Open every node under the cursor (or the whole tree), up to EXPAND_LIMIT."""
        if self.calltree is None:
            return
        self._touch()
        node = self._node()
        start = node if node is not None else self.root
        opened = descendants(self.calltree, start, EXPAND_LIMIT)
        self.expanded.update(opened)
        self._relist()
        if len(opened) >= EXPAND_LIMIT:
            self.notify(f"Opened the first {EXPAND_LIMIT} nodes only.", severity="warning")

    def action_collapse_all(self) -> None:
        """Close every node."""
        self._touch()
        self.expanded.clear()
        self._relist()

    def action_focus_node(self) -> None:
        """Show only the subtree under the cursor."""
        node = self._node()
        if node is None or self.calltree is None:
            return
        self._touch()
        self.root = node
        self.expanded.add(node)
        self._relist()
        self.move_to(node)

    def action_unfocus(self) -> None:
        """Show the whole tree again, cursor on the node that was focused."""
        if self.root == CallTree.ROOT:
            return
        node = self.root
        self.root = CallTree.ROOT
        self._relist()
        self.move_to(node)
