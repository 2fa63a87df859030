"""DWARF call frame information (.eh_frame, .debug_frame) as compact per-pc rules.

One FDE (and its CIE) is parsed at a time (`cfientries`), found through .eh_frame_hdr's
binary search table when the file has one (else the entries' starts are indexed once); its
instructions are run here into rows of `FrameRule`, cached per FDE. Only what an x86-64
unwinder needs is kept: how to find the CFA, the return address and the registers.
"""

from __future__ import annotations

import bisect
import operator
import struct
from array import array
from collections.abc import Sequence
from typing import Any
from typing import Union

from sampler.native.cfientries import Cie
from sampler.native.cfientries import EntryError
from sampler.native.cfientries import Fde
from sampler.native.cfientries import fde_starts
from sampler.native.cfientries import parse_fde
from sampler.native.cfientries import read_pointer
from sampler.native.registers import CALLEE_SAVED
from sampler.native.registers import RIP
from sampler.native.registers import RSP

# How a register of the caller is found (DWARF 5, 6.4.1), in `FrameRule.registers`.
#: The value is saved at CFA + arg.
AT_CFA = 0
#: The value is CFA + arg.
IS_CFA = 1
#: The value is in register arg.
IN_REGISTER = 2
#: The value is unchanged (also the default for a callee-saved register without a rule).
SAME = 3
#: The value is lost; for the return address: this is the outermost frame.
UNDEFINED = 4
#: The value is saved at the address the expression arg computes (CFA pushed first).
AT_EXPRESSION = 5
#: The value is what the expression arg computes (CFA pushed first).
IS_EXPRESSION = 6

RegisterRule = tuple[int, Union[int, bytes]]


class CfiError(Exception):
    """CFI that cannot be read or run; the message says what (for the stack's reason)."""


#: Where `FrameRule.pick` finds None, the CFA and the loaded values after the registers.
_PICKED_NONE, _PICKED_CFA, _PICKED_FROM = RIP + 1, RIP + 2, RIP + 3


class FrameRule:
    """How to find the caller's frame at one pc: CFA = register + offset (or an expression),
    then each register by its rule. A register without a rule keeps its value if callee-saved
    and is unknown otherwise."""

    __slots__ = (
        "cfa_expression",
        "cfa_offset",
        "cfa_register",
        "load_from",
        "load_words",
        "loads",
        "others",
        "pick",
        "plain",
        "registers",
        "signal_frame",
    )

    def __init__(
        self,
        cfa_register: int,
        cfa_offset: int,
        cfa_expression: bytes | None,
        registers: tuple[tuple[int, RegisterRule], ...],
        signal_frame: bool,
    ) -> None:
        self.cfa_register = cfa_register
        self.cfa_offset = cfa_offset
        self.cfa_expression = cfa_expression
        self.registers = registers
        #: A signal trampoline's frame: its caller's pc is exact, not a return address.
        self.signal_frame = signal_frame
        #: The common rules apart, for speed: (register, offset) saved at CFA + offset
        #: (below: the offset as an index into `load_words`)...
        self.loads = tuple(
            (number, int(rule[1]))
            for number, rule in registers
            if rule[0] == AT_CFA and number <= RIP
        )
        #: ...and every other rule of a register the unwinder tracks.
        self.others = tuple(
            (number, rule) for number, rule in registers if rule[0] != AT_CFA and number <= RIP
        )
        #: The saved registers lie close together (a prologue pushes them): one read with
        #: `load_words` from CFA + `load_from` gets them all; `loads` then holds indexes.
        in_order = sorted(self.loads, key=lambda load: load[1])
        self.load_from = in_order[0][1] if in_order else 0
        layout, at = "<", self.load_from
        for _, offset in in_order:
            layout += f"{offset - at}xQ" if offset > at else "Q"
            at = offset + 8
        self.load_words = _struct_for(layout)
        self.loads = tuple((number, index) for index, (number, _) in enumerate(in_order))
        #: Whether the rule is what most frames have, which the unwinder runs inline: the
        #: CFA a tracked register + offset, every rule a load from CFA + offset, one of them
        #: the return address's.
        self.plain = (
            cfa_expression is None
            and 0 <= cfa_register <= RIP
            and not self.others
            and any(number == RIP for number, _ in self.loads)
        )
        #: A plain rule's caller's registers in one step: `pick((*registers, None, cfa,
        #: *load_words' values))` (loaded, else kept if callee-saved, rsp the CFA, else None).
        loaded = dict(self.loads)
        self.pick = operator.itemgetter(
            *(
                _PICKED_FROM + loaded[number]
                if number in loaded
                else number
                if number in CALLEE_SAVED
                else _PICKED_CFA
                if number == RSP
                else _PICKED_NONE
                for number in range(RIP + 1)
            )
        )

    def rule_for(self, register: int) -> RegisterRule | None:
        """The rule for `register`, or None when the CFI gives none."""
        for number, rule in self.registers:
            if number == register:
                return rule
        return None

    def __repr__(self) -> str:
        cfa = (
            f"expr {self.cfa_expression.hex()}"
            if self.cfa_expression is not None
            else f"r{self.cfa_register}{self.cfa_offset:+d}"
        )
        return f"FrameRule(cfa={cfa}, registers={self.registers})"


_STRUCTS_BY_LAYOUT: dict[str, struct.Struct] = {}
_MAX_LAYOUTS = 1 << 10


def _struct_for(layout: str) -> struct.Struct:
    """One `struct.Struct` per layout: FDEs' rows repeat a few dozen layouts thousands of
    times (the first _MAX_LAYOUTS are kept)."""
    found = _STRUCTS_BY_LAYOUT.get(layout)
    if found is None:
        found = struct.Struct(layout)
        if len(_STRUCTS_BY_LAYOUT) < _MAX_LAYOUTS:
            _STRUCTS_BY_LAYOUT[layout] = found
    return found


class FdeRules:
    """The rows of one FDE: `rules[i]` holds from `pcs[i]` on, up to `end`."""

    __slots__ = ("end", "pcs", "rules", "start")

    def __init__(self, start: int, end: int, pcs: list[int], rules: list[FrameRule]) -> None:
        self.start = start
        self.end = end
        self.pcs = pcs
        self.rules = rules

    def rule_at(self, address: int) -> FrameRule | None:
        """The rule in effect at `address` (an ELF address), or None outside this FDE."""
        if not self.start <= address < self.end:
            return None
        index = bisect.bisect_right(self.pcs, address) - 1
        return self.rules[index] if index >= 0 else None


# DW_CFA_* opcodes (pyelftools gives them as ints or IntEnum members, depending on version).
_ADVANCE = frozenset({0x40, 0x02, 0x03, 0x04})
_SET_LOC = 0x01
_OFFSET = frozenset({0x80, 0x05, 0x11})
_VAL_OFFSET = frozenset({0x14, 0x15})
_RESTORE = frozenset({0xC0, 0x06})
_DEF_CFA, _DEF_CFA_SF, _DEF_CFA_REGISTER, _DEF_CFA_OFFSET, _DEF_CFA_OFFSET_SF = (
    0x0C,
    0x12,
    0x0D,
    0x0E,
    0x13,
)
_DEF_CFA_EXPRESSION, _EXPRESSION, _VAL_EXPRESSION = 0x0F, 0x10, 0x16
_UNDEFINED, _SAME_VALUE, _REGISTER = 0x07, 0x08, 0x09
_REMEMBER, _RESTORE_STATE = 0x0A, 0x0B
_IGNORED = frozenset({0x00, 0x2E, 0x2D})  # nop, GNU_args_size, negate_ra_state/window_save

_State = dict[Any, Any]  # "cfa" -> (reg, offset, expr); register number -> RegisterRule


def _run(
    instructions: Sequence[Any],
    state: _State,
    initial: _State,
    pc: int,
    code_align: int,
    data_align: int,
    rows: list[tuple[int, _State]],
) -> _State:
    """Run CFA instructions from `state` at `pc`; append each finished row to `rows`."""
    stack: list[_State] = []
    for instruction in instructions:
        op = int(instruction.opcode)
        if op & 0xC0:  # a primary opcode: pyelftools < 0.33 keeps its operand in the low bits
            op &= 0xC0
        args = instruction.args
        if op in _ADVANCE or op == _SET_LOC:
            rows.append((pc, dict(state)))
            pc = args[0] if op == _SET_LOC else pc + args[0] * code_align
        elif op in _OFFSET:
            state[args[0]] = (AT_CFA, args[1] * data_align)
        elif op in _VAL_OFFSET:
            state[args[0]] = (IS_CFA, args[1] * data_align)
        elif op in _RESTORE:
            if args[0] in initial:
                state[args[0]] = initial[args[0]]
            else:
                state.pop(args[0], None)
        elif op == _DEF_CFA:
            state["cfa"] = (args[0], args[1], None)
        elif op == _DEF_CFA_SF:
            state["cfa"] = (args[0], args[1] * data_align, None)
        elif op == _DEF_CFA_REGISTER:
            state["cfa"] = (args[0], state["cfa"][1], None)
        elif op == _DEF_CFA_OFFSET:
            state["cfa"] = (state["cfa"][0], args[0], None)
        elif op == _DEF_CFA_OFFSET_SF:
            state["cfa"] = (state["cfa"][0], args[0] * data_align, None)
        elif op == _DEF_CFA_EXPRESSION:
            state["cfa"] = (-1, 0, bytes(args[0]))
        elif op == _EXPRESSION:
            state[args[0]] = (AT_EXPRESSION, bytes(args[1]))
        elif op == _VAL_EXPRESSION:
            state[args[0]] = (IS_EXPRESSION, bytes(args[1]))
        elif op == _UNDEFINED:
            state[args[0]] = (UNDEFINED, 0)
        elif op == _SAME_VALUE:
            state[args[0]] = (SAME, 0)
        elif op == _REGISTER:
            state[args[0]] = (IN_REGISTER, args[1])
        elif op == _REMEMBER:
            stack.append(dict(state))
        elif op == _RESTORE_STATE:
            if not stack:
                raise CfiError("DW_CFA_restore_state without remember_state")
            state = stack.pop()
        elif op not in _IGNORED:
            raise CfiError(f"unknown CFA instruction {op:#x}")
    rows.append((pc, state))
    return state


def decode_fde(fde: Fde) -> FdeRules:
    """The rows of `fde` (CIE's initial instructions first) as compact rules."""
    cie = fde.cie
    code_align, data_align = cie.code_align, cie.data_align
    ra_register, signal_frame = cie.return_address_register, cie.signal_frame
    start = fde.start
    end = start + fde.size
    scratch: list[tuple[int, _State]] = []
    initial = _run(cie.instructions, {"cfa": (-1, 0, None)}, {}, start, 1, data_align, scratch)
    rows: list[tuple[int, _State]] = []
    _run(fde.instructions, dict(initial), initial, start, code_align, data_align, rows)
    pcs: list[int] = []
    rules: list[FrameRule] = []
    for pc, state in rows:
        if pcs and pc == pcs[-1]:
            pcs.pop()
            rules.pop()
        cfa_register, cfa_offset, cfa_expression = state.pop("cfa")
        if ra_register != RIP and ra_register in state:
            state[RIP] = state.pop(ra_register)
        registers = tuple(sorted(state.items()))
        pcs.append(pc)
        key = (cfa_register, cfa_offset, cfa_expression, registers, signal_frame)
        rule = _RULES.get(key)
        if rule is None:
            rule = FrameRule(*key)
            if len(_RULES) < _MAX_RULES:
                _RULES[key] = rule
        rules.append(rule)
    return FdeRules(start, end, pcs, rules)


#: FrameRules made so far, by what defines them: most rows of most FDEs are the same few
#: hundred rules (a prologue's pushes), and making one takes longer than parsing its FDE.
#: Rules are never changed once made, so FDEs share them; the first _MAX_RULES are kept.
_RULES: dict[tuple[int, int, bytes | None, tuple[tuple[int, RegisterRule], ...], bool], FrameRule]
_RULES = {}
_MAX_RULES = 1 << 14


_DW_EH_PE_omit = 0xFF


def _search_table(hdr: bytes, hdr_address: int) -> tuple[array[int], array[int]] | None:
    """.eh_frame_hdr's table: (function starts, FDE addresses), sorted; None if absent."""
    if len(hdr) < 4 or hdr[0] != 1:
        return None
    _, ptr_encoding, count_encoding, table_encoding = hdr[:4]
    if ptr_encoding == _DW_EH_PE_omit or count_encoding == _DW_EH_PE_omit:
        return None
    if table_encoding == _DW_EH_PE_omit:
        return None
    _, at = read_pointer(hdr, 4, ptr_encoding, hdr_address)
    count, at = read_pointer(hdr, at, count_encoding, hdr_address)
    starts = array("Q")
    fdes = array("Q")
    if table_encoding == 0x3B:  # datarel | sdata4: what binutils and lld write
        values = array("i", hdr[at : at + 8 * count])
        starts.extend((hdr_address + v) & 0xFFFFFFFFFFFFFFFF for v in values[0::2])
        fdes.extend((hdr_address + v) & 0xFFFFFFFFFFFFFFFF for v in values[1::2])
        return starts, fdes
    for _ in range(count):
        start, at = read_pointer(hdr, at, table_encoding, hdr_address)
        fde, at = read_pointer(hdr, at, table_encoding, hdr_address)
        starts.append(start)
        fdes.append(fde)
    return starts, fdes


class CfiSection:
    """One .eh_frame or .debug_frame section: `rules_at(address)` finds the FDE and its row.

    `address` is an ELF address of the file. FDEs are decoded on first use and cached.
    """

    def __init__(
        self,
        data: bytes,
        address: int,
        *,
        for_eh_frame: bool,
        hdr: bytes | None = None,
        hdr_address: int = 0,
    ) -> None:
        self.name = ".eh_frame" if for_eh_frame else ".debug_frame"
        self._decoded: dict[int, FdeRules | None] = {}
        self._data, self._address, self._for_eh_frame = data, address, for_eh_frame
        self._cies: dict[int, Cie] = {}
        try:
            table = _search_table(hdr, hdr_address) if hdr else None
        except EntryError as err:
            raise CfiError(f"cannot read .eh_frame_hdr: {err}") from None
        if table is not None:
            self._starts, fde_addresses = table
            self._offsets = array("Q", (a - address for a in fde_addresses))
        else:
            self._index_all()

    def _index_all(self) -> None:
        """Index every FDE of the section (no .eh_frame_hdr, or .debug_frame)."""
        try:
            found = fde_starts(self._data, self._for_eh_frame, self._address, self._cies)
        except EntryError as err:
            raise CfiError(f"cannot parse the CFI section: {err}") from None
        found.sort()
        self._starts = array("Q", (start for start, _ in found))
        self._offsets = array("Q", (offset for _, offset in found))

    def fde_rules(self, address: int) -> FdeRules | None:
        """The decoded FDE covering `address`, or None when no FDE covers it."""
        index = bisect.bisect_right(self._starts, address) - 1
        if index < 0:
            return None
        offset = self._offsets[index]
        if offset not in self._decoded:
            try:
                entry = parse_fde(self._data, offset, self._for_eh_frame, self._address, self._cies)
            except EntryError as err:
                raise CfiError(f"cannot parse the FDE at {offset:#x}: {err}") from None
            self._decoded[offset] = decode_fde(entry) if entry is not None else None
        rules = self._decoded[offset]
        if rules is None or not rules.start <= address < rules.end:
            return None
        return rules

    def rule_at(self, address: int) -> FrameRule | None:
        """The rule in effect at `address`, or None where this section has no FDE for it."""
        rules = self.fde_rules(address)
        return rules.rule_at(address) if rules is not None else None


def find_fde(sections: Sequence[CfiSection], address: int) -> FdeRules | None:
    """The first FDE any of `sections` has for `address`, decoded (its `start` is the
    function's start: the FDE's initial location)."""
    for section in sections:
        rules = section.fde_rules(address)
        if rules is not None:
            return rules
    return None
