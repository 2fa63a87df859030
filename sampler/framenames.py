"""Naming a frame from its call, as R's Rprof does (eval.c `doprof`).

A context is a frame when its flag has CTXT_FUNCTION or CTXT_BUILTIN and its call is a
LANGSXP. The call's head names it: a symbol by its name; `a::b`, `a:::b`, `a$b` with two
symbol arguments as written; `a[[i]]` with a symbol and a symbol, string or number;
everything else `<Anonymous>`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sampler.errors import BadAddressError
from sampler.layouts import CELL_SIZE
from sampler.layouts import INTSXP
from sampler.layouts import LANGSXP
from sampler.layouts import LISTSXP
from sampler.layouts import REALSXP
from sampler.layouts import STRSXP
from sampler.layouts import SYMSXP
from sampler.layouts import TYPE_MASK
from sampler.layouts import VECTOR_DATA
from sampler.procmem import Address
from sampler.procmem import ProcessMemory
from sampler.sexp import F64
from sampler.sexp import I32
from sampler.sexp import U64
from sampler.sexp import SymbolNames
from sampler.sexp import is_plain_vector
from sampler.sexp import links
from sampler.sexp import read_charsxp
from sampler.sexp import read_links
from sampler.sexp import vector_length

ANONYMOUS = "<Anonymous>"
_NA_INTEGER = -(2**31)


@dataclass
class RawFrame:
    """A frame captured while the target was stopped; `name` or `symbol` is set.
    `context`: the address of its context (RCNTXT), for placing native frames (0: unknown)."""

    name: str | None = None
    symbol: Address = 0
    context: Address = 0


class FrameNamer:
    """Names frames in one target process; the names are cached for its life."""

    def __init__(
        self,
        memory: ProcessMemory,
        version: tuple[int, int],
        *,
        nil: Address,
        operators: dict[Address, str],
        bracket2: Address,
    ) -> None:
        """`operators`: the addresses of the symbols `::`, `:::` and `$`, with their text;
        `bracket2`: that of `[[` (0: unknown)."""
        self.memory = memory
        self.version = version
        self.nil = nil
        self.operators = operators
        self.bracket2 = bracket2
        self.symbol_name = SymbolNames(memory)
        #: Names of symbols by address (`symbol_name`'s cache).
        self.names = self.symbol_name.known
        #: Name of a compound head (`a::b` ...) keyed by the head node's address and its
        #: CAR and CDR. R's parser never mutates a call in place, so the same node with the
        #: same links is the same expression; a node freed and reused gets other links.
        self.compound_names: dict[tuple[Address, Address, Address], str] = {}

    def name_heads(self, unknown: list[tuple[RawFrame, Address]]) -> None:
        """Name frames whose call head is not a known symbol. Call while stopped: the
        heads die with their calls."""
        heads = self.memory.read_many([(head, CELL_SIZE) for _, head in unknown])
        for (frame, head), cell in zip(unknown, heads):
            if cell is None:
                raise BadAddressError(f"cannot read call head at {head:#x}")
            kind, car, cdr, _ = links(cell)
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
        first_kind, lhs, rest, _ = read_links(mem, args) if args else (0, 0, 0, 0)
        if first_kind != LANGSXP and first_kind != LISTSXP:  # the argument pairlist
            return ANONYMOUS
        if not rest or rest == self.nil:
            return ANONYMOUS
        _, rhs, _, _ = read_links(mem, rest)
        if mem.read(lhs, 8)[0] & TYPE_MASK != SYMSXP:
            return ANONYMOUS
        lhs_name = self.symbol_name(lhs)
        rhs_head = mem.read(rhs, VECTOR_DATA + 8)
        rhs_kind = rhs_head[0] & TYPE_MASK
        if op is not None:
            if rhs_kind != SYMSXP:
                return ANONYMOUS
            return f"{lhs_name}{op}{self.symbol_name(rhs)}"
        # `[[`: the index may be a symbol, a string or a number of length > 0.
        if rhs_kind == SYMSXP:
            index = self.symbol_name(rhs)
        elif rhs_kind in (STRSXP, INTSXP, REALSXP):
            if not is_plain_vector(rhs_head[0], rhs_kind) or vector_length(rhs_head) == 0:
                return ANONYMOUS
            if rhs_kind == STRSXP:
                index = '"' + read_charsxp(mem, U64.unpack_from(rhs_head, VECTOR_DATA)[0]) + '"'
            elif rhs_kind == INTSXP:
                value = I32.unpack_from(rhs_head, VECTOR_DATA)[0]
                index = "NA" if value == _NA_INTEGER else str(value)
            else:
                index = self._format_double(F64.unpack_from(rhs_head, VECTOR_DATA)[0])
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
