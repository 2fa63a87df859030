"""Two profiles compared (`xrtop diff BASE NEW`): per function and per call path, the
change in share of samples, in percentage points.

Pure logic over `Aggregate`s (no I/O). Shares are of each profile's own sample count, so
profiles of different lengths compare; a function's total counts once per sample, as
R's summaryRprof counts it.
"""

from __future__ import annotations

from array import array

from sampler.model import Aggregate
from sampler.model import CallTree
from sampler.model import FunctionChange
from sampler.model import FunctionKey
from sampler.model import TreeChange
from sampler.model import signed_points

#: How many changes `change_table` lists by default (`xrtop diff --print`).
PRINT_LIMIT = 30


def _share(count: int, whole: int) -> float:
    return 100.0 * count / whole if whole > 0 else 0.0


def function_changes(base: Aggregate, new: Aggregate) -> list[FunctionChange]:
    """Every function of either profile, largest change in total share first (then in own
    share, then by name)."""
    changes = []
    for key in base.total.keys() | new.total.keys():
        changes.append(
            FunctionChange(
                key=key,
                base_own=_share(base.own.get(key, 0), base.samples),
                base_total=_share(base.total.get(key, 0), base.samples),
                new_own=_share(new.own.get(key, 0), new.samples),
                new_total=_share(new.total.get(key, 0), new.samples),
                in_base=key in base.total,
                in_new=key in new.total,
            )
        )
    return sort_changes(changes)


def sort_changes(changes: list[FunctionChange]) -> list[FunctionChange]:
    """`changes` by size of the change in total share, then in own share, then by label."""
    return sorted(changes, key=lambda c: (-abs(c.delta_total), -abs(c.delta_own), _label(c.key)))


def tree_change(base: CallTree, base_whole: int, new: CallTree) -> TreeChange:
    """For each node of `new`, the share (of `base_whole` samples) of the same call path in
    `base`, or `TreeChange.ABSENT`. One walk over `new`."""
    shares = array("d", [TreeChange.ABSENT]) * len(new)
    shares[CallTree.ROOT] = _share(base.total[CallTree.ROOT], base_whole)
    todo = [(CallTree.ROOT, CallTree.ROOT)]
    while todo:
        new_node, base_node = todo.pop()
        base_children = base.children[base_node]
        for key, child in new.children[new_node].items():
            match = base_children.get(key)
            if match is not None:
                shares[child] = _share(base.total[match], base_whole)
                todo.append((child, match))
    return TreeChange(shares)


def _label(key: FunctionKey) -> str:
    if isinstance(key, str):
        return key
    return f"{key[0]} @ {key[1]}:{key[2]}"


def change_table(changes: list[FunctionChange], limit: int = PRINT_LIMIT) -> str:
    """The `limit` largest changes in total share as a plain-text table (`--print`)."""
    shown = changes[:limit]
    header = f"{'Δtotal':>7} {'Δown':>7} {'base':>6} {'new':>6}  function"
    lines = [header]
    for c in shown:
        note = f"  ({c.only})" if c.only else ""
        lines.append(
            f"{signed_points(c.delta_total):>7} {signed_points(c.delta_own):>7} "
            f"{c.base_total:>5.1f}% {c.new_total:>5.1f}%  {_label(c.key)}{note}"
        )
    return "\n".join(lines) + "\n"
