"""Pure formatting for the views: numbers, labels, and the rows each view lists.

No Textual here. Every function maps `sampler.model` data to plain strings or row lists, so
tests check them directly and the widgets stay thin. Contracts:

- a percentage is a share of the samples on screen and never exceeds 100 % (totals count a
  function once per sample, so recursion cannot push it past; `pct` clamps anyway);
- sorting is deterministic: ties fall back to the function label;
- the tree lists only what is expanded, so its cost follows what the user opened, not the
  size of the tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass

from sampler.model import NATIVE_PREFIX
from sampler.model import CallTree
from sampler.model import FunctionKey
from sampler.model import FunctionRow
from sampler.model import SrcLoc
from sampler.model import Stack
from sampler.model import key_name

# -- numbers -----------------------------------------------------------------------------------


def pct(count: int, whole: int) -> float:
    """`count` as a percentage of `whole`, within 0..100 (0 when `whole` is 0)."""
    if whole <= 0 or count <= 0:
        return 0.0
    return min(100.0, 100.0 * count / whole)


def fmt_pct(count: int, whole: int) -> str:
    """A percentage with one decimal, e.g. "12.5%"."""
    return f"{pct(count, whole):.1f}%"


def fmt_seconds(seconds: float) -> str:
    """A duration for a table cell: "0ms", "120ms", "1.25s", "12.5s", "3m05s", "2h01m"."""
    seconds = max(0.0, seconds)
    if seconds < 0.9995:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 9.995:
        return f"{seconds:.2f}s"
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def fmt_bytes(count: int) -> str:
    """A size such as "812 B", "12.3 KiB", "1.5 MiB"."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_hz(hz: float) -> str:
    """A rate such as "100 Hz" or "97.3 Hz"."""
    return f"{hz:.0f} Hz" if abs(hz - round(hz)) < 0.05 else f"{hz:.1f} Hz"


def fmt_loc(loc: SrcLoc | None) -> str:
    """A source location as "file.R:12" (base name only), or "" when unknown."""
    if loc is None:
        return ""
    return f"{os.path.basename(loc[0]) or loc[0]}:{loc[1]}"


def is_native_key(key: FunctionKey) -> bool:
    """Whether `key` is a native frame's (`<Native:label>`, `--native`)."""
    return key_name(key).startswith(NATIVE_PREFIX)


def key_label(key: FunctionKey) -> str:
    """A function key as shown: the name, and with line aggregation "name @ file.R:12"."""
    if isinstance(key, str):
        return key
    return f"{key[0]} @ {fmt_loc((key[1], key[2]))}"


# -- the Top view ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A table column: `width` 0 takes the room the fixed columns leave."""

    key: str
    label: str
    width: int
    right: bool = True


TOP_COLUMNS: tuple[Column, ...] = (
    Column("own_pct", "Own %", 8),
    Column("total_pct", "Total %", 8),
    Column("own_time", "Own", 7),
    Column("total_time", "Total", 7),
    Column("samples", "Samples", 8),
    Column("function", "Function", 0, right=False),
    Column("location", "Location", 18, right=False),
)

#: Columns sorted in ascending order by default (text); numbers sort hottest first.
TEXT_COLUMNS = frozenset({"function", "location"})


def _count_key(column: str) -> Callable[[FunctionRow], tuple[int, int]] | None:
    if column in ("own_pct", "own_time"):
        return lambda r: (r.own, r.total)
    if column in ("total_pct", "total_time", "samples"):
        return lambda r: (r.total, r.own)
    return None


def default_descending(column: str) -> bool:
    """Whether `column` sorts hottest (largest) first when first chosen."""
    return column not in TEXT_COLUMNS


def sort_rows(rows: Iterable[FunctionRow], column: str, descending: bool) -> list[FunctionRow]:
    """`rows` ordered by `column`; ties are broken by the other count, then the label A-Z.

    Two stable sorts (label first) keep ties in label order both ways, at C speed.
    """
    ordered = sorted(rows, key=lambda r: key_label(r.key))
    counts = _count_key(column)
    if counts is not None:
        ordered.sort(key=counts, reverse=descending)
    elif column == "function":
        ordered.sort(key=lambda r: key_label(r.key).lower(), reverse=descending)
    elif column == "location":
        ordered.sort(
            key=lambda r: (r.location is None, fmt_loc(r.location).lower()),
            reverse=descending,
        )
    else:
        raise ValueError(f"no such column: {column}")
    return ordered


def row_matches(row: FunctionRow, needle: str) -> bool:
    """Whether the filter text `needle` (case-insensitive) occurs in the label or location."""
    if not needle:
        return True
    needle = needle.lower()
    return needle in key_label(row.key).lower() or (
        row.location is not None and needle in fmt_loc(row.location).lower()
    )


def top_cells(row: FunctionRow, samples: int, seconds_per_sample: float) -> tuple[str, ...]:
    """The cells of one Top row, in `TOP_COLUMNS` order (the line is in Location)."""
    return (
        fmt_pct(row.own, samples),
        fmt_pct(row.total, samples),
        fmt_seconds(row.own * seconds_per_sample),
        fmt_seconds(row.total * seconds_per_sample),
        str(row.total),
        row.name,
        fmt_loc(row.location),
    )


def header_label(column: Column, sort_column: str, descending: bool) -> str:
    """A column heading, with ▼/▲ on the sorted column."""
    if column.key != sort_column:
        return column.label
    return f"{column.label}{'▼' if descending else '▲'}"


# -- the Tree view -----------------------------------------------------------------------------

TREE_COLUMNS: tuple[Column, ...] = (
    Column("total_pct", "Total %", 8),
    Column("own_pct", "Own %", 8),
    Column("samples", "Samples", 8),
    Column("function", "Call tree", 0, right=False),
)


@dataclass(frozen=True)
class TreeLine:
    """One visible line of the call tree."""

    node: int
    depth: int
    has_children: bool
    expanded: bool


def flatten_tree(
    tree: CallTree,
    expanded: set[int],
    root: int = CallTree.ROOT,
    keep: Callable[[int], bool] | None = None,
) -> list[TreeLine]:
    """The visible lines: the children of `root` (or `root` itself when it is not the tree's
    root, i.e. a focused subtree), each followed by its own children when expanded.

    Children are listed hottest first. `keep` hides nodes (a filter); `None` keeps all.
    """
    lines: list[TreeLine] = []
    children = tree.children
    if root == CallTree.ROOT:
        stack = [(n, 0) for n in reversed(tree.sorted_children(root))]
    else:
        stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if keep is not None and not keep(node):
            continue
        has = bool(children[node])
        is_open = has and node in expanded
        lines.append(TreeLine(node, depth, has, is_open))
        if is_open:
            stack.extend((c, depth + 1) for c in reversed(tree.sorted_children(node)))
    return lines


def tree_cells(tree: CallTree, line: TreeLine, whole: int) -> tuple[str, ...]:
    """The cells of one tree line, in `TREE_COLUMNS` order."""
    node = line.node
    marker = ("▾ " if line.expanded else "▸ ") if line.has_children else "  "
    label = key_label(tree.key[node])
    return (
        fmt_pct(tree.total[node], whole),
        fmt_pct(tree.own[node], whole),
        str(tree.total[node]),
        "  " * line.depth + marker + label,
    )


def matching_nodes(tree: CallTree, needle: str) -> set[int]:
    """Nodes whose label matches `needle`, with all their ancestors (so the path shows)."""
    needle = needle.lower()
    found: set[int] = set()
    parent = tree.parent
    for node in range(1, len(tree)):
        if needle in key_label(tree.key[node]).lower():
            while node > 0 and node not in found:
                found.add(node)
                node = parent[node]
    return found


def path_to(tree: CallTree, node: int) -> list[int]:
    """Node ids from the root's child down to `node`."""
    path: list[int] = []
    while node > 0:
        path.append(node)
        node = tree.parent[node]
    path.reverse()
    return path


def key_path(tree: CallTree, node: int) -> tuple[FunctionKey, ...]:
    """The function keys from the root's child down to `node` (what identifies a node
    across trees)."""
    return tuple(tree.key[n] for n in path_to(tree, node))


def find_path(tree: CallTree, keys: tuple[FunctionKey, ...]) -> int | None:
    """The node of `tree` at the path `keys` (see `key_path`), or None."""
    node = CallTree.ROOT
    for key in keys:
        found = tree.children[node].get(key)
        if found is None:
            return None
        node = found
    return node


def descendants(tree: CallTree, node: int, limit: int) -> list[int]:
    """Up to `limit` nodes with children under `node` (itself included), hottest first."""
    out: list[int] = []
    todo = [node]
    while todo and len(out) < limit:
        n = todo.pop()
        if tree.children[n]:
            out.append(n)
            todo.extend(reversed(tree.sorted_children(n)))
    return out


# -- the Now view ------------------------------------------------------------------------------

NOW_COLUMNS: tuple[Column, ...] = (
    Column("depth", "#", 4),
    Column("function", "Function (innermost first)", 0, right=False),
    Column("location", "Location", 18, right=False),
)


def now_rows(stack: Stack | None) -> list[tuple[str, str, str]]:
    """The frames of `stack`, innermost first: (depth, name, location)."""
    if stack is None:
        return []
    rows: list[tuple[str, str, str]] = []
    if stack.gc:
        rows.append(("", "<GC>", ""))
    for i, name in enumerate(stack.names):
        rows.append((str(i + 1), name, fmt_loc(stack.site(i))))
    return rows


def now_caption(stack: Stack | None) -> str:
    """One line saying what the most recent sample was."""
    if stack is None:
        return "No sample yet."
    if not stack.names and not stack.gc:
        return (
            "Most recent sample: R is idle at top level."
            if stack.idle
            else ("Most recent sample: no R function running (top level).")
        )
    state = " (R was waiting: idle)" if stack.idle else (" (in GC)" if stack.gc else "")
    return f"Most recent sample: {len(stack.names)} frames{state}."


# -- the status header -------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """What the header shows; built by the app once per refresh."""

    title: str
    pid: int | None
    r_version: str
    state: str
    elapsed: float
    samples: int
    shown: int
    requested_hz: float
    achieved_hz: float
    errors: int
    late: int = 0
    #: Idle samples in the range, shown or not (R waiting: prompt, Sys.sleep, a system call).
    idle: int = 0
    #: Every sample of the range, idle ones too (the busy share's whole).
    in_range: int = 0
    #: Whether idle samples count in the percentages (key `i`).
    include_idle: bool = False
    #: Whether samples mark idle ones at all (a live target; a file does not).
    idle_known: bool = False
    #: Samples shown that R took while collecting garbage.
    gc: int = 0
    #: True: the GC marker is read; False: this R build has none; None: not recorded (file).
    gc_available: bool | None = None
    #: Lines are shown but R keeps no source references, so rows carry no lines.
    no_source: bool = False
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    paused: bool = False
    waiting: int = 0
    window: float | None = None
    by_line: bool = False
    filter_text: str = ""
    stream: str = ""
    last_error: str = ""
    #: Which processes the views show ("all 5 processes", "PID 1234 (mclapply worker)"; ""
    #: for a session of one process).
    processes: str = ""


def busy_text(status: Status) -> str:
    """ "busy 73%": the share of the range's samples in which R was not idle ("" unknown)."""
    if not status.idle_known or status.in_range <= 0:
        return ""
    return f"busy {pct(status.in_range - status.idle, status.in_range):.0f}%"


def gc_text(status: Status) -> str:
    """ "GC 4.2%" of the samples shown, "GC n/a" without a GC marker, "" when not recorded."""
    if status.gc_available is None:
        return ""
    if not status.gc_available:
        return "GC n/a"
    return f"GC {pct(status.gc, status.shown):.1f}%"


def status_lines(status: Status, width: int | None = None) -> tuple[str, str, str]:
    """Three header lines: what is watched; sampling health; what the view shows.

    With `width`, the second and third lines take the first of their spellings (roomy, then
    compact: no "errors 0", shorter labels and separators) that fits; what still does not
    fit is cut by the widget.
    """
    who = status.title
    if status.pid is not None:
        who += f"  PID {status.pid}"
    if status.r_version:
        who += f"  R {status.r_version}"
    state = status.state
    if status.paused:
        state = f"{state} · PAUSED: {status.waiting} new samples"
    line1 = f"{who}  [{state}]"
    line2 = line3 = ""
    for compact in (False, True):
        line2 = _health_line(status, compact)
        if width is None or len(line2) <= width:
            break
    for compact in (False, True):
        line3 = _view_line(status, compact)
        if width is None or len(line3) <= width:
            break
    return line1, line2, line3


def _health_line(status: Status, compact: bool) -> str:
    parts = [
        f"elapsed {fmt_seconds(status.elapsed)}",
        f"samples {status.samples}",
        f"rate {fmt_hz(status.requested_hz).removesuffix(' Hz')}→{fmt_hz(status.achieved_hz)}",
    ]
    if status.errors or not compact:
        parts.append(f"errors {status.errors}")
    if status.late:
        parts.append(f"late {status.late}")
    if status.cpu_percent is not None:
        parts.append(f"CPU {status.cpu_percent:.0f}%")
    if status.rss_bytes is not None:
        parts.append(f"mem {fmt_bytes(status.rss_bytes)}")
    return "  ".join(parts)


def _view_line(status: Status, compact: bool) -> str:
    by = "by line" if status.by_line else "by function"
    if status.by_line and status.no_source:
        by += " (no srcrefs)" if compact else " (R keeps no source references)"
    view = [status.processes] if status.processes else []
    view += [
        "last " + fmt_seconds(status.window) if status.window else "cumulative",
        by,
        f"{status.shown} shown" if compact else f"{status.shown} samples shown",
    ]
    if status.idle_known:
        view.append("idle shown" if status.include_idle else "idle hidden")
    view.extend(t for t in (busy_text(status), gc_text(status)) if t)
    if status.filter_text:
        view.append(f"filter '{status.filter_text}'")
    if status.stream:
        view.append(f"streaming to {status.stream}")
    if status.last_error:
        view.append(f"last error: {status.last_error}")
    return (" · " if compact else "  ·  ").join(view)
