"""Recognising a stack seen lately in a new snapshot, without walking its chain.

A stack decoded from a snapshot plan is kept with the values of the links its walk
depended on: each context's next context, flag and call, and each call cell's header, CAR
and CDR. When a later snapshot of the same plan shows R's head and all those links again,
it is the same stack (symbols are immortal, R does not change a call while a context refers
to it, and a cell freed and reused with the same links is the same expression): one unpack
replaces the walk, which costs ~0.5 us a frame while R is stopped.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from dataclasses import field
from typing import cast

from sampler.framenames import RawFrame
from sampler.model import Stack
from sampler.procmem import Address
from sampler.procmem import ScatterPlan
from sampler.sexp import CELL_LINK_FIELDS
from sampler.sexp import CELL_LINK_SPAN
from sampler.sexp import U64

#: Stacks kept per plan to recognise them in later snapshots (a loop's callees, and the
#: shallower stacks of its path while it calls down or returns). When full, a stack on the
#: whole plan chain replaces the least recently seen; others are not kept.
_KNOWN_STACKS = 32
#: Chains whose known stacks a new plan takes over (`take_over`); older ones are forgotten.
_KNOWN_CHAINS = 8

_Key = tuple[Address, tuple[int, ...]]


@dataclass
class KnownStack:
    """A decoded sample kept to recognise the same stack in the next snapshots."""

    head: Address
    chain: list[Address]
    cell_addresses: list[Address]
    #: Each call cell once (a recursive call repeats its cell).
    distinct_cells: list[Address]
    #: Unpacks the header, CAR and CDR of `distinct_cells` from the buffer of `cell_plan`
    #: (None: that plan lacks one of them).
    cell_struct: struct.Struct | None
    cell_plan: ScatterPlan
    cell_links: tuple[int, ...]
    frames: list[RawFrame]
    #: The finished stack, by (gc, idle, innermost builtin's symbol or 0): the reader names
    #: a recognised stack once.
    stacks: dict[tuple[bool, bool, int], Stack] = field(default_factory=dict)
    #: The last sample that showed this stack, on the planner's sample clock.
    last_seen: int = 0


def gather(
    plan: ScatterPlan, addresses: list[Address], fields: str, length: int
) -> struct.Struct | None:
    """A struct that unpacks `fields` (a struct format `length` bytes long) of every region
    at `addresses` from `plan`'s buffer in one call, in buffer order; None if the plan
    lacks one of them or two overlap (not objects R made)."""
    offsets = [plan.offsets.get(address) for address in addresses]
    if not offsets or None in offsets:
        return None
    return _struct_at(tuple(sorted(cast("list[int]", offsets))), fields, length)


@functools.lru_cache(maxsize=1024)
def _struct_at(offsets: tuple[int, ...], fields: str, length: int) -> struct.Struct | None:
    """`gather`'s struct for sorted `offsets`, made once: a plan made again, or a stack
    decoded again, usually puts the same regions at the same offsets."""
    parts, at = ["<"], 0
    for offset in offsets:
        if offset < at:
            return None
        parts.append(f"{offset - at}x{fields}")
        at = offset + length
    return struct.Struct("".join(parts))


class KnownStacks:
    """The stacks the current plan can recognise, and those of the last few plan chains."""

    def __init__(self, head_at: int) -> None:
        """Nothing known yet; R's head is at `head_at` in every snapshot's buffer."""
        self.head_at = head_at
        #: The plan whose snapshots `find` recognises stacks in.
        self.plan: ScatterPlan | None = None
        # Stacks decoded from `plan`, by head and links.
        self._known: dict[_Key, KnownStack] = {}
        # The known stacks of the last few chains a plan was made after, for a new plan
        # made after the same chain to take over (a loop's stacks outlive the detours that
        # make new plans).
        self._by_chain: dict[tuple[Address, ...], dict[_Key, KnownStack]] = {}

    def all(self) -> list[KnownStack]:
        """Every stack the current plan knows."""
        return list(self._known.values())

    def take_over(
        self, plan: ScatterPlan, chain: list[Address], links: struct.Struct | None
    ) -> None:
        """Make `plan` (made after `chain`, whose links `links` unpacks) recognise the
        stacks known after the same chain under earlier plans.

        Sound for the same reason as `find`: a key holds the values of the chain's links,
        unpacked in buffer order, which is address order in every plan (checked), so only
        where the bytes sit changes. Each stack's cells are located in the new buffer when
        it is next recognised (`_cells_in`), not here: most stacks of a recursion are never
        seen again.
        """
        key = tuple(chain)
        self.plan, self._known = plan, {}
        if not key or links is None:
            return  # nothing this plan could recognise: keep the earlier stacks for later
        at = [plan.offsets[address] for address in sorted(key)]
        if at != sorted(at):
            return  # links unpacked in another order than address order: keys would differ
        known = self._known = self._by_chain.pop(key, {})
        self._by_chain[key] = known  # a dict keeps order: most recent last
        while len(self._by_chain) > _KNOWN_CHAINS:
            del self._by_chain[next(iter(self._by_chain))]

    def find(self, plan: ScatterPlan, links: struct.Struct, got: int) -> KnownStack | None:
        """A stack known to `plan` if its snapshot of `got` bytes shows it again: the same
        head, the same values of the plan chain's `links`, and the same call
        cells. A known stack's chain lies on the plan's (`keep`), so the walk from the head
        meets only links compared here."""
        if plan is not self.plan or links.size > got:
            return None
        buf = plan.buffer
        head = U64.unpack_from(buf, self.head_at)[0]
        same = self._known.get((head, links.unpack_from(buf)))
        if same is None:
            return None
        cells = same.cell_struct if same.cell_plan is plan else self._cells_in(plan, same)
        if cells is None or cells.size > got:
            return None
        return same if cells.unpack_from(buf) == same.cell_links else None

    @staticmethod
    def _cells_in(plan: ScatterPlan, same: KnownStack) -> struct.Struct | None:
        """Locate a known stack's cells in a plan made since it was decoded."""
        same.cell_struct = gather(plan, same.distinct_cells, CELL_LINK_FIELDS, CELL_LINK_SPAN)
        same.cell_plan = plan
        return same.cell_struct

    def keep(
        self,
        plan: ScatterPlan,
        got: int,
        links: struct.Struct | None,
        on_chain: frozenset[Address],
        sample: tuple[Address, list[Address], list[Address], list[RawFrame]],
        now: int,
    ) -> KnownStack | None:
        """Keep a sample (head, chain, cells, frames) decoded from `plan` for `find`, when
        every context of its chain is on the plan's chain `on_chain` (so the `links`
        compared cover its walk: a shallower stack of the same path, the same path running
        other calls), and it and its cells were read whole (and every frame is named or has
        its symbol). `now`: the sample clock. Returns what was kept."""
        head, chain, cells, frames = sample
        if links is None or links.size > got or not on_chain.issuperset(chain):
            return None
        known = self._known
        # A stack on part of the chain only while there is room: a recursion's stacks come
        # and go by the thousand, and a loop's own stacks must not be pushed out by them.
        full = len(known) >= _KNOWN_STACKS
        if full and len(chain) != len(on_chain):
            return None
        if any(f.name is None and not f.symbol for f in frames):
            return None
        # A cell's header, CAR and CDR (a recursive call repeats its cell: once is enough).
        distinct_cells = list(dict.fromkeys(cells))
        cell_links = gather(plan, distinct_cells, CELL_LINK_FIELDS, CELL_LINK_SPAN)
        if cell_links is None or cell_links.size > got:
            return None
        if plan is not self.plan:
            return None  # a plan made since recognises what this one did
        if full:
            del known[min(known, key=lambda key: known[key].last_seen)]
        buf = plan.buffer
        same = KnownStack(
            head=head,
            chain=chain,
            cell_addresses=cells,
            distinct_cells=distinct_cells,
            cell_struct=cell_links,
            cell_plan=plan,
            cell_links=cell_links.unpack_from(buf),
            frames=frames,
            last_seen=now,
        )
        known[head, links.unpack_from(buf)] = same
        return same
