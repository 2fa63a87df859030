"""Reading R's call stack out of another process and naming frames as R's Rprof does.

A sample has two halves, so the target is stopped as briefly as possible:

- `capture()` runs while the target is stopped. It copies what can change once R runs on:
  the context chain (usually one read: contexts are C-stack locals, close together), the
  call objects of function contexts (one batched read), and the heads of calls that are not
  plain symbols (`pkg::f`, `x$f`, `x[["f"]]`).
- `finish()` runs after the target was resumed. It only turns symbol addresses into names.
  That is sound because R never frees or changes a symbol or its name (CHARSXP); the names
  are cached by address for the life of the target.

Naming rules (R's eval.c `doprof`): a context is a frame when its flag has CTXT_FUNCTION or
CTXT_BUILTIN and its call is a LANGSXP. The call's head names it: a symbol by its name;
`a::b`, `a:::b`, `a$b` with two symbol arguments as written; `a[[i]]` with a symbol and a
symbol, string or number; everything else `<Anonymous>`.
"""

from __future__ import annotations

import itertools
import math
import struct
from dataclasses import dataclass
from dataclasses import field

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
        # nextcontext, callflag, callfun, call, cloenv in one unpack (call follows sysparent).
        self._context_struct = struct.Struct(
            f"<Qi{layout.callfun - 12}xQ{layout.call - layout.callfun - 8}xQQ"
        )
        assert layout.cloenv == layout.call + 8 and layout.callflag == 8
        self._prev_chain: list[Address] = []
        self._prev_calls: dict[Address, Address] = {}
        self._stride = 0
        self.last_head: Address = 0

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

    def _predicted_regions(self) -> tuple[list[Address], list[Address]]:
        """Context and call addresses likely in this sample, from the previous one.

        Between two samples the outer part of the stack rarely changes, so its contexts
        sit at the same addresses; and in recursion the new innermost contexts sit a fixed
        stride from the old ones. Guessed bytes are used only where the real chain points,
        and they come from the same stop as everything else, so a wrong guess costs a
        wasted read, never a wrong frame. Known addresses come first: a read stops at the
        first unmapped region, so pure guesses go last.
        """
        chain = self._prev_chain
        known = sorted(set(chain))
        guesses: list[Address] = []
        if chain and self._stride:
            seen = set(known)
            head = chain[0]
            for k in (*range(1, 9), *range(-1, -9, -1)):
                guess = head + k * self._stride
                if guess not in seen:
                    seen.add(guess)
                    guesses.append(guess)
        return known + guesses, sorted(set(self._prev_calls.values()))

    def _learn(self, chain: list[Address], calls: dict[Address, Address]) -> None:
        """Remember this sample's addresses to predict the next one."""
        self._prev_chain = chain
        self._prev_calls = calls
        deltas = [b - a for a, b in itertools.pairwise(chain) if 0 < b - a < 1 << 20]
        if deltas:
            self._stride = max(set(deltas), key=deltas.count)

    def _read_speculatively(
        self, address: Address, found: dict[Address, tuple[bytes, int]]
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

    def read_contexts(
        self, first: Address, found: dict[Address, tuple[bytes, int]]
    ) -> tuple[list[tuple[int, Address, Address, Address]], list[Address]]:
        """(callflag, call, callfun, cloenv) of each context from `first` to the chain's end.

        `found` holds bytes already read in this stop, by context address; it is extended.
        Also returns the chain's addresses.
        """
        unpack = self._context_struct.unpack_from
        contexts: list[tuple[int, Address, Address, Address]] = []
        chain: list[Address] = []
        seen: set[Address] = set()
        address = first
        while address:
            if address in seen or len(chain) >= MAX_DEPTH:
                raise TornSampleError("the context chain loops or is implausibly deep")
            seen.add(address)
            chain.append(address)
            hit = found.get(address)
            if hit is None:
                self._read_speculatively(address, found)
                hit = found[address]
            address, flag, callfun, call, cloenv = unpack(hit[0], hit[1])
            contexts.append((flag, call, callfun, cloenv))
        return contexts, chain

    def capture(self) -> RawSample:
        """Copy the current stack's volatile parts. Call while the target is stopped."""
        size = self.layout.size
        predicted, predicted_calls = self._predicted_regions()
        span = self._globals_span or (self.global_context, 8)
        regions = [
            span,
            *((a, size) for a in predicted),
            *((c, CELL_SIZE) for c in predicted_calls),
        ]
        blob, offsets = self.memory.read_scatter(regions)
        if offsets[0] < 0:
            first, in_gc = self.read_globals()
        else:
            first = _U64.unpack_from(blob, offsets[0] + self.global_context - span[0])[0]
            in_gc = False
            if self.gc_flag and self._globals_span:
                in_gc = _I32.unpack_from(blob, offsets[0] + self.gc_flag - span[0])[0] != 0
            elif self.gc_flag:
                in_gc = _I32.unpack(self.memory.read(self.gc_flag, 4))[0] != 0
        self.last_head = first
        sample = RawSample(gc=in_gc, head=first)
        if not first:
            self._learn([], {})
            return sample
        n = len(predicted)
        found = {a: (blob, o) for a, o in zip(predicted, offsets[1 : 1 + n], strict=True) if o >= 0}
        cells_found = {
            c: (blob, o) for c, o in zip(predicted_calls, offsets[1 + n :], strict=True) if o >= 0
        }
        contexts, chain = self.read_contexts(first, found)
        sample.contexts = len(contexts)
        frame_contexts = [
            (address, c)
            for address, c in zip(chain, contexts, strict=True)
            if c[0] & (CTXT_FUNCTION | CTXT_BUILTIN)
        ]
        self._learn(chain, {address: c[1] for address, c in frame_contexts})
        if not frame_contexts:
            return sample
        missing = sorted({c[1] for _, c in frame_contexts if c[1] not in cells_found})
        if missing:
            more_blob, more_offsets = self.memory.read_scatter([(c, CELL_SIZE) for c in missing])
            for call, offset in zip(missing, more_offsets, strict=True):
                if offset >= 0:
                    cells_found[call] = (more_blob, offset)
        if self.validate:
            self._validate([c for _, c in frame_contexts])
        frames = sample.frames
        unknown: list[tuple[RawFrame, Address]] = []
        for _, ctx in frame_contexts:
            hit = cells_found.get(ctx[1])
            if hit is None:
                raise BadAddressError(f"cannot read call object at {ctx[1]:#x}")
            info, head = _HEAD.unpack_from(hit[0], hit[1])
            if info & TYPE_MASK != LANGSXP:
                continue  # R writes no frame for a context whose call is not a call
            frame = RawFrame()
            frames.append(frame)
            name = self.names.get(head)
            if name is not None:
                frame.name = name
            else:
                unknown.append((frame, head))
        if unknown:
            self._classify_heads(unknown)
        return sample

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
            if fun[0] & TYPE_MASK != CLOSXP or env[0] & TYPE_MASK != ENVSXP:
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
        """The named stack of a captured sample. Safe to call while the target runs."""
        names = tuple(
            frame.name if frame.name is not None else self._symbol_name(frame.symbol)
            for frame in raw.frames
        )
        return Stack(names, gc=raw.gc, idle=raw.idle)
