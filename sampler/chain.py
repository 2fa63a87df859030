"""Decoding R's context chain from a snapshot: the frames of one sample.

The decoder follows the real chain through the bytes of a snapshot (`sampler.snapplan`),
innermost context first, and takes each function context's call: its head names the frame
(`sampler.framenames`). It runs in one of two modes:

- after the target was resumed (`live=False`): the snapshot is ours, so it still shows the
  stack at the stop; memory that can change must not be read now, so whatever the snapshot
  lacks is a `SnapshotMiss` (the caller samples again the slow way);
- while the target is stopped (`live=True`): what the snapshot lacks is read on the spot.

`complete()` is the cheap check, made while stopped, that a snapshot holds everything.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Optional
from typing import Union

from sampler.errors import BadAddressError
from sampler.errors import TornSampleError
from sampler.framenames import ANONYMOUS
from sampler.framenames import FrameNamer
from sampler.framenames import RawFrame
from sampler.knownstacks import KnownStack
from sampler.layouts import BUILTINSXP
from sampler.layouts import CELL_SIZE
from sampler.layouts import CLOSXP
from sampler.layouts import CTXT_BUILTIN
from sampler.layouts import CTXT_FUNCTION
from sampler.layouts import ENVSXP
from sampler.layouts import LANGSXP
from sampler.layouts import SPECIALSXP
from sampler.layouts import SYMSXP
from sampler.layouts import TYPE_MASK
from sampler.layouts import ContextLayout
from sampler.procmem import Address
from sampler.procmem import ProcessMemory
from sampler.procmem import ScatterPlan
from sampler.sexp import HEAD
from sampler.sexp import I32
from sampler.sexp import LINKS
from sampler.sexp import U64
from sampler.srcref import RawLines
from sampler.srcref import SrcrefReader

MAX_DEPTH = 10_000  # R's expression limit is 5000; deeper means a corrupt chain
_CALLABLE = (CLOSXP, SPECIALSXP, BUILTINSXP)
_FRAME_FLAGS = CTXT_FUNCTION | CTXT_BUILTIN

Bytes = Union[bytes, bytearray, memoryview, "ctypes.Array[ctypes.c_char]"]
#: Where `size` bytes at an address are: (bytes, offset), or None.
Finder = Callable[[Address, int], Optional[tuple[Bytes, int]]]
#: (flag, call, callfun, cloenv, its own address) of a function context.
_FrameContext = tuple[int, Address, Address, Address, Address]


@dataclass
class RawSample:
    """What the stopped half copied; `StackReader.finish()` turns it into a `Stack`."""

    frames: list[RawFrame] = field(default_factory=list)
    gc: bool = False
    idle: bool = False
    contexts: int = 0
    head: Address = 0
    #: Source locations to resolve (only when the reader reads lines).
    lines: RawLines | None = None
    #: The stack seen lately that this sample is (set by the reader, for `finish()`).
    known: KnownStack | None = None
    #: The builtin byte code was calling, innermost (`sampler.builtins`); None: none.
    builtin: RawFrame | None = None
    #: Indices in `frames` of the builtin frames recovered between two frames (no lines).
    between: list[int] = field(default_factory=list)


class SnapshotMiss(Exception):
    """The snapshot lacks memory this sample needs, and the target may be running."""


class ChainDecoder:
    """Walks the context chain of one target's snapshots and captures their frames."""

    def __init__(
        self,
        memory: ProcessMemory,
        layout: ContextLayout,
        namer: FrameNamer,
        *,
        global_context: Address,
        gc_flag: Address | None,
        globals_span: tuple[Address, int] | None,
        read_globals: Callable[[], tuple[Address, bool]],
    ) -> None:
        """Decode contexts of `layout`, naming frames with `namer`; R's head is the pointer
        at `global_context`, its GC flag the int at `gc_flag`, both inside `globals_span`
        when close (a snapshot reads that first); `read_globals` reads them now."""
        self.memory = memory
        self.layout = layout
        self.namer = namer
        self.global_context = global_context
        self.gc_flag = gc_flag
        self.globals_span = globals_span
        self.read_globals = read_globals
        # nextcontext, callflag, callfun, call, cloenv in one unpack (call follows sysparent).
        self._context_struct = struct.Struct(
            f"<Qi{layout.callfun - 12}xQ{layout.call - layout.callfun - 8}xQQ"
        )
        assert layout.cloenv == layout.call + 8 and layout.callflag == 8
        # nextcontext, callflag and call only: what `complete` follows.
        self._link_struct = struct.Struct(f"<Qi{layout.call - 12}xQ")

    def complete(self, plan: ScatterPlan, got: int) -> bool:
        """Whether `plan`'s snapshot of `got` bytes holds everything `decode` needs.

        Call while the target is still stopped: it follows the chain like `decode` but
        builds nothing, so it costs a fraction of decoding.
        """
        buf, offset_of, locate = plan.buffer, plan.offsets.get, plan.locate
        span = self.globals_span
        if span is None:
            return False
        offset = offset_of(span[0])
        if offset is None or offset + span[1] > got:
            return False
        address = U64.unpack_from(buf, offset + self.global_context - span[0])[0]
        size = self.layout.size
        link = self._link_struct.unpack_from
        names = self.namer.names
        compound_names = self.namer.compound_names
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
            if not flag & _FRAME_FLAGS:
                continue
            offset = offset_of(call)
            if offset is None:
                offset = locate(call, CELL_SIZE)
            if offset is None or offset + CELL_SIZE > got:
                return False
            info, head = HEAD.unpack_from(buf, offset)
            if info & TYPE_MASK != LANGSXP or head in names:
                continue
            offset = offset_of(head)
            if offset is None:
                offset = locate(head, CELL_SIZE)
            if offset is None or offset + CELL_SIZE > got:
                return False
            info, car, cdr, _ = LINKS.unpack_from(buf, offset)
            if info & TYPE_MASK == LANGSXP and (head, car, cdr) not in compound_names:
                return False
        return True

    def finder(
        self, plan: ScatterPlan, got: int, extra: dict[Address, tuple[Bytes, int]]
    ) -> Finder:
        """Finds bytes in `plan`'s snapshot of `got` bytes, else in `extra` (read since)."""
        buf, offsets, locate = plan.buffer, plan.offsets, plan.locate

        def at(address: Address, size: int) -> tuple[Bytes, int] | None:
            offset = offsets.get(address)
            if offset is None:
                offset = locate(address, size)  # unplanned, but inside a merged span?
            if offset is not None and offset + size <= got:
                return buf, offset
            return extra.get(address)

        return at

    def head(self, at: Finder, live: bool) -> tuple[Address, bool]:
        """(R_GlobalContext, in GC) from the snapshot; read now if `live` and it lacks them."""
        span = self.globals_span or (self.global_context, 8)
        hit = at(span[0], span[1])
        if hit is None:
            if not live:
                raise SnapshotMiss
            return self.read_globals()
        first = U64.unpack_from(hit[0], hit[1] + self.global_context - span[0])[0]
        in_gc = False
        if self.gc_flag and self.globals_span:
            in_gc = I32.unpack_from(hit[0], hit[1] + self.gc_flag - span[0])[0] != 0
        elif self.gc_flag:
            if not live:
                raise SnapshotMiss
            in_gc = I32.unpack(self.memory.read(self.gc_flag, 4))[0] != 0
        return first, in_gc

    def walk(
        self,
        plan: ScatterPlan,
        got: int,
        first: Address,
        extra: dict[Address, tuple[Bytes, int]],
        live: bool,
        stride: int,
        until: Address = 0,
    ) -> tuple[list[Address], list[_FrameContext]]:
        """The chain from context `first` (up to the one at `until`, exclusive, when
        given), innermost first, and its function contexts. With `live`, contexts the
        snapshot lacks are read now (with the ones `stride` above each, into `extra`);
        without, that is a SnapshotMiss."""
        # The lookups below are `finder()` written out: this loop runs once per frame of
        # every sample walked.
        buf, offset_of, locate = plan.buffer, plan.offsets.get, plan.locate
        size = self.layout.size
        unpack = self._context_struct.unpack_from
        frame_contexts: list[_FrameContext] = []
        chain: list[Address] = []
        seen: set[Address] = set()
        address = first
        while address and address != until:
            if address in seen or len(chain) >= MAX_DEPTH:
                raise TornSampleError("the context chain loops or is implausibly deep")
            seen.add(address)
            chain.append(address)
            here = address
            offset = offset_of(address)
            if offset is None:
                offset = locate(address, size)
            if offset is not None and offset + size <= got:
                address, flag, callfun, call, cloenv = unpack(buf, offset)
            else:
                if not live:
                    raise SnapshotMiss
                if address not in extra:
                    self._read_speculatively(address, extra, stride)
                data, offset = extra[address]
                address, flag, callfun, call, cloenv = unpack(data, offset)
            if flag & _FRAME_FLAGS:
                frame_contexts.append((flag, call, callfun, cloenv, here))
        return chain, frame_contexts

    def frames(
        self,
        plan: ScatterPlan,
        got: int,
        frame_calls: list[Address],
        extra: dict[Address, tuple[Bytes, int]],
        live: bool,
        contexts: Sequence[Address] = (),
    ) -> tuple[list[RawFrame], list[Address]]:
        """The frames of the function contexts whose calls are `frame_calls`, innermost
        first, and every cell read for them (the calls, then non-symbol heads); each frame
        keeps its context's address from `contexts` (parallel to `frame_calls`) if given.
        With `live`, calls and heads the snapshot lacks are read now; without, a
        SnapshotMiss."""
        at = self.finder(plan, got, extra)
        # The call objects of frame contexts (they die with their frame: read while stopped).
        missing = sorted({c for c in frame_calls if at(c, CELL_SIZE) is None}) if live else []
        if missing:
            more_blob, more_offsets = self.memory.read_scatter([(c, CELL_SIZE) for c in missing])
            for call, found_at in zip(missing, more_offsets):
                if found_at >= 0:
                    extra[call] = (more_blob, found_at)
        buf, offset_of, locate = plan.buffer, plan.offsets.get, plan.locate
        frames: list[RawFrame] = []
        names = self.namer.names
        compound_names = self.namer.compound_names
        cells = list(frame_calls)
        unknown: list[tuple[RawFrame, Address]] = []
        head_of = HEAD.unpack_from
        for i, call in enumerate(frame_calls):
            offset = offset_of(call)
            if offset is None:
                offset = locate(call, CELL_SIZE)
            if offset is not None and offset + CELL_SIZE <= got:
                info, head = head_of(buf, offset)
            else:
                hit = extra.get(call)
                if hit is None:
                    if not live:
                        raise SnapshotMiss
                    raise BadAddressError(f"cannot read call object at {call:#x}")
                info, head = head_of(hit[0], hit[1])
            if info & TYPE_MASK != LANGSXP:
                continue  # R writes no frame for a context whose call is not a call
            frame = RawFrame(context=contexts[i] if contexts else 0)
            frames.append(frame)
            name = names.get(head)  # a symbol's address names it for good
            if name is not None:
                frame.name = name
                continue
            cells.append(head)
            hit = at(head, CELL_SIZE)
            if hit is None:
                if not live:
                    raise SnapshotMiss
                unknown.append((frame, head))
                continue
            info, car, cdr, _ = LINKS.unpack_from(hit[0], hit[1])
            kind = info & TYPE_MASK
            if kind == SYMSXP:
                frame.symbol = head  # named after resume: symbols are immortal
            elif kind == LANGSXP:
                compound = compound_names.get((head, car, cdr))
                if compound is None:
                    if not live:
                        raise SnapshotMiss
                    unknown.append((frame, head))
                else:
                    frame.name = compound
            else:
                frame.name = ANONYMOUS
        if unknown:
            self.namer.name_heads(unknown)
        return frames, cells

    def capture_lines(
        self, lines: SrcrefReader, chain: list[Address], at: Finder, live: bool
    ) -> RawLines | None:
        """The source locations of this sample's frames (see sampler.srcref), from the
        snapshot; with `live`, what it lacks is read now, else that is a SnapshotMiss."""
        size, call_at = self.layout.size, self.layout.call
        contexts: list[tuple[Bytes, int]] = []
        for address in chain:
            hit = at(address, size)
            if hit is None:
                return None
            if I32.unpack_from(hit[0], hit[1] + self.layout.callflag)[0] & _FRAME_FLAGS:
                cell = at(U64.unpack_from(hit[0], hit[1] + call_at)[0], CELL_SIZE)
                kind = U64.unpack_from(cell[0], cell[1])[0] & TYPE_MASK if cell else -1
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
                    raise SnapshotMiss
                read = self.memory.read_many([regions[i] for i in missing])
                for i, data in zip(missing, read):
                    found[i] = data
            return found

        return lines.capture(contexts, fetch)

    def check_closures(self, frame_contexts: list[_FrameContext]) -> None:
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

    def _read_speculatively(
        self, address: Address, found: dict[Address, tuple[Bytes, int]], stride: int
    ) -> None:
        """Read the context at `address` and the ones a stride above it, into `found`."""
        size = self.layout.size
        stride = stride if stride >= size else 0
        regions = [(address + k * stride, size) for k in range(16 if stride else 1)]
        blob, offsets = self.memory.read_scatter(regions)
        if offsets[0] < 0:
            raise BadAddressError(f"cannot read a context at {address:#x}")
        for (where, _), offset in zip(regions, offsets):
            if offset >= 0:
                found.setdefault(where, (blob, offset))
