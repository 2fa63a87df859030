"""Reading R's call stack out of another process and naming frames as R's Rprof does.

A sample has two halves, so the target is stopped as briefly as possible:

- While the target is stopped, everything that can change once R runs on is copied: the
  context chain (C-stack locals), the call objects of function contexts, and the heads of
  calls that are not plain symbols (`pkg::f`, `x$f`, `x[["f"]]`). The sampler thread's
  fast path does only `snapshot()` here: one `process_vm_readv` of the regions the last
  samples needed (contexts of the same call path sit at the same C-stack addresses; a call
  object belongs to its function's body). `capture()` is the complete version, which also
  reads on the spot whatever the snapshot lacks.
- After the target was resumed, `decode_snapshot()` follows the chain through the copy
  (which is ours, so it still shows the stack at the stop) and gives up when the copy
  lacks a region, and `finish()` turns symbol addresses into names. Reading names while R
  runs is sound because R never frees or changes a symbol or its name (CHARSXP); the names
  are cached by address for the life of the target.

Naming rules (R's eval.c `doprof`): a context is a frame when its flag has CTXT_FUNCTION or
CTXT_BUILTIN and its call is a LANGSXP. The call's head names it: a symbol by its name;
`a::b`, `a:::b`, `a$b` with two symbol arguments as written; `a[[i]]` with a symbol and a
symbol, string or number; everything else `<Anonymous>`.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import cast

from sampler.errors import BadAddressError
from sampler.errors import TornSampleError
from sampler.layouts import CELL_SIZE
from sampler.layouts import CLOSXP
from sampler.layouts import CTXT_BUILTIN
from sampler.layouts import CTXT_FUNCTION
from sampler.layouts import ENVSXP
from sampler.layouts import INTSXP
from sampler.layouts import LANGSXP
from sampler.layouts import REALSXP
from sampler.layouts import STRSXP
from sampler.layouts import SYMSXP
from sampler.layouts import TYPE_MASK
from sampler.layouts import VECTOR_DATA
from sampler.layouts import VECTOR_LENGTH
from sampler.layouts import ContextLayout
from sampler.model import Stack
from sampler.procmem import Address
from sampler.procmem import ProcessMemory
from sampler.procmem import ScatterPlan
from sampler.srcref import RawLines
from sampler.srcref import SrcrefReader
from sampler.symbols import RBinary

ANONYMOUS = "<Anonymous>"
MAX_DEPTH = 10_000  # R's expression limit is 5000; deeper means a corrupt chain
MAX_NAME = 4096  # longest symbol name R allows is 10000 bytes, but 4 KB is plenty for frames
_NAME_GUESS = 64  # bytes read after a CHARSXP header before knowing its length

_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")
_F64 = struct.Struct("<d")
_CELL = struct.Struct("<Q8x16x3Q")  # sxpinfo, (attrib), (gc links), CAR, CDR, TAG
_HEAD = struct.Struct("<Q24xQ")  # sxpinfo and CAR
#: Stacks kept per plan to recognise them in later snapshots (a loop's callees, and the
#: shallower stacks of its path while it calls down or returns). When full, a stack on the
#: whole plan chain replaces the least recently seen; others are not kept.
_KNOWN_STACKS = 32
#: Chains whose known stacks a new plan takes over (`_take_over_known`); older ones are forgotten.
_KNOWN_CHAINS = 8
_CALLABLE = (CLOSXP, 7, 8)  # a closure, SPECIALSXP or BUILTINSXP
#: The snapshot plan keeps the addresses the last this many samples needed. Each region
#: costs the kernel ~0.4 us per stop (more when cold), so the plan holds only what the
#: stack needed lately (e.g. both sides of a loop that alternates two functions).
_RECENT_SAMPLES = 64
#: ... and at most this many addresses beyond the current sample's (for contexts, or the
#: plan chain's if longer: a shallow detour must not push the loop's chain out), per kind.
_RECENT = 24
#: For how many samples after the stack reached a new address the plan guesses deeper ones.
_GUESS_FOR = 64

_Bytes = bytes | bytearray | memoryview | ctypes.Array[ctypes.c_char]


@dataclass(slots=True)
class _Same:
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
    #: The finished stack, by (gc, idle): `finish()` names a recognised stack once.
    stacks: dict[tuple[bool, bool], Stack] = field(default_factory=dict)
    #: The last sample that showed this stack, on the reader's sample clock.
    last_seen: int = 0


class _SnapshotMiss(Exception):
    """The snapshot lacks memory this sample needs, and the target may be running."""


@dataclass(slots=True)
class RawFrame:
    """A frame captured while the target was stopped; `name` or `symbol` is set."""

    name: str | None = None
    symbol: Address = 0


@dataclass(slots=True)
class RawSample:
    """What `capture()` copied; `finish()` turns it into a `Stack`."""

    frames: list[RawFrame] = field(default_factory=list)
    gc: bool = False
    idle: bool = False
    contexts: int = 0
    head: Address = 0
    #: Source locations to resolve (only when the reader reads lines).
    lines: RawLines | None = None
    #: The stack seen lately that this sample is (set by the reader, for `finish()`).
    known: _Same | None = None


def _gather(
    plan: ScatterPlan, addresses: list[Address], fields: str, length: int
) -> struct.Struct | None:
    """A struct that unpacks `fields` (a struct format `length` bytes long) of every region
    at `addresses` from `plan`'s buffer in one call, in buffer order; None if the plan
    lacks one of them or two overlap (not objects R made)."""
    offsets = [plan.offsets.get(address) for address in addresses]
    if not offsets or None in offsets:
        return None
    return _struct_at(tuple(sorted(cast(list[int], offsets))), fields, length)


@functools.lru_cache(maxsize=1024)
def _struct_at(offsets: tuple[int, ...], fields: str, length: int) -> struct.Struct | None:
    """`_gather`'s struct for sorted `offsets`, made once: a plan made again, or a stack
    decoded again, usually puts the same regions at the same offsets."""
    parts, at = ["<"], 0
    for offset in offsets:
        if offset < at:
            return None
        parts.append(f"{offset - at}x{fields}")
        at = offset + length
    return struct.Struct("".join(parts))


def _cell(data: bytes) -> tuple[int, int, int, int]:
    """(type, CAR, CDR, TAG) of a node read with CELL_SIZE bytes."""
    info, car, cdr, tag = _CELL.unpack_from(data)
    return info & TYPE_MASK, car, cdr, tag


class StackReader:
    """Reads and names R stacks in one target process."""

    def __init__(
        self,
        memory: ProcessMemory,
        binary: RBinary,
        layout: ContextLayout,
        version: tuple[int, int],
        *,
        gc_flag: Address | None = None,
        validate: bool = False,
    ) -> None:
        """Read the constant globals (R_NilValue, the operator symbols) once."""
        self.memory = memory
        self.layout = layout
        self.version = version
        self.validate = validate
        syms = binary.symbols
        self.global_context: Address = syms["R_GlobalContext"]
        self.gc_flag = gc_flag
        values = self._read_pointers(
            [
                syms.get(name, 0)
                for name in (
                    "R_NilValue",
                    "R_DoubleColonSymbol",
                    "R_TripleColonSymbol",
                    "R_DollarSymbol",
                    "R_Bracket2Symbol",
                )
            ]
        )
        self.nil = values[0]
        self.operators = {
            values[1]: "::",
            values[2]: ":::",
            values[3]: "$",
        }
        self.operators.pop(0, None)
        self.bracket2 = values[4]
        self.names: dict[Address, str] = {}
        # Name of a compound head (`a::b` ...) keyed by the head node's address and its CAR
        # and CDR. R's parser never mutates a call in place, so the same node with the same
        # links is the same expression; a node freed and reused gets different links.
        self.compound_names: dict[tuple[Address, Address, Address], str] = {}
        self._globals_span = self._span([self.global_context, gc_flag])
        # Where R_GlobalContext and the GC flag sit in a read of the globals' span.
        span_start = self._globals_span[0] if self._globals_span else self.global_context
        self._head_at = self.global_context - span_start
        self._gc_at = gc_flag - span_start if gc_flag else -1
        # nextcontext, callflag, callfun, call, cloenv in one unpack (call follows sysparent).
        self._context_struct = struct.Struct(
            f"<Qi{layout.callfun - 12}xQ{layout.call - layout.callfun - 8}xQQ"
        )
        assert layout.cloenv == layout.call + 8 and layout.callflag == 8
        # nextcontext, callflag and call only: what `snapshot_complete` follows.
        self._link_struct = struct.Struct(f"<Qi{layout.call - 12}xQ")
        self._prev_chain: list[Address] = []
        # What a decode while stopped found, for `_learn()` to remember after resuming.
        self._unlearned: tuple[list[Address], list[Address]] | None = None
        self._prev_cells: list[Address] = []
        self._stride = 0
        # Addresses of the last samples' contexts and cells (calls, non-symbol heads), each
        # with the last sample that needed it: the regions of the next snapshot.
        self._recent_contexts: dict[Address, int] = {}
        self._recent_cells: dict[Address, int] = {}
        self._plan: ScatterPlan | None = None
        self._snapped: ScatterPlan | None = None  # the plan the last snapshot was read with
        # The chain whose links each plan's `_unchanged` compares (the loop's: see
        # `_make_plan`), its contexts, and the struct that unpacks those links from the
        # plan's buffer.
        self._plan_chain: list[Address] = []
        self._plan_contexts: frozenset[Address] = frozenset()
        self._snapped_contexts: frozenset[Address] = frozenset()
        self._plan_links: struct.Struct | None = None
        self._snapped_links: struct.Struct | None = None
        self._plan_guesses = False  # whether the plan holds guessed context addresses
        self._samples = 0  # samples decoded, as a clock for `_last_new_context`
        self._walked_at = 0  # the clock at the last `_remember` that marked addresses
        self._last_new_context = 0  # when a context address not seen recently last appeared
        self.last_head: Address = 0
        # Whether every snapshot reads R_GlobalContext again at its end (`snapshot_torn`).
        self.recheck_head = False
        #: Samples decoded as a stack seen lately (`_unchanged`), without walking the chain.
        self.recognised = 0
        #: Reads made by `warm()` (while R runs, so not part of any sample's stop).
        self.warmed = 0
        # Stacks decoded from the plan `_known_plan`, by head and links (`_unchanged`).
        self._known_plan: ScatterPlan | None = None
        self._known: dict[tuple[Address, tuple[int, ...]], _Same] = {}
        # The known stacks of the last few chains a plan was made after, for a new plan
        # made after the same chain to take over (a loop's stacks outlive the detours that
        # make new plans).
        self._known_by_chain: dict[
            tuple[Address, ...], dict[tuple[Address, tuple[int, ...]], _Same]
        ] = {}
        # What `_unchanged` found in the last snapshot (checked while stopped, used after).
        self._recognised_in_snapshot: _Same | None = None

        #: Reads source lines when set (`sampler.target.Target.set_lines`); None: no lines.
        self.lines: SrcrefReader | None = None

    def _read_pointers(self, addresses: list[Address]) -> list[Address]:
        result = []
        for address in addresses:
            if address == 0:
                result.append(0)
                continue
            result.append(_U64.unpack(self.memory.read(address, 8))[0])
        return result

    @staticmethod
    def _span(addresses: list[Address | None]) -> tuple[Address, int] | None:
        """One read covering all global addresses when they are close (they share .bss)."""
        present = [a for a in addresses if a]
        if max(present) - min(present) > 1 << 16:
            return None
        return min(present), max(present) - min(present) + 8

    # -- stopped half --------------------------------------------------------------------
    #
    # A sample is decoded from one *snapshot*: a single process_vm_readv of every region
    # the previous samples suggest this one needs (`_plan`). The decoder follows the real
    # chain through those bytes. Guessed bytes are used only where the real chain points,
    # and all of them come from the same stop, so a wrong guess costs a wasted read, never
    # a wrong frame. What the snapshot lacks is either read on the spot (`capture()`, the
    # target still stopped) or reported as a miss (`decode_snapshot()`, the target already
    # running again: memory that can change must not be read then, so the caller samples
    # again the slow way).

    def read_globals(self) -> tuple[Address, bool]:
        """(R_GlobalContext, in GC) now."""
        span = self._globals_span
        if span is not None:
            data = self.memory.read(span[0], span[1])
            context = _U64.unpack_from(data, self.global_context - span[0])[0]
            in_gc = False
            if self.gc_flag:
                in_gc = _I32.unpack_from(data, self.gc_flag - span[0])[0] != 0
            return context, in_gc
        context = _U64.unpack(self.memory.read(self.global_context, 8))[0]
        in_gc = bool(self.gc_flag) and _I32.unpack(self.memory.read(self.gc_flag or 0, 4))[0] != 0
        return context, in_gc

    def _make_plan(self, chain: list[Address] | None = None) -> ScatterPlan:
        """The regions the next sample likely needs, read by `snapshot()` in one call.

        Contexts: the last samples' chains (the outer part of a stack rarely moves, and a
        context at the same depth of the same path sits at the same C-stack address), and,
        when the stack grows by recursion, addresses a fixed stride below the innermost.
        Calls and non-symbol heads: those of the last few samples (a call object is part of
        its function's body, so every call of `f(x)` in one body is the same object).
        Regions known to have been readable come first and guesses last, because a read
        stops at the first unmapped region.

        The plan recognises stacks whose contexts all lie on `chain` (`_unchanged`): by
        default the chain of the plan before, while the plan still reads all of it (a
        loop's chain outlives its detours), else the last sample's.
        """
        size = self.layout.size
        span = self._globals_span or (self.global_context, 8)
        # The globals are read first, at offset 0 of the buffer (and, without stops, last
        # again: `snapshot_torn`).
        leading, trailing = [span], [span] if self.recheck_head else []
        regions: list[tuple[Address, int]] = []
        if chain is None:
            kept, recent = self._plan_chain, self._recent_contexts
            chain = kept if kept and all(a in recent for a in kept) else self._prev_chain
        self._plan_chain = chain
        self._plan_contexts = frozenset(chain)
        # Most recently seen first: a plan holds at most 1024 regions.
        by_recency = sorted(self._recent_contexts, key=self._recent_contexts.__getitem__)
        regions += [(a, size) for a in reversed(by_recency)]
        by_recency = sorted(self._recent_cells, key=self._recent_cells.__getitem__)
        regions += [(c, CELL_SIZE) for c in reversed(by_recency)]
        lines = self.lines
        if lines is not None:
            regions += lines.plan_regions()  # srcref nodes, bodies, pc words (sampler.srcref)
        guesses = []
        chain = self._prev_chain
        # Guesses cost the kernel one iovec each (~0.4 us), so they are made only while the
        # stack is still reaching new addresses; a stack that stays within known ones (any
        # loop below a fixed call chain) gets none.
        growing = self._samples - self._last_new_context < _GUESS_FOR
        self._plan_guesses = growing
        if chain and self._stride >= size and growing:
            head = chain[0]
            guesses += [(head - k * self._stride, size) for k in range(1, 9)]
            guesses += [(head + k * self._stride, size) for k in range(1, 9)]
        plan = self.memory.plan(regions, guesses, leading=leading, trailing=trailing)
        # A context's links: next context, flag (and padding), ..., call.
        call = self.layout.call
        # (Only with the globals in one span: `_unchanged` and `_same_sample` find R's
        # head and GC flag in it.)
        self._plan_links = (
            _gather(plan, self._plan_chain, f"Qi{call - 12}xQ", call + 8)
            if self._globals_span is not None
            else None
        )
        self._take_over_known(plan)
        return plan

    def _take_over_known(self, plan: ScatterPlan) -> None:
        """Make `plan` recognise the stacks known after the same chain under earlier plans.

        Sound for the same reason as `_unchanged`: a key holds the values of the chain's
        links, unpacked in buffer order, which is address order in every plan (checked),
        so only where the bytes sit changes. Each stack's cells are located in the new
        buffer when it is next recognised (`_cells_in`), not here: most stacks of a
        recursion are never seen again.
        """
        chain = tuple(self._plan_chain)
        self._known_plan, self._known = plan, {}
        if not chain or self._plan_links is None:
            return  # nothing this plan could recognise: keep the earlier stacks for later
        at = [plan.offsets[address] for address in sorted(chain)]
        if at != sorted(at):
            return  # links unpacked in another order than address order: keys would differ
        known = self._known = self._known_by_chain.pop(chain, {})
        self._known_by_chain[chain] = known  # a dict keeps order: most recent last
        while len(self._known_by_chain) > _KNOWN_CHAINS:
            del self._known_by_chain[next(iter(self._known_by_chain))]

    def snapshot(self) -> int:
        """Copy what the next sample likely needs, in one read. Call while stopped.

        Returns the byte count to pass to `decode_snapshot()` once the target runs again.
        """
        return self._read_plan()

    def warm(self) -> None:
        """Run `snapshot()` and `snapshot_complete()` once while the target runs, discarding
        the result, so the stopped half that follows finds everything in the CPU's caches.

        Sound while R runs: it only reads (a torn copy is fine, it is thrown away), and the
        next `snapshot()` overwrites the buffer it used.
        """
        self.warmed += 1
        self.snapshot_complete(self._read_plan())

    def _read_plan(self) -> int:
        if self._unlearned is not None:
            self._learn()  # normally done by `finish()`, after the target resumed
        plan = self._plan
        if plan is None:
            plan = self._plan = self._make_plan()
        # Decoding may make a new plan for the next sample; the bytes stay in this one.
        self._snapped = plan
        self._snapped_contexts = self._plan_contexts
        self._snapped_links = self._plan_links
        self._recognised_in_snapshot = None
        return plan.read()

    def decode_snapshot(self, got: int) -> RawSample | None:
        """Decode the last `snapshot()`; None when it lacks something (sample again).

        Safe while the target runs: it reads only the snapshot, plus symbol names, which
        never change (see `finish()`).
        """
        if self.validate or self._snapped is None:
            return None
        if self.lines is None:
            same = self._recognised_in_snapshot or self._unchanged(got)
            if same is not None:
                return self._same_sample(same)
        try:
            return self._decode(got, live=False)
        except _SnapshotMiss:
            return None

    def _unchanged(self, got: int) -> _Same | None:
        """A stack decoded lately from this plan if this snapshot shows it again: the same
        head, every context of the plan's chain with the same links, and the same call
        cells. The stack's own chain lies on the plan's (`_keep_known`), so the walk from
        the head meets only links compared here.

        The links are what the walk and the names depend on: a context's next context,
        flag and call; a cell's header (its type), CAR and CDR. Names come from symbols,
        which R never frees or changes. R does not change a call while a context refers
        to it, and a cell freed and reused at the same address with the same header, CAR
        and CDR is the same expression, so equal links mean equal frames. One unpack
        replaces the walk, which costs ~0.5 us a frame while R is stopped.
        """
        plan, links = self._snapped, self._snapped_links
        if plan is None or plan is not self._known_plan or links is None or links.size > got:
            return None
        # Links exist, so the plan read the globals, at offset 0.
        buf = plan.buffer
        head = _U64.unpack_from(buf, self._head_at)[0]
        same = self._known.get((head, links.unpack_from(buf)))
        if same is None:
            return None
        cells = same.cell_struct if same.cell_plan is plan else self._cells_in(plan, same)
        if cells is None or cells.size > got:
            return None
        return same if cells.unpack_from(buf) == same.cell_links else None

    @staticmethod
    def _cells_in(plan: ScatterPlan, same: _Same) -> struct.Struct | None:
        """Locate a known stack's cells in a plan made since it was decoded."""
        same.cell_struct = _gather(plan, same.distinct_cells, "Q24xQQ", 48)
        same.cell_plan = plan
        return same.cell_struct

    def set_recheck_head(self, on: bool) -> None:
        """Make every snapshot read R_GlobalContext again at its end, for sampling without
        stopping R (see `snapshot_torn`)."""
        self.recheck_head = on
        self._plan = None

    def snapshot_torn(self, got: int) -> bool | None:
        """Whether R_GlobalContext changed while the last snapshot was read (with
        `recheck_head`); None when the snapshot lacks its second look at it."""
        plan = self._snapped
        span = self._globals_span
        if plan is None or span is None or not plan.trailing_offsets:
            return None
        again = plan.trailing_offsets[0]
        if again + span[1] > got:
            return None
        where = self.global_context - span[0]
        buf = plan.buffer
        return bool(_U64.unpack_from(buf, where)[0] != _U64.unpack_from(buf, again + where)[0])

    def snapshot_complete(self, got: int) -> bool:
        """Whether the last snapshot holds everything `decode_snapshot()` needs.

        Call while the target is still stopped: when it says no, `decode_stopped()` reads
        the rest before the target runs on, so every sample shows the stack at the moment
        of its stop (sampling again later instead would favour what runs after rare stacks
        over the rare stacks themselves). It follows the chain like `_decode`, but builds
        nothing, so it costs a fraction of decoding.
        """
        plan = self._snapped
        if plan is None or self.validate or self.lines is not None:
            return False  # lines need reads that follow the chain: decode while stopped
        self._recognised_in_snapshot = self._unchanged(got)
        if self._recognised_in_snapshot is not None:
            return True
        buf, offset_of, locate = plan.buffer, plan.offsets.get, plan.locate
        span = self._globals_span
        if span is None:
            return False
        offset = offset_of(span[0])
        if offset is None or offset + span[1] > got:
            return False
        address = _U64.unpack_from(buf, offset + self.global_context - span[0])[0]
        size = self.layout.size
        link = self._link_struct.unpack_from
        names = self.names
        hops = 0
        limit = plan.size // size + 1  # a chain longer than fits in the copy must loop
        # The find-in-copy steps below are written out three times on purpose: this loop
        # runs while R is stopped, once per frame, and a helper call per step would add
        # about a tenth of a microsecond each, several microseconds per deep stack.
        while address:
            offset = offset_of(address)
            if offset is None:
                offset = locate(address, size)  # unplanned, but inside a merged span?
            if offset is None or offset + size > got:
                return False
            hops += 1
            if hops > limit:
                return True  # a loop: let the decoder report the torn sample
            address, flag, call = link(buf, offset)
            if not flag & (CTXT_FUNCTION | CTXT_BUILTIN):
                continue
            offset = offset_of(call)
            if offset is None:
                offset = locate(call, CELL_SIZE)
            if offset is None or offset + CELL_SIZE > got:
                return False
            info, head = _HEAD.unpack_from(buf, offset)
            if info & TYPE_MASK != LANGSXP or head in names:
                continue
            offset = offset_of(head)
            if offset is None:
                offset = locate(head, CELL_SIZE)
            if offset is None or offset + CELL_SIZE > got:
                return False
            info, car, cdr, _ = _CELL.unpack_from(buf, offset)
            if info & TYPE_MASK == LANGSXP and (head, car, cdr) not in self.compound_names:
                return False
        return True

    def _same_sample(self, same: _Same) -> RawSample:
        """The sample `_unchanged` found: its frames, and this snapshot's GC flag."""
        plan = self._snapped
        assert plan is not None and self._globals_span is not None
        in_gc = self._gc_at >= 0 and _I32.unpack_from(plan.buffer, self._gc_at)[0] != 0
        self.last_head = same.head
        self.recognised += 1
        # This stack is now the last one, as if it had been walked (`_remember`).
        self._prev_chain, self._prev_cells = same.chain, same.cell_addresses
        self._remember_same(recognised=True)
        same.last_seen = self._samples
        return RawSample(
            frames=same.frames, gc=in_gc, head=same.head, contexts=len(same.chain), known=same
        )

    def decode_stopped(self, got: int) -> RawSample:
        """Decode the last snapshot, reading what it lacks now. Call while stopped."""
        return self._decode(got, live=True)

    def capture(self) -> RawSample:
        """Copy the current stack's volatile parts. Call while the target is stopped."""
        return self._decode(self._read_plan(), live=True)

    def _remember(self, chain: list[Address], cells: list[Address], *, live: bool = False) -> None:
        """Remember this sample's addresses to predict the next one (rebuilds the plan).

        With `live` (the target is stopped) only note them: `_learn()` does the work once
        the target runs again, because rebuilding a plan takes ~0.2 ms of Python.
        """
        if live:
            self._unlearned = (chain, cells)
            return
        self._samples += 1
        lines = self.lines
        if lines is not None and lines.plan_dirty:
            lines.plan_dirty = False
            self._plan = None  # made again below, with the line reader's new regions
        if chain == self._prev_chain and cells == self._prev_cells and self._plan is not None:
            self._remember_same(counted=True)
            return
        now = self._samples
        # Stacks recognised since the last walk (`_same_sample`) were not marked as needed:
        # mark them as of the last sample that showed them, or a decode after many
        # recognised samples would drop a loop's other stacks from the plan as unused.
        for same in self._known.values():
            seen = same.last_seen
            if seen > self._walked_at:
                for address in same.chain:
                    self._recent_contexts[address] = seen
                for address in same.cell_addresses:
                    self._recent_cells[address] = seen
        self._walked_at = now
        changed = False
        # Each kind keeps this many addresses at least: the sample's own, and for contexts
        # the plan's chain if longer (a shallow detour must not push the loop's chain out).
        for recent, previous, addresses, keep in (
            (
                self._recent_contexts,
                self._prev_chain,
                chain,
                max(len(chain), len(self._plan_chain)),
            ),
            (self._recent_cells, self._prev_cells, cells, len(cells)),
        ):
            # The previous stack lasted until the last sample (identical samples return
            # early above, without touching these).
            for address in previous:
                recent[address] = now - 1
            for address in addresses:
                if address not in recent:
                    changed = True
                    if recent is self._recent_contexts:
                        self._last_new_context = now
                recent[address] = now
            stale = [a for a, seen in recent.items() if now - seen > _RECENT_SAMPLES]
            if len(recent) - len(stale) > keep + _RECENT:
                by_age = sorted(recent, key=recent.__getitem__)
                stale = by_age[: len(recent) - keep - _RECENT]
            for address in stale:
                del recent[address]
            changed = changed or bool(stale)
        self._prev_chain = chain
        self._prev_cells = cells
        deltas = [b - a for a, b in itertools.pairwise(chain) if 0 < b - a < 1 << 20]
        if deltas:
            self._stride = max(set(deltas), key=deltas.count)
        expired = self._plan_guesses and self._samples - self._last_new_context >= _GUESS_FOR
        if changed or expired or self._plan is None:
            self._plan = self._make_plan()

    def _learn(self) -> None:
        """Remember what the last decode while stopped found (see `_remember`)."""
        unlearned = self._unlearned
        if unlearned is not None:
            self._unlearned = None
            self._remember(*unlearned)

    def _remember_same(self, *, counted: bool = False, recognised: bool = False) -> None:
        """The same stack as last time (list equality runs in C), or one `recognised`:
        nothing to learn, but stop guessing once the stack has stayed within known
        addresses for a while, and plan after a chain that lasted two samples without
        being recognised (a plan made after another chain knows other stacks, so a
        one-sample detour, such as a call to `Sys.time()` in a loop, keeps the plan)."""
        if not counted:
            self._samples += 1
        if not recognised and self._prev_chain != self._plan_chain:
            self._plan = self._make_plan(self._prev_chain)
        elif self._plan_guesses and self._samples - self._last_new_context >= _GUESS_FOR:
            self._plan = self._make_plan()

    def _read_speculatively(
        self, address: Address, found: dict[Address, tuple[_Bytes, int]]
    ) -> None:
        """Read the context at `address` and the ones a stride above it, into `found`."""
        size = self.layout.size
        stride = self._stride if self._stride >= size else 0
        regions = [(address + k * stride, size) for k in range(16 if stride else 1)]
        blob, offsets = self.memory.read_scatter(regions)
        if offsets[0] < 0:
            raise BadAddressError(f"cannot read a context at {address:#x}")
        for (where, _), offset in zip(regions, offsets, strict=True):
            if offset >= 0:
                found.setdefault(where, (blob, offset))

    def _decode(self, got: int, *, live: bool) -> RawSample:
        """Decode the snapshot of `got` bytes; with `live`, read what it lacks now.

        Without `live` (the target may be running) a missing region raises _SnapshotMiss.
        """
        plan = self._snapped
        assert plan is not None
        buf = plan.buffer
        offsets = plan.offsets
        locate = plan.locate
        # Bytes read in this stop beyond the snapshot (live only), by address.
        extra: dict[Address, tuple[_Bytes, int]] = {}

        def at(address: Address, size: int) -> tuple[_Bytes, int] | None:
            offset = offsets.get(address)
            if offset is None:
                offset = locate(address, size)  # unplanned, but inside a merged span?
            if offset is not None and offset + size <= got:
                return buf, offset
            return extra.get(address)

        span = self._globals_span or (self.global_context, 8)
        hit = at(span[0], span[1])
        if hit is None:
            if not live:
                raise _SnapshotMiss
            first, in_gc = self.read_globals()
        else:
            first = _U64.unpack_from(hit[0], hit[1] + self.global_context - span[0])[0]
            in_gc = False
            if self.gc_flag and self._globals_span:
                in_gc = _I32.unpack_from(hit[0], hit[1] + self.gc_flag - span[0])[0] != 0
            elif self.gc_flag:
                if not live:
                    raise _SnapshotMiss
                in_gc = _I32.unpack(self.memory.read(self.gc_flag, 4))[0] != 0
        self.last_head = first
        sample = RawSample(gc=in_gc, head=first)
        if not first:
            self._remember([], [], live=live)
            return sample

        # The context chain, innermost first. (The lookups below are `at()` written out:
        # this loop and the next run once per frame of every sample.)
        size = self.layout.size
        unpack = self._context_struct.unpack_from
        offset_of = offsets.get
        frame_calls: list[Address] = []
        frame_contexts: list[tuple[int, Address, Address, Address]] = []
        chain: list[Address] = []
        seen: set[Address] = set()
        address = first
        while address:
            if address in seen or len(chain) >= MAX_DEPTH:
                raise TornSampleError("the context chain loops or is implausibly deep")
            seen.add(address)
            chain.append(address)
            offset = offset_of(address)
            if offset is None:
                offset = locate(address, size)
            if offset is not None and offset + size <= got:
                address, flag, callfun, call, cloenv = unpack(buf, offset)
            else:
                if not live:
                    raise _SnapshotMiss
                if address not in extra:
                    self._read_speculatively(address, extra)
                data, offset = extra[address]
                address, flag, callfun, call, cloenv = unpack(data, offset)
            if flag & (CTXT_FUNCTION | CTXT_BUILTIN):
                frame_contexts.append((flag, call, callfun, cloenv))
                frame_calls.append(call)
        sample.contexts = len(chain)
        if not frame_calls:
            self._remember(chain, [], live=live)
            return sample

        # The call objects of frame contexts (they die with their frame: read while stopped).
        missing = sorted({c for c in frame_calls if at(c, CELL_SIZE) is None}) if live else []
        if missing:
            more_blob, more_offsets = self.memory.read_scatter([(c, CELL_SIZE) for c in missing])
            for call, offset in zip(missing, more_offsets, strict=True):
                if offset >= 0:
                    extra[call] = (more_blob, offset)
        if self.validate:
            self._validate(frame_contexts)
        frames = sample.frames
        names = self.names
        cells = list(frame_calls)
        unknown: list[tuple[RawFrame, Address]] = []
        head_of = _HEAD.unpack_from
        for call in frame_calls:
            offset = offset_of(call)
            if offset is None:
                offset = locate(call, CELL_SIZE)
            if offset is not None and offset + CELL_SIZE <= got:
                info, head = head_of(buf, offset)
            else:
                hit = extra.get(call)
                if hit is None:
                    if not live:
                        raise _SnapshotMiss
                    raise BadAddressError(f"cannot read call object at {call:#x}")
                info, head = head_of(hit[0], hit[1])
            if info & TYPE_MASK != LANGSXP:
                continue  # R writes no frame for a context whose call is not a call
            frame = RawFrame()
            frames.append(frame)
            name = names.get(head)  # a symbol's address names it for good
            if name is not None:
                frame.name = name
                continue
            cells.append(head)
            hit = at(head, CELL_SIZE)
            if hit is None:
                if not live:
                    raise _SnapshotMiss
                unknown.append((frame, head))
                continue
            info, car, cdr, _ = _CELL.unpack_from(hit[0], hit[1])
            kind = info & TYPE_MASK
            if kind == SYMSXP:
                frame.symbol = head  # named after resume: symbols are immortal
            elif kind == LANGSXP:
                compound = self.compound_names.get((head, car, cdr))
                if compound is None:
                    if not live:
                        raise _SnapshotMiss
                    unknown.append((frame, head))
                else:
                    frame.name = compound
            else:
                frame.name = ANONYMOUS
        if unknown:
            self._classify_heads(unknown)
        if self.lines is not None:
            sample.lines = self._capture_lines(chain, at, live)
        else:
            sample.known = self._keep_known(plan, got, first, chain, cells, frames)
        self._remember(chain, cells, live=live)
        return sample

    def _keep_known(
        self,
        plan: ScatterPlan,
        got: int,
        head: Address,
        chain: list[Address],
        cells: list[Address],
        frames: list[RawFrame],
    ) -> _Same | None:
        """Keep this sample for `_unchanged` when every context of its chain is on the
        plan's chain (so the links compared cover its walk: a shallower stack of the same
        path, the same path running other calls), and it and the sample's cells were read
        whole (and every frame is named or has its symbol). Returns what was kept."""
        links = self._snapped_links
        if links is None or links.size > got:
            return None
        on_chain = self._snapped_contexts
        if not on_chain.issuperset(chain):
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
        cell_links = _gather(plan, distinct_cells, "Q24xQQ", 48)
        if cell_links is None or cell_links.size > got:
            return None
        if plan is not self._known_plan:
            return None  # a plan made since (`_learn`) recognises what this one did
        if full:
            del known[min(known, key=lambda key: known[key].last_seen)]
        buf = plan.buffer
        same = _Same(
            head=head,
            chain=chain,
            cell_addresses=cells,
            distinct_cells=distinct_cells,
            cell_struct=cell_links,
            cell_plan=plan,
            cell_links=cell_links.unpack_from(buf),
            frames=frames,
            last_seen=self._samples,
        )
        self._known[head, links.unpack_from(buf)] = same
        return same

    def _capture_lines(
        self,
        chain: list[Address],
        at: Callable[[Address, int], tuple[_Bytes, int] | None],
        live: bool,
    ) -> RawLines | None:
        """The source locations of this sample's frames (see sampler.srcref), from the
        snapshot; with `live`, what it lacks is read now, else that is a _SnapshotMiss."""
        lines = self.lines  # once: another thread may turn lines off meanwhile
        if lines is None:
            return None
        size, call_at = self.layout.size, self.layout.call
        contexts: list[tuple[_Bytes, int]] = []
        for address in chain:
            hit = at(address, size)
            if hit is None:
                return None
            if _I32.unpack_from(hit[0], hit[1] + 8)[0] & (CTXT_FUNCTION | CTXT_BUILTIN):
                cell = at(_U64.unpack_from(hit[0], hit[1] + call_at)[0], CELL_SIZE)
                kind = _U64.unpack_from(cell[0], cell[1])[0] & TYPE_MASK if cell else -1
                if kind == LANGSXP:
                    contexts.append(hit)

        def fetch(regions: list[tuple[Address, int]]) -> list[bytes | None]:
            found: list[bytes | None] = []
            missing: list[int] = []
            for i, (address, length) in enumerate(regions):
                hit = at(address, length)
                if hit is None:
                    found.append(None)
                    missing.append(i)
                else:
                    found.append(memoryview(hit[0])[hit[1] : hit[1] + length].tobytes())
            if missing:
                if not live:
                    raise _SnapshotMiss
                read = self.memory.read_many([regions[i] for i in missing])
                for i, data in zip(missing, read, strict=True):
                    found[i] = data
            return found

        return lines.capture(contexts, fetch)

    def _validate(self, frame_contexts: list[tuple[int, Address, Address, Address]]) -> None:
        """Check the types R guarantees for closure frames; raise TornSampleError if not."""
        closures = [c for c in frame_contexts if c[0] & CTXT_FUNCTION]
        regions = [(c[2], 8) for c in closures] + [(c[3], 8) for c in closures]
        infos = self.memory.read_many(regions)
        n = len(closures)
        for i in range(n):
            fun, env = infos[i], infos[n + i]
            if fun is None or env is None:
                raise TornSampleError("a closure context points at unreadable memory")
            # do_eval runs its code in a CTXT_RETURN context whose callfun is `eval` itself.
            if fun[0] & TYPE_MASK not in _CALLABLE or env[0] & TYPE_MASK != ENVSXP:
                raise TornSampleError("a closure context does not hold a closure and environment")

    def _classify_heads(self, unknown: list[tuple[RawFrame, Address]]) -> None:
        """Name frames whose call head is not a known symbol (read while stopped)."""
        heads = self.memory.read_many([(head, CELL_SIZE) for _, head in unknown])
        for (frame, head), cell in zip(unknown, heads, strict=True):
            if cell is None:
                raise BadAddressError(f"cannot read call head at {head:#x}")
            kind, car, cdr, _ = _cell(cell)
            if kind == SYMSXP:
                frame.symbol = head
            elif kind == LANGSXP:
                key = (head, car, cdr)
                name = self.compound_names.get(key)
                if name is None:
                    name = self._compound_name(car, cdr)
                    self.compound_names[key] = name
                frame.name = name
            else:
                frame.name = ANONYMOUS

    def _compound_name(self, operator: Address, args: Address) -> str:
        """The name of a call whose head is itself a call: `a::b`, `a$b`, `a[[i]]`, or not."""
        op = self.operators.get(operator)
        if op is None and (operator != self.bracket2 or not operator):
            return ANONYMOUS
        mem = self.memory
        first_kind, lhs, rest, _ = _cell(mem.read(args, CELL_SIZE)) if args else (0, 0, 0, 0)
        if first_kind != LANGSXP and first_kind != 2:  # LISTSXP: argument pairlist
            return ANONYMOUS
        if not rest or rest == self.nil:
            return ANONYMOUS
        _, rhs, _, _ = _cell(mem.read(rest, CELL_SIZE))
        lhs_kind = mem.read(lhs, 8)[0] & TYPE_MASK
        if lhs_kind != SYMSXP:
            return ANONYMOUS
        lhs_name = self._symbol_name(lhs)
        rhs_head = mem.read(rhs, VECTOR_DATA + 8)
        rhs_kind = rhs_head[0] & TYPE_MASK
        if op is not None:
            if rhs_kind != SYMSXP:
                return ANONYMOUS
            return f"{lhs_name}{op}{self._symbol_name(rhs)}"
        # `[[`: the index may be a symbol, a string or a number of length > 0.
        if rhs_kind == SYMSXP:
            index = self._symbol_name(rhs)
        elif rhs_kind in (STRSXP, INTSXP, REALSXP):
            if rhs_head[0] & 0x80 or _U64.unpack_from(rhs_head, VECTOR_LENGTH)[0] == 0:
                return ANONYMOUS
            if rhs_kind == STRSXP:
                index = '"' + self._charsxp(_U64.unpack_from(rhs_head, VECTOR_DATA)[0]) + '"'
            elif rhs_kind == INTSXP:
                value = _I32.unpack_from(rhs_head, VECTOR_DATA)[0]
                index = "NA" if value == -(2**31) else str(value)
            else:
                index = self._format_double(_F64.unpack_from(rhs_head, VECTOR_DATA)[0])
        else:
            return ANONYMOUS
        return f"{lhs_name}[[{index}]]"

    def _format_double(self, value: float) -> str:
        """A `[[` index as R's doprof prints it (`%.0f` before 4.3, the integer part after)."""
        if math.isnan(value):
            return "NA" if self.version >= (4, 3) else "nan"
        if math.isinf(value):
            return (
                ("Inf" if value > 0 else "-Inf")
                if self.version >= (4, 3)
                else ("inf" if value > 0 else "-inf")
            )
        if self.version >= (4, 3):
            return str(int(value))
        return f"{value:.0f}"

    # -- running half --------------------------------------------------------------------

    def _charsxp(self, address: Address) -> str:
        data = self.memory.read_upto(address, VECTOR_DATA + _NAME_GUESS)
        if len(data) < VECTOR_DATA:
            raise BadAddressError(f"cannot read a name at {address:#x}")
        length = _U64.unpack_from(data, VECTOR_LENGTH)[0]
        if length > MAX_NAME:
            raise TornSampleError("a name is implausibly long")
        if VECTOR_DATA + length > len(data):
            data = self.memory.read(address, VECTOR_DATA + length)
        return data[VECTOR_DATA : VECTOR_DATA + length].decode("utf-8", "replace")

    def _symbol_name(self, symbol: Address) -> str:
        name = self.names.get(symbol)
        if name is None:
            cell = self.memory.read(symbol, CELL_SIZE)
            kind, printname, _, _ = _cell(cell)
            if kind != SYMSXP:
                raise TornSampleError("a symbol is not a symbol")
            name = self._charsxp(printname)
            self.names[symbol] = name
        return name

    def finish(self, raw: RawSample) -> Stack:
        """The named stack of a captured sample. Safe to call while the target runs.

        Also learns from a sample decoded while the target was stopped (`_remember`).
        """
        if self._unlearned is not None:
            self._learn()
        known = raw.known
        if known is None or raw.lines is not None:
            return self._finish(raw)
        key = (raw.gc, raw.idle)
        stack = known.stacks.get(key)
        if stack is None:
            stack = known.stacks[key] = self._finish(raw)
        return stack

    def _finish(self, raw: RawSample) -> Stack:
        names = tuple(
            frame.name if frame.name is not None else self._symbol_name(frame.symbol)
            for frame in raw.frames
        )
        lines = self.lines
        if raw.lines is not None and lines is not None and names:
            sites = lines.finish(raw.lines)
            if len(sites) == len(names) + 1:
                return Stack(names, sites, gc=raw.gc, idle=raw.idle)
        return Stack(names, gc=raw.gc, idle=raw.idle)
