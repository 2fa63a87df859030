"""`FlameView`: the call tree as an icicle graph (root at the top), live.

Each frame is a cell as wide as its share of the samples under the zoomed node; children
sit side by side under their parent, hottest first (left-heavy, so the picture keeps
still while it updates). A cell narrower than one column is not drawn, and neither is
anything under it, so a layout costs the cells on screen, not the size of the tree.

The layout (`flame_rows`) and the colours (`cell_colour`, `legend`) are pure functions;
the widget keeps the selection, the zoom and the scroll between refreshes.

Keys: arrows move between cells (← → along a row, ↑ to the caller, ↓ to the hottest
callee), enter zooms into the selected cell, backspace or escape zooms out one step, `c`
changes the colouring. The app's filter text highlights the matching cells and the line
below the graph gives their summed share.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import ClassVar
from typing import NamedTuple

from rich.cells import cell_len
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.actions import SkipAction
from textual.binding import Binding
from textual.binding import BindingType
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from sampler.model import CallTree
from sampler.model import FunctionKey
from sampler.model import TreeChange
from sampler.model import key_name
from sampler.model import signed_points
from widgets.format import find_path
from widgets.format import fmt_pct
from widgets.format import is_native_key
from widgets.format import key_label
from widgets.format import key_path
from widgets.format import pct
from widgets.row_table import fit

RGB = tuple[int, int, int]

#: Colourings `c` cycles through; "change" only when comparing two profiles.
MODES = ("package", "own")
DIFF_MODES = ("change", "package", "own")

#: The root's label (all samples shown).
ROOT_LABEL = "all"


class Cell(NamedTuple):
    """One drawn frame: tree node `node` in columns `x` to `x + width - 1`; `start` is where
    its samples begin, counted from the left edge of the root's."""

    node: int
    x: int
    width: int
    start: int


def flame_rows(tree: CallTree, root: int, width: int, depth: int) -> list[list[Cell]]:
    """The cells of the first `depth` rows of the icicle under `root` in `width` columns.

    Row 0 is `root` at full width. Each cell's extent is its samples' place within the
    root's samples, rounded down at both ends, so siblings tile without gaps or overlaps
    and a child never sticks out of its parent. The rows stop where no cell is left.
    """
    whole = tree.total[root]
    if width <= 0 or depth <= 0 or whole <= 0:
        return []
    scale = width / whole
    rows = [[Cell(root, 0, width, 0)]]
    total = tree.total
    while len(rows) < depth:
        row: list[Cell] = []
        for parent in rows[-1]:
            offset = parent.start
            for child in tree.sorted_children(parent.node):
                count = total[child]
                x0 = int(offset * scale)
                x1 = int((offset + count) * scale)
                if x1 > x0:
                    row.append(Cell(child, x0, x1 - x0, offset))
                offset += count
        if not row:
            break
        rows.append(row)
    return rows


def matched_samples(tree: CallTree, root: int, matches: Callable[[FunctionKey], bool]) -> int:
    """Samples under `root` with a matching frame: the totals of the outermost matching
    nodes (a match inside a match counts once)."""
    found = 0
    todo = [root]
    total, key, children = tree.total, tree.key, tree.children
    while todo:
        node = todo.pop()
        if node != CallTree.ROOT and matches(key[node]):
            found += total[node]
        else:
            todo.extend(children[node].values())
    return found


# -- colours -----------------------------------------------------------------------------------


def package_of(key: FunctionKey) -> str:
    """The group a frame is coloured by: the package of `pkg::f` or `pkg:::f`, the file of
    a frame aggregated by line, "<special>" for R's `<GC>`, `<Anonymous>` and the like,
    else "" (R names frames without their package)."""
    name = key_name(key)
    if name.startswith("<"):
        return "<special>"
    if "::" in name:
        return name.split("::", 1)[0]
    if isinstance(key, tuple):
        return os.path.basename(key[1]) or key[1]
    return ""


#: Distinct, light enough for black text.
PALETTE: tuple[RGB, ...] = (
    (102, 194, 165),
    (252, 141, 98),
    (141, 160, 203),
    (231, 138, 195),
    (166, 216, 84),
    (255, 217, 47),
    (229, 196, 148),
    (128, 177, 211),
    (190, 186, 218),
    (251, 128, 114),
)
SPECIAL: RGB = (170, 170, 170)
DIMMED: RGB = (70, 70, 70)
NEW: RGB = (190, 120, 255)


def _stable(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogateescape"))


def _warm(name: str) -> RGB:
    """flamegraph.pl's warm colours, varied by the name (stable between runs)."""
    h = _stable(name)
    return (205 + h % 51, 80 + (h >> 8) % 150, (h >> 16) % 56)


def _cool(name: str) -> RGB:
    """Blues for native frames, varied by the name (stable between runs)."""
    h = _stable(name)
    return (90 + h % 50, 150 + (h >> 8) % 60, 215 + (h >> 16) % 40)


def package_colour(key: FunctionKey) -> RGB:
    """A frame's colour by package (see `package_of`); frames without a package get warm
    colours that vary with the name, native frames (`--native`) cool ones."""
    if is_native_key(key):
        return _cool(key_name(key))
    group = package_of(key)
    if group == "<special>":
        return SPECIAL
    if not group:
        return _warm(key_name(key))
    return PALETTE[_stable(group) % len(PALETTE)]


#: Own share (% of samples shown) -> colour: the lower bound of each step.
OWN_STEPS: tuple[tuple[float, RGB], ...] = (
    (0.0, (238, 232, 200)),
    (0.5, (250, 220, 130)),
    (2.0, (250, 180, 80)),
    (5.0, (240, 130, 60)),
    (10.0, (225, 80, 50)),
    (25.0, (200, 30, 40)),
)

#: Change in total share (percentage points) -> colour: the upper bound of each step
#: (above the last: the last colour).
CHANGE_STEPS: tuple[tuple[float, RGB], ...] = (
    (-10.0, (40, 90, 200)),
    (-5.0, (80, 130, 225)),
    (-2.0, (130, 170, 240)),
    (-0.5, (185, 205, 245)),
    (0.5, (215, 215, 215)),
    (2.0, (245, 190, 180)),
    (5.0, (240, 140, 120)),
    (10.0, (225, 85, 65)),
    (math.inf, (190, 30, 30)),
)


def own_colour(own_pct: float) -> RGB:
    """The colour of a frame with `own_pct` % of the samples as its own."""
    colour = OWN_STEPS[0][1]
    for bound, rgb in OWN_STEPS:
        if own_pct >= bound:
            colour = rgb
    return colour


def change_colour(points: float) -> RGB:
    """The colour of a change of `points` percentage points (blue less, red more)."""
    for bound, rgb in CHANGE_STEPS:
        if points < bound:
            return rgb
    return CHANGE_STEPS[-1][1]


def legend(mode: str, groups: list[str]) -> list[tuple[str, RGB]]:
    """The legend's entries (label, colour) for `mode`; `groups` are the packages on
    screen, widest first (mode "package")."""
    if mode == "own":
        return [("own <0.5%", OWN_STEPS[0][1])] + [
            (f"≥{bound:g}%", rgb) for bound, rgb in OWN_STEPS[1:]
        ]
    if mode == "change":
        entries = [("new", NEW)]
        lower = -math.inf
        for bound, rgb in CHANGE_STEPS:
            if math.isinf(lower):
                label = f"<{bound:+g}"
            elif math.isinf(bound):
                label = f"≥{lower:+g}"
            elif lower < 0 < bound:
                label = "±0"
            else:
                label = f"{lower:+g}…{bound:+g}"
            entries.append((label, rgb))
            lower = bound
        return entries
    entries = [(group, PALETTE[_stable(group) % len(PALETTE)]) for group in groups]
    return [*entries, ("no package: by name", _warm("fn")), ("<GC> etc.", SPECIAL)]


def text_on(rgb: RGB) -> RGB:
    """Black or white, whichever reads on `rgb`."""
    r, g, b = rgb
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


# -- the widget --------------------------------------------------------------------------------


class FlameView(Widget, can_focus=True):
    """An icicle graph of a `CallTree`, with a selected cell, zoom and a legend."""

    DEFAULT_CSS = """
    FlameView {
        height: 1fr;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "step(-1)", "Left", show=False),
        Binding("right", "step(1)", "Right", show=False),
        Binding("up,k", "up", "Caller", show=False),
        Binding("down,j", "down", "Callee", show=False),
        Binding("enter", "zoom_in", "Zoom"),
        Binding("backspace,escape", "zoom_out", "Zoom out"),
        Binding("c", "colour", "Colour"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        """An empty graph."""
        super().__init__(id=id)
        self.calltree: CallTree | None = None
        self.whole = 0
        self.needle = ""
        self.change: TreeChange | None = None
        self.mode = MODES[0]
        self.zoom = CallTree.ROOT
        self.zoom_history: list[int] = []
        self.selected = CallTree.ROOT
        self.top_depth = 0  # the depth below the zoomed node shown in the first row
        self.rows: list[list[Cell]] = []
        self._match_cache: dict[FunctionKey, bool] = {}
        self._matched: int | None = None
        # The (width, rows) `rows` were laid out for: a view shown in a hidden tab gets its
        # size only when first drawn.
        self._laid_out_for = (0, 0)
        self._layout: tuple[object, ...] = ()  # what `rows` were laid out from
        self._drawn: tuple[object, ...] = ()  # what the lines on screen were drawn from
        #: The widget's own style during a `render_lines` pass (None: outside one).
        self._pass_style: Style | None = None

    # -- data ----------------------------------------------------------------------------

    def show(
        self,
        tree: CallTree,
        whole: int,
        needle: str = "",
        change: TreeChange | None = None,
    ) -> None:
        """Show `tree` (shares of `whole` samples), highlighting frames matching `needle`;
        with `change`, cells can be coloured by their change against a base profile."""
        if self.calltree is not None and tree is not self.calltree:
            self._carry_over(self.calltree, tree)
        if change is not None and self.change is None:
            self.mode = DIFF_MODES[0]
        elif change is None and self.mode not in MODES:
            self.mode = MODES[0]
        if needle != self.needle:
            self._match_cache = {}
        self.calltree = tree
        self.whole = whole
        self.needle = needle
        self.change = change
        self._relayout()

    def _carry_over(self, old: CallTree, new: CallTree) -> None:
        """Map zoom and selection from `old` node ids to `new` ones by their key paths."""

        def moved(node: int) -> int:
            found = find_path(new, key_path(old, node)) if node else CallTree.ROOT
            return CallTree.ROOT if found is None else found

        self.zoom = moved(self.zoom)
        self.zoom_history = [moved(n) for n in self.zoom_history]
        self.selected = moved(self.selected)

    def _visible_rows(self) -> int:
        return max(0, self.size.height - 2)

    def _relayout(self) -> None:
        tree = self.calltree
        if tree is None:
            return
        if self.zoom >= len(tree) or tree.total[self.zoom] == 0:
            self.zoom, self.zoom_history = CallTree.ROOT, []
        depth = self._depth(self.selected)
        if depth is None:
            self.selected, depth = self.zoom, 0
        width, rows = self.size.width, self._visible_rows()
        if not width:  # hidden (another view's tab): laid out for the size it had
            width, rows = self._laid_out_for
        self.top_depth = max(0, min(self.top_depth, depth))
        if rows and depth >= self.top_depth + rows:
            self.top_depth = depth - rows + 1
        # The cells change only with the zoomed node's samples (they only grow), new nodes,
        # the zoom or the size: a view switch or a filter key lays out nothing again.
        depth = self.top_depth + rows
        layout = (tree, len(tree), tree.total[self.zoom], self.zoom, width, depth)
        if layout != self._layout:
            self.rows = flame_rows(tree, self.zoom, width, depth)
            self._layout = layout
        self._laid_out_for = (width, rows)
        # The selection may have grown too narrow to draw: its nearest drawn caller instead.
        while self._cell(self.selected) is None and self.selected != self.zoom:
            self.selected = tree.parent[self.selected]
        # Drawn again only when something drawn changed: a view switch (show, then the
        # resize of a shown tab) keeps the lines drawn before (#27). The zoomed node's
        # samples and `whole` grow with every sample shown.
        drawn: tuple[object, ...] = (layout, self.whole, self.top_depth, self.selected)
        drawn += (self.needle, self.mode, self.change)
        if drawn != self._drawn:
            self._drawn = drawn
            self._matched = None
            self.refresh()

    def _depth(self, node: int) -> int | None:
        """How far `node` is below the zoomed node, or None when it is not under it."""
        tree = self.calltree
        if tree is None or node >= len(tree):
            return None
        depth = 0
        while node != self.zoom:
            if node <= 0:
                return None
            node = tree.parent[node]
            depth += 1
        return depth

    def _cell(self, node: int) -> tuple[int, int] | None:
        """(row, index) of `node`'s drawn cell, or None."""
        depth = self._depth(node)
        if depth is None or depth >= len(self.rows):
            return None
        for index, cell in enumerate(self.rows[depth]):
            if cell.node == node:
                return depth, index
        return None

    def matches(self, key: FunctionKey) -> bool:
        """Whether `key` matches the filter text (case-insensitive, as the other views)."""
        found = self._match_cache.get(key)
        if found is None:
            found = self.needle.lower() in key_label(key).lower()
            self._match_cache[key] = found
        return found

    def matched(self) -> int:
        """Samples under the zoomed node with a frame matching the filter text."""
        if self._matched is None:
            tree = self.calltree
            self._matched = (
                matched_samples(tree, self.zoom, self.matches)
                if tree is not None and self.needle
                else 0
            )
        return self._matched

    # -- actions -------------------------------------------------------------------------

    def _select(self, node: int) -> None:
        self.selected = node
        self._relayout()

    def action_step(self, delta: int) -> None:
        """Select the cell `delta` places left or right on the selected cell's row."""
        found = self._cell(self.selected)
        if found is None:
            return
        row, index = found
        cells = self.rows[row]
        self._select(cells[max(0, min(len(cells) - 1, index + delta))].node)

    def action_up(self) -> None:
        """Select the caller of the selected cell."""
        if self.calltree is not None and self.selected != self.zoom:
            self._select(self.calltree.parent[self.selected])

    def action_down(self) -> None:
        """Select the hottest callee of the selected cell (the graph scrolls down to it)."""
        tree = self.calltree
        if tree is not None and tree.children[self.selected]:
            self._select(max(tree.children[self.selected].values(), key=tree.total.__getitem__))

    def action_zoom_in(self) -> None:
        """Make the selected cell the full width."""
        if self.selected == self.zoom or self.calltree is None:
            return
        self.zoom_history.append(self.zoom)
        self.zoom = self.selected
        self.top_depth = 0
        self._relayout()

    def action_zoom_out(self) -> None:
        """Back to the zoom before the last (the key goes on to the app when not zoomed)."""
        if not self.zoom_history:
            raise SkipAction()
        self.zoom = self.zoom_history.pop()
        self.top_depth = 0
        self._relayout()

    def action_colour(self) -> None:
        """Colour by the next scheme (package, own share, and change in a diff)."""
        modes = DIFF_MODES if self.change is not None else MODES
        self.mode = modes[(modes.index(self.mode) + 1) % len(modes)]
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        """Lay out again for the new size."""
        self._relayout()

    def on_click(self, event: events.Click) -> None:
        """A click selects the cell under the pointer (twice: zooms into it)."""
        offset = event.get_content_offset(self)
        if offset is None:
            return
        row = offset.y + self.top_depth
        if row >= len(self.rows):
            return
        for cell in self.rows[row]:
            if cell.x <= offset.x < cell.x + cell.width:
                self._select(cell.node)
                if event.chain >= 2:
                    self.action_zoom_in()
                return

    # -- rendering -----------------------------------------------------------------------

    def label(self, node: int) -> str:
        """A cell's name as shown."""
        tree = self.calltree
        if tree is None or node == CallTree.ROOT:
            return ROOT_LABEL
        return key_label(tree.key[node])

    def colour(self, node: int) -> RGB:
        """The fill of `node`'s cell in the current colouring (before highlighting)."""
        tree = self.calltree
        assert tree is not None
        if node == CallTree.ROOT:
            return SPECIAL
        if self.mode == "own":
            return own_colour(pct(tree.own[node], self.whole))
        if self.mode == "change" and self.change is not None:
            if self.change.is_new(node):
                return NEW
            return change_colour(self.change.delta(node, pct(tree.total[node], self.whole)))
        return package_colour(tree.key[node])

    def info_line(self) -> str:
        """The selected cell in full: name, total and own share (and change in a diff),
        the zoom, and the share of the frames matching the filter."""
        tree = self.calltree
        if tree is None or not self.whole:
            return " (nothing to show yet)"
        node = self.selected
        text = (
            f" {self.label(node)}  total {fmt_pct(tree.total[node], self.whole)}"
            f" ({tree.total[node]})  own {fmt_pct(tree.own[node], self.whole)}"
        )
        if self.change is not None:
            if self.change.is_new(node):
                text += "  new"
            else:
                share = pct(tree.total[node], self.whole)
                text += f"  change {signed_points(self.change.delta(node, share))} pp"
        # The match before the zoom: the line is cut at the right on a narrow screen.
        if self.needle:
            text += f"  · match '{self.needle}': {fmt_pct(self.matched(), self.whole)}"
        if self.zoom != CallTree.ROOT:
            text += f"  · zoomed: {self.label(self.zoom)}"
        return text

    def _groups(self) -> list[str]:
        """The packages on screen, widest first."""
        tree = self.calltree
        widths: dict[str, int] = {}
        if tree is not None:
            for row in self.rows[self.top_depth :]:
                for cell in row:
                    group = package_of(tree.key[cell.node]) if cell.node else ""
                    if group and group != "<special>":
                        widths[group] = widths.get(group, 0) + cell.width
        return sorted(widths, key=lambda g: (-widths[g], g))

    def legend_strip(self, width: int) -> Strip:
        """The legend: one swatch per colour, as many as fit."""
        base = self._pass_style or self.rich_style
        title = {"own": "own share:", "change": "change, pp:", "package": "package:"}[self.mode]
        segments = [Segment(f" {title}", base)]
        used = cell_len(title) + 1
        for label, rgb in legend(self.mode, self._groups()):
            piece = f" {label} "
            if used + 1 + cell_len(piece) > width:
                break
            segments.append(Segment(" ", base))
            segments.append(Segment(piece, _fill(rgb)))
            used += 1 + cell_len(piece)
        segments.append(Segment(" " * max(0, width - used), base))
        return Strip(segments, width).crop(0, width)

    def render_lines(self, crop: Region) -> list[Strip]:
        """The lines in `crop`; the widget's style is worked out once for all of them
        (`rich_style` walks every ancestor)."""
        self._pass_style = self.rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._pass_style = None

    def render_line(self, y: int) -> Strip:
        """The graph's rows, then the selected cell's line, then the legend."""
        width = self.size.width
        rows = self._visible_rows()
        if self._laid_out_for != (width, rows):
            self._relayout()
        blank = self._pass_style or self.rich_style
        if y == rows:
            return Strip([Segment(fit(self.info_line(), width, right=False), blank)])
        if y == rows + 1:
            return self.legend_strip(width)
        depth = self.top_depth + y
        if y > rows or depth >= len(self.rows) or self.calltree is None:
            return Strip.blank(width, blank)
        segments: list[Segment] = []
        x = 0
        for cell in self.rows[depth]:
            if cell.x > x:
                segments.append(Segment(" " * (cell.x - x), blank))
            segments.extend(self._cell_segments(cell, blank))
            x = cell.x + cell.width
        if x < width:
            segments.append(Segment(" " * (width - x), blank))
        return Strip(segments, width)

    def _cell_segments(self, cell: Cell, blank: Style) -> list[Segment]:
        """A cell: its name cut to fit on its colour, and one blank column (in `blank`, the
        widget's own style, worked out once per pass: it walks every ancestor) at its right
        edge when it is wide enough, so that neighbours of one colour stay apart."""
        tree = self.calltree
        assert tree is not None
        rgb = self.colour(cell.node)
        if self.needle and cell.node and not self.matches(tree.key[cell.node]):
            rgb = DIMMED
        style = _fill(rgb)
        if cell.node == self.selected:
            style += Style(reverse=True, bold=True)
        inner = cell.width - 1 if cell.width >= 3 else cell.width
        # One column holds no readable name: just the colour.
        text = fit(self.label(cell.node), inner, right=False) if inner > 1 else " " * inner
        segments = [Segment(text, style)]
        if inner < cell.width:
            segments.append(Segment(" ", blank))
        return segments


@lru_cache(maxsize=4096)
def _fill(rgb: RGB) -> Style:
    """Black or white text on `rgb` (made once per colour: every cell of every line needs
    one)."""
    return Style(bgcolor=Color.from_rgb(*rgb), color=Color.from_rgb(*text_on(rgb)))
