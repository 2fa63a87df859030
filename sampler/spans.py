"""What a stopped sample copies: R's contexts as a few contiguous spans, then their calls.

R's contexts (RCNTXT) are not scattered: each is a local variable of the C function that
runs it (`applyClosure`, `R_execClosure`, `do_eval`, ... in eval.c), so it lives on the main
thread's C stack between the stack pointer and `R_CStackStart`; from R 4.4 the byte-code
interpreter also allocates contexts on R's node stack (`BCNALLOC_CNTXT` in eval.c: loop
contexts in every version, closure calls made from byte code from 4.4), always between its
base and `R_BCNodeStackTop`. The one context outside both is `R_Toplevel` (a static in
libR's .bss), the outermost. So while R is stopped a sample copies, with one
`process_vm_readv`: R's globals, `R_Toplevel` (once known), the C stack from the stack
pointer up, and on R >= 4.4 the top of the used node stack (a loop context there before
4.4 is read on the spot by the decoder); it follows the chain through that copy (more of
either stack is read when the chain leads there, up to a cap), and copies the call cells
of the function contexts in a second read (and non-symbol heads not named yet in a third).
Then R runs on and the copy is decoded and named (sampler.chain, sampler.framenames).

What may change once R runs, and what not: the contexts themselves (stack memory, reused
by the next call) and the call objects of frames that return (S3 dispatch makes a fresh
call per dispatch: it is garbage once the method returns) can change at any time, so both
are copied while stopped; symbols and their names never change nor die (R never collects
a symbol), so naming one after resuming is sound, and nothing else is read after resuming.
What is validated, while stopped: that the chain lies wholly in the copy (else the decoder
reads the rest before R runs on), and that a reused outer chain is the same activation.

Very deep recursion (a chain beyond the caps) is not copied whole: the walk stops at the
first context outside the first copy, and when that context is still the same activation
as at the last sample (`OuterChain`) the frames from there out are the last sample's.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass

from sampler.chain import MAX_DEPTH
from sampler.framenames import RawFrame
from sampler.layouts import CELL_SIZE
from sampler.layouts import CTXT_BUILTIN
from sampler.layouts import CTXT_FUNCTION
from sampler.layouts import LANGSXP
from sampler.layouts import TYPE_MASK
from sampler.layouts import ContextLayout
from sampler.libc import IoVec
from sampler.libc import process_vm_readv
from sampler.procmem import Address
from sampler.sexp import HEAD
from sampler.sexp import LINKS
from sampler.sexp import U64
from sampler.symbols import Mapping
from sampler.symbols import read_maps

_FRAME_FLAGS = CTXT_FUNCTION | CTXT_BUILTIN
#: Further reads of the C stack while the chain leads there, and the most read in all.
_C_MORE = 512 << 10
_C_CAP_TOTAL = 1280 << 10
#: The first read of the C stack from the stack pointer. A context costs 6-20 KB of C stack
#: per R call before R 4.4 (varied code needs 0.4-1.1 MB, and the chain's outermost
#: C-stack context lies 9-25 KB below the stack's top), so the first read takes the whole
#: used stack, within the cap: one system call, not one per 256 KB (a second costs more
#: than the bytes it saves). From 4.4 closure calls from byte code moved to the node stack
#: and a context costs under 100 bytes of C stack (22-93 KB needed).
_C_FIRST_OLD, _C_FIRST_NEW = _C_CAP_TOTAL, 128 << 10
#: Before 4.4, a chain deeper than the cap (recursion) is anchored (`OuterChain`) at its
#: first context this far above the stack pointer, so that the next samples read this much.
_C_ANCHOR = 128 << 10
#: The node stack is read up to the last sample's top plus this, and at most `_NODE_CAP`.
_NODE_MARGIN = 16 << 10
_NODE_CAP = 192 << 10
#: The most C stack assumed when R sets no limit (a span is read from the stack pointer
#: only when it lies within this of the stack's top: else R runs on another stack).
_STACK_MOST = 256 << 20
#: Call cells per sample read in the second read (the kernel's iovec limit, UIO_MAXIOV).
_MAX_CELLS = 1024
#: A copied cell's header and CAR, cell after cell (`iter_unpack`).
_CELL_HEADS = struct.Struct(f"{HEAD.format}{CELL_SIZE - HEAD.size}x")


def node_stack_entries(version: tuple[int, int]) -> int:
    """R_BCNODESTACKSIZE (src/include/Defn.h): 200000 before R 4.4, 300000 from 4.4."""
    return 300000 if version >= (4, 4) else 200000


@dataclass(frozen=True)
class SpanBounds:
    """Where the spans are in one target, learned once at attach."""

    #: R_GlobalContext and the GC flag: (start, length), and R_GlobalContext's address.
    globals_span: tuple[Address, int]
    head: Address
    #: The address of R_BCNodeStackTop (0: R < 4.4, the node stack is not copied).
    node_top: Address
    #: The node stack's base: memory.c's InitMemory allocates R_BCNODESTACKSIZE entries of
    #: 16 bytes (R_bcstack_t) and sets R_BCNodeStackEnd = base + R_BCNODESTACKSIZE.
    node_base: Address
    #: The C stack's mapping at attach: contexts lie below min(R_CStackStart, its end).
    stack: Mapping
    stack_top: Address
    #: How low the C stack may grow: R_CStackLimit below its top, beyond `stack`, which
    #: the kernel grows as R recurses (a stack pointer below `stack` is still R's).
    stack_low: Address


class OuterChain:
    """The outer part of a deep chain that the span copy did not hold, as named last time.

    Sound to reuse when the context where the copy ends is the same activation as then:
    an activation's environment (cloenv) is new per call and cannot be collected while the
    activation lives, and while it lives none of its callers can return, so the contexts
    from it outward, their calls and the symbols they name are all unchanged. Identity is
    the context's links (next context, flag) and its promargs, callfun, sysparent, call and
    cloenv; the residual risk is a new activation at the same address whose environment
    and promise list the GC happened to place where the old ones were.
    """

    def __init__(self) -> None:
        """Nothing remembered yet."""
        self.address: Address = 0
        self.identity = b""
        self.frames: list[RawFrame] = []
        self.contexts = 0


class SpanPlan:
    """One sample's copy (the `ScatterPlan` protocol, for `sampler.chain`), refilled by each
    stopped `copy`. Reads with iovecs of its own straight into a buffer of its own."""

    def __init__(
        self,
        pid: int,
        bounds: SpanBounds,
        layout: ContextLayout,
        version: tuple[int, int],
        symbol_names: dict[Address, str],
        compound_names: dict[tuple[Address, Address, Address], str],
    ) -> None:
        """Prepare to copy process `pid`'s spans at `bounds`; calls whose head is a key of
        `symbol_names` need no head cell copied, nor compound heads in `compound_names`
        (both kept up to date by their owner, `sampler.framenames.FrameNamer`)."""
        self.pid = pid
        self.bounds = bounds
        self.layout = layout
        self.symbol_names = symbol_names
        self.compound_names = compound_names
        #: Whether the last copy holds everything decoding needs (`sampler.chain`).
        self.complete = False
        self._walked = False
        self._node_low = 0
        self.c_first = _C_FIRST_NEW if version >= (4, 4) else _C_FIRST_OLD
        self.node_len = _NODE_MARGIN if bounds.node_top else 0
        #: R_Toplevel's address, learned from a chain's last context (0: not yet).
        self.toplevel: Address = 0
        capacity = (
            bounds.globals_span[1]
            + 8
            + layout.size
            + _C_CAP_TOTAL
            + _C_MORE
            + 2 * _NODE_CAP
            + layout.size
            + 2 * _MAX_CELLS * CELL_SIZE
        )
        self.buffer = ctypes.create_string_buffer(capacity)
        self.size = capacity
        self.offsets: dict[Address, int] = {}
        self.trailing_offsets: list[int] = []
        self._base = ctypes.addressof(self.buffer)
        self._local = IoVec(self._base, 0)
        self._local_ref = ctypes.byref(self._local)
        self._remote = (IoVec * _MAX_CELLS)()
        self._view = memoryview(self.buffer).cast("B")
        # (start, end, offset in buffer) of each span the last copy holds.
        self._spans: list[tuple[int, int, int]] = []
        self._filled = 0
        self._link = struct.Struct(f"<Qi{layout.call - 12}xQ")
        #: System calls the last copy made.
        self.reads = 0
        #: Where the walk of the last copy left it (0: it reached the chain's end), that
        #: context's identity (`_IDENTITY`), and whether it is `outer`'s activation.
        self.left_at: Address = 0
        self.left_identity = b""
        self.outer_same = False
        #: The chain beyond the copy as last named (see `OuterChain`).
        self.outer = OuterChain()

    def locate(self, address: Address, size: int) -> int | None:
        """Where `size` bytes at `address` are in the buffer, if a copied span holds them."""
        for start, end, offset in self._spans:
            if start <= address and address + size <= end:
                return offset + address - start
        return None

    def span_from(self, address: Address) -> tuple[int, int] | None:
        """Where the copied span holding `address` is in the buffer from there: (offset,
        length to its end), if a span holds it (the C stack's from the stack pointer)."""
        for start, end, offset in self._spans:
            if start <= address < end:
                return offset + address - start, end - address
        return None

    def read(self) -> int:
        """Not supported: a span copy needs the stack pointer (`copy`)."""
        raise NotImplementedError("a SpanPlan is read with copy(sp)")

    def copy(self, sp: Address) -> int:
        """Copy everything one sample needs, R stopped with stack pointer `sp`; return the
        byte count `sampler.chain` may use (what could not be copied is simply absent)."""
        bounds, layout = self.bounds, self.layout
        self.offsets.clear()
        self._spans.clear()
        self._filled = 0
        self.reads = 0
        regions = [bounds.globals_span]
        if bounds.node_top:
            regions.append((bounds.node_top, 8))
        glob_start, glob_len = bounds.globals_span
        if self.toplevel and not glob_start <= self.toplevel < glob_start + glob_len - layout.size:
            regions.append((self.toplevel, layout.size))
        anchor = self.outer.address
        c_low = sp & ~7
        c_high = min(bounds.stack_top, c_low + self.c_first)
        if c_low < anchor < c_high - layout.size:
            c_high = anchor + layout.size  # deeper than the cap: stop right after the anchor
        if bounds.stack_low <= c_low < bounds.stack_top:
            regions.append((c_low, c_high - c_low))
        else:
            c_low = c_high = 0  # not on the main thread's stack: the walk reads it all
        if self.node_len:
            # The innermost contexts sit at the top: copy up to the last top (and a margin).
            node_high = bounds.node_base + self.node_len
            node_low = max(bounds.node_base, node_high - _NODE_CAP)
            if node_low < anchor < node_high - layout.size:
                node_low = anchor  # deeper than the cap: start right at the anchor
            self._node_low = node_low
            regions.append((node_low, node_high - node_low))
        self._readv(regions, spans=True)
        calls = self._walk_links(c_low, c_high)
        self.complete = self._walked and len(calls) <= _MAX_CELLS
        if calls:
            heads = self._unknown_heads(calls[:_MAX_CELLS])
            if heads:
                self._read_cells(heads[:_MAX_CELLS])
                self.complete = self.complete and self._heads_named(heads)
        return self._filled

    def _readv(self, regions: list[tuple[Address, int]], *, spans: bool) -> None:
        """Copy `regions` after what the buffer holds, in one system call; keep each region
        that was read whole in `offsets`, and with `spans` what was read for `locate`."""
        remote = self._remote
        total = 0
        for i, (address, length) in enumerate(regions):
            remote[i].base, remote[i].len = address, length
            total += length
        self._local.base = self._base + self._filled
        self._local.len = total
        self.reads += 1
        got: int = process_vm_readv(self.pid, self._local_ref, 1, remote, len(regions), 0)
        at = self._filled
        for address, length in regions:
            have = min(length, got)
            if have <= 0:
                break
            if spans:
                self._spans.append((address, address + have, at))
            if have == length:
                self.offsets.setdefault(address, at)
            got -= length
            at += have
        self._filled = at

    def _walk_links(self, c_low: Address, c_high: Address) -> list[Address]:
        """Follow the chain through the copy from R's head, copying more of either stack
        where it leads (within the caps); the distinct calls of its function contexts."""
        bounds = self.bounds
        self._walked = False
        head = self.locate(bounds.head, 8)
        if head is None:
            return []
        buf, link, size = self.buffer, self._link.unpack_from, self.layout.size
        address = U64.unpack_from(buf, head)[0]
        if bounds.node_top:
            top = self.locate(bounds.node_top, 8)
            used = U64.unpack_from(buf, top)[0] - bounds.node_base if top is not None else 0
            if self.node_len < used:
                # The node stack grew past the copy: copy the rest now (its top, where the
                # innermost contexts are, within the cap), and more next time.
                start = bounds.node_base + max(self.node_len, used - _NODE_CAP)
                self._readv([(start, bounds.node_base + used - start)], spans=True)
            self.node_len = max(used, 0) + _NODE_MARGIN
        calls: dict[Address, None] = {}
        hops = 0
        self.left_at = 0
        self.outer_same = False
        anchor = self.outer.address
        # A context of a chain too deep to copy whole, where the next samples may stop
        # (`OuterChain`): the first beyond `_C_ANCHOR` of C stack, else the first the
        # first copy lacked.
        reach = c_low + _C_ANCHOR if c_low and not self.node_len else 0
        beyond_reach = first_out = 0
        # The first copy's C and node spans, for the lookups written out below (this loop
        # runs once per context while R is stopped; `locate` costs a microsecond more).
        spans = self._spans
        c_start, c_end, c_at = next((s for s in spans if s[0] == c_low), (0, 0, 0))
        n_start, n_end, n_at = next((s for s in spans if s[0] == self._node_low), (0, 0, 0))
        while address and hops < MAX_DEPTH:
            if address == anchor:
                self._check_outer(address)  # the last sample's anchor: maybe stop here
                if self.outer_same:
                    self.left_at = address
                    break
            if reach and not beyond_reach and reach <= address < c_high:
                beyond_reach = address
            if c_start <= address and address + size <= c_end:
                offset: int | None = c_at + address - c_start
            elif n_start <= address and address + size <= n_end:
                offset = n_at + address - n_start
            else:
                offset = self.locate(address, size)
            if offset is None:
                first_out = first_out or address
                if c_high and c_high <= address and address + size - c_low <= _C_CAP_TOTAL:
                    # A C-stack context above the copy: copy further up, still stopped.
                    more = min(bounds.stack_top, c_low + _C_CAP_TOTAL, address + _C_MORE)
                    self._readv([(c_high, more - c_high)], spans=True)
                    c_high = more
                    continue
                self.left_at = address
                self.left_identity = b""
                if (c_high and c_high <= address < bounds.stack_top) or (
                    bounds.node_base <= address < self._node_low
                ):
                    # Too deep to copy whole: the outer chain is named from the anchor,
                    # so that the next sample can stop there (`OuterChain`).
                    self.left_at = beyond_reach or first_out
                    self._check_outer(self.left_at)
                break
            hops += 1
            address, flag, call = link(buf, offset)
            if flag & _FRAME_FLAGS:
                calls[call] = None
        self._walked = not address or self.outer_same
        return list(calls)

    def _check_outer(self, address: Address) -> None:
        """Find the context at `address` in the copy, else copy it (one read, stopped), and
        tell whether it is the activation `outer` holds."""
        size, layout = self.layout.size, self.layout
        offset = self.locate(address, size)
        if offset is None:
            self._readv([(address, size)], spans=True)
            offset = self.offsets.get(address)
        if offset is None:
            self.left_identity = b""
            return
        # nextcontext and callflag, then promargs, callfun, sysparent, call and cloenv.
        raw = ctypes.string_at(self._base + offset, size)
        self.left_identity = raw[:16] + raw[layout.promargs : layout.cloenv + 8]
        outer = self.outer
        self.outer_same = outer.address == address and outer.identity == self.left_identity

    def _read_cells(self, cells: list[Address]) -> int:
        """Copy the cells at `cells` after what the buffer holds, in one system call (their
        iovecs packed at once: this runs while R is stopped); keep each cell copied whole
        in `offsets`; return where the first is in the buffer."""
        count = len(cells)
        fields = [CELL_SIZE] * (2 * count)
        fields[0::2] = cells
        struct.pack_into(f"<{2 * count}Q", self._remote, 0, *fields)
        at = self._filled
        self._local.base = self._base + at
        self._local.len = count * CELL_SIZE
        self.reads += 1
        got = max(0, process_vm_readv(self.pid, self._local_ref, 1, self._remote, count, 0))
        whole = got // CELL_SIZE
        self.offsets.update(zip(cells[:whole], range(at, at + whole * CELL_SIZE, CELL_SIZE)))
        self._filled = at + got
        return at

    def _unknown_heads(self, calls: list[Address]) -> list[Address]:
        """Copy the calls' cells; the heads of those that are not symbols named already
        (and clear `complete` if a call could not be copied)."""
        at = self._read_cells(calls)
        whole = (self._filled - at) // CELL_SIZE
        if whole < len(calls):
            self.complete = False
        names = self.symbol_names
        cells = _CELL_HEADS.iter_unpack(self._view[at : at + whole * CELL_SIZE])
        heads = {h: None for info, h in cells if info & TYPE_MASK == LANGSXP and h not in names}
        return list(heads)

    def _heads_named(self, heads: list[Address]) -> bool:
        """Whether every head was copied and is a symbol or a compound head named already
        (`pkg::f`, `x$f`: named while stopped, see `sampler.framenames`)."""
        buf, compound = self.buffer, self.compound_names
        for head in heads:
            offset = self.offsets.get(head)
            if offset is None:
                return False
            info, car, cdr, _ = LINKS.unpack_from(buf, offset)
            if info & TYPE_MASK == LANGSXP and (head, car, cdr) not in compound:
                return False
        return True


def span_bounds(
    pid: int,
    symbols: dict[str, int],
    read_pointer: Callable[[Address], int | None],
    version: tuple[int, int],
    globals_span: tuple[Address, int],
) -> SpanBounds | None:
    """Where process `pid`'s spans are (`symbols`: R's exported symbols by name, read with
    `read_pointer`); None when R does not say (then samples walk the chain)."""
    head = symbols.get("R_GlobalContext")
    start = symbols.get("R_CStackStart")
    if not head or not start:
        return None
    # R_CStackStart: the C stack's top (system/sys-std.c: __libc_stack_end rounded up to
    # the end of its mapping, or a little below it); (uintptr_t) -1 when unknown.
    stack_start = read_pointer(start) or 0
    maps = read_maps(pid)
    stack = next((m for m in maps if m.start < stack_start <= m.end), None)
    if stack is None:
        stack = next((m for m in maps if m.path == "[stack]"), None)
        if stack is None:
            return None
        stack_start = stack.end
    # R_CStackLimit: the usable size of the C stack, (uintptr_t) -1 when unlimited.
    limit_at = symbols.get("R_CStackLimit")
    limit = (read_pointer(limit_at) or 0) if limit_at else 0
    if not 0 < limit <= _STACK_MOST:
        limit = max(_STACK_MOST, stack.end - stack.start)
    stack_top = min(stack_start, stack.end)
    node_top = symbols.get("R_BCNodeStackTop", 0) if version >= (4, 4) else 0
    node_end = symbols.get("R_BCNodeStackEnd", 0)
    node_base = 0
    end = read_pointer(node_end) if node_top and node_end else None
    if end:
        node_base = end - 16 * node_stack_entries(version)
    else:
        node_top = 0
    return SpanBounds(globals_span, head, node_top, node_base, stack, stack_top, stack_top - limit)
