"""Where the recovered builtin frame goes (sampler.builtins.BuiltinReader.frame): pure logic
over context bytes; the reading itself is tested against real R in tests/test_builtins.py."""

from __future__ import annotations

import struct
from typing import cast

import pytest
from fakes import FakeMemory
from fakes import cell

from sampler.builtins import BuiltinReader
from sampler.builtins import CurrentBuiltin
from sampler.framenames import RawFrame
from sampler.layouts import BCODESXP
from sampler.layouts import CTXT_BUILTIN
from sampler.layouts import CTXT_FUNCTION
from sampler.layouts import LANGSXP
from sampler.layouts import SYMSXP
from sampler.layouts import VECTOR_DATA
from sampler.layouts import ContextLayout
from sampler.layouts import layout_for
from sampler.procmem import LiveMemory
from sampler.sexp import instruction_offset

BODY, OTHER_BODY, PC_VAR, SUM = 0x5000, 0x6000, 0x7FF0, 0x9000
CURRENT = CurrentBuiltin(symbol=SUM, body=BODY, pc_var=PC_VAR, relpc=12)
CTXT_LOOP = 3


class _NoProcess:
    pid = 0


def _reader(layout: ContextLayout, memory: object = None) -> BuiltinReader:
    live = cast(LiveMemory, memory or _NoProcess())
    return BuiltinReader(live, layout, bc_globals=(0x100, 0x108), callbuiltin=1, nil=2)


def _context(
    layout: ContextLayout, flag: int, body: int, pc_var: int, relpc: int, call: int = 0
) -> bytes:
    data = bytearray(layout.size)
    struct.pack_into("<i", data, layout.callflag, flag)
    struct.pack_into("<Q", data, layout.call, call)
    struct.pack_into("<QQ", data, layout.bcbody, body, pc_var)
    if layout.relpc is not None:
        struct.pack_into("<q", data, layout.relpc, relpc)
    return bytes(data)


def _frame_for(layout: ContextLayout, contexts: list[bytes]) -> RawFrame | None:
    copy = {0x1000 + 0x1000 * i: data for i, data in enumerate(contexts)}
    return _reader(layout).frame(CURRENT, lambda a, size: (copy[a], 0), list(copy))


@pytest.mark.parametrize("version", [(4, 2), (4, 5)])
def test_builtin_is_innermost_unless_a_frame_was_opened_during_it(version: tuple[int, int]) -> None:
    layout = layout_for(version, "EM_X86_64")
    new = layout.relpc is not None
    same = _context(layout, CTXT_FUNCTION, BODY, PC_VAR, 12)
    # Rprof's own context for the builtin, or a closure the builtin called: no frame added.
    assert _frame_for(layout, [same]) is None
    assert _frame_for(layout, [_context(layout, CTXT_BUILTIN, BODY, PC_VAR, 12)]) is None
    # Loop contexts are not frames: the first frame context decides.
    assert _frame_for(layout, [_context(layout, CTXT_LOOP, 0, 0, -1), same]) is None
    # The innermost frame is the builtin's caller (called from elsewhere): the builtin is
    # innermost, named by its call's head symbol.
    caller = _context(layout, CTXT_FUNCTION, OTHER_BODY, PC_VAR + 64, 3)
    frame = _frame_for(layout, [caller, same])
    assert frame is not None and frame.symbol == SUM
    # Same body, another instruction (4.4+: relpc) or another bcEval (before: its pc var).
    other_pc = _context(layout, CTXT_FUNCTION, BODY, PC_VAR if new else PC_VAR + 64, 13)
    assert _frame_for(layout, [other_pc]) is not None
    # No frame context at all (top-level byte code): the builtin is the only frame.
    assert _frame_for(layout, []) is not None


# A body whose instruction 7 is CALLBUILTIN (label 1) of constant 2, the call `length(x)`.
CODE, CONSTS, LENGTH_CALL, LENGTH, NIL = 0x10000, 0x20000, 0x30000, 0x40000, 2
CALL_M, CALL_G = 0x31000, 0x32000


class _FakeProcess(FakeMemory):
    pid = 0


def _memory() -> _FakeProcess:
    code = bytearray(VECTOR_DATA + 8 * 16)
    struct.pack_into("<Qq", code, VECTOR_DATA + 8 * 7, 1, 2)  # CALLBUILTIN 2
    struct.pack_into("<Qq", code, VECTOR_DATA + 8 * 3, 99, 0)  # another instruction
    consts = bytearray(VECTOR_DATA + 8 * 4)
    struct.pack_into("<Q", consts, VECTOR_DATA + 8 * 2, LENGTH_CALL)
    return _FakeProcess(
        {
            BODY: cell(BCODESXP, CODE, CONSTS),
            OTHER_BODY: cell(BCODESXP, CODE, CONSTS),
            CODE: bytes(code),
            CONSTS: bytes(consts),
            LENGTH_CALL: cell(LANGSXP, LENGTH, 0),
            LENGTH: cell(SYMSXP, 0, 0, NIL),
        }
    )


#: Where the caller bcEvals' `currentpc` words are (R < 4.4: contexts point there), and
#: what they hold: the address of instruction 7 (the CALLBUILTIN) or 3 of CODE.
PC_AT_CALLBUILTIN, PC_AT_OTHER, PC_UNCOPIED = 0x7F00, 0x7F08, 0x7F10
PC_WORDS = {
    PC_AT_CALLBUILTIN: struct.pack("<Q", CODE + VECTOR_DATA + 8 * 7),
    PC_AT_OTHER: struct.pack("<Q", CODE + VECTOR_DATA + 8 * 3),
}


def _between(
    contexts: list[bytes], whole: bool = True, version: tuple[int, int] = (4, 5)
) -> tuple[list[object], list[int]]:
    layout = layout_for(version, "EM_X86_64")
    copy = {0x1000 + 0x1000 * i: data for i, data in enumerate(contexts)}
    calls = {c: cell(LANGSXP, 0x50) for c in (CALL_M, CALL_G, LENGTH_CALL)}

    def at(address: int, size: int) -> tuple[bytes, int] | None:
        if size == layout.size:
            return copy[address], 0
        if size == 8:  # a pc word: only those the sample's copy holds
            return (PC_WORDS[address], 0) if address in PC_WORDS else None
        return (calls[address], 0) if address in calls else None  # bodies are read

    frames = [RawFrame(name=f"f{i}") for i in range(len(contexts))]
    inserted = _reader(layout, _memory()).insert_between(frames, at, list(copy), whole)
    return [f.name or f.symbol for f in frames], inserted


@pytest.mark.parametrize("version", [(4, 2), (4, 5)])
def test_a_builtin_that_called_r_code_lies_between_frames(version: tuple[int, int]) -> None:
    layout = layout_for(version, "EM_X86_64")

    # Before R 4.4 a context points at its caller's pc word; from 4.4 it keeps the offset.
    def opened_at(flag: int, body: int, relpc: int, call: int) -> bytes:
        pc_word = PC_AT_CALLBUILTIN if relpc == 7 else PC_AT_OTHER
        return _context(layout, flag, body, pc_word, relpc, call)

    method = opened_at(CTXT_FUNCTION, BODY, 7, CALL_M)
    dispatch = opened_at(CTXT_FUNCTION, BODY, 7, LENGTH_CALL)
    caller = opened_at(CTXT_FUNCTION, OTHER_BODY, 3, CALL_G)
    # Both frames opened during the CALLBUILTIN lie inside the builtin's frame.
    assert _between([method, dispatch, caller], version=version) == (
        ["f0", "f1", LENGTH, "f2"],
        [2],
    )
    # While Rprof runs, R's own context for the builtin is there already.
    rprofs = opened_at(CTXT_BUILTIN, BODY, 7, LENGTH_CALL)
    assert _between([method, rprofs, caller], version=version) == (["f0", "f1", "f2"], [])
    # Frames opened by other instructions get nothing; nor does the last frame walked
    # when the chain's outer part was not (its caller is unknown).
    assert _between([caller, caller], version=version) == (["f0", "f1"], [])
    assert _between([caller, method], whole=False, version=version) == (["f0", "f1"], [])


def test_before_r_4_4_a_pc_word_outside_the_copy_gives_no_builtin() -> None:
    layout = layout_for((4, 2), "EM_X86_64")
    caller = _context(layout, CTXT_FUNCTION, OTHER_BODY, PC_AT_OTHER, 0, CALL_G)
    # The same frames as above, but the copy lacks the word their pc pointer points at
    # (a snapshot plan copies contexts only): nothing is guessed.
    method = _context(layout, CTXT_FUNCTION, BODY, PC_UNCOPIED, 0, CALL_M)
    dispatch = _context(layout, CTXT_FUNCTION, BODY, PC_UNCOPIED, 0, LENGTH_CALL)
    assert _between([method, dispatch, caller], version=(4, 2)) == (["f0", "f1", "f2"], [])
    # Nor from a context without a pc pointer (opened outside byte code).
    none = _context(layout, CTXT_FUNCTION, BODY, 0, 0, CALL_M)
    assert _between([none, caller], version=(4, 2)) == (["f0", "f1"], [])


def test_an_instruction_address_becomes_its_offset_in_the_code() -> None:
    start = CODE + VECTOR_DATA
    assert instruction_offset(start + 8 * 7, CODE) == 7
    assert instruction_offset(start, CODE) == 0  # the version word
    # Not an instruction of this code: before its start, or inside an instruction word.
    assert instruction_offset(start - 8, CODE) == -1
    assert instruction_offset(start + 8 * 7 + 4, CODE) == -1


def test_before_r_4_4_the_plan_learns_every_pc_word_the_frames_needed() -> None:
    layout = layout_for((4, 2), "EM_X86_64")
    method = _context(layout, CTXT_FUNCTION, BODY, PC_UNCOPIED, 0, CALL_M)
    caller = _context(layout, CTXT_FUNCTION, OTHER_BODY, PC_AT_OTHER, 0, CALL_G)
    copy = {0x1000: method, 0x2000: caller}
    calls = {CALL_M: cell(LANGSXP, 0x50), CALL_G: cell(LANGSXP, 0x50)}

    def at(address: int, size: int) -> tuple[bytes, int] | None:
        if size == layout.size:
            return copy[address], 0
        found = PC_WORDS.get(address) if size == 8 else calls.get(address)
        return (found, 0) if found is not None else None

    reader = _reader(layout, _memory())
    assert reader.pc_words is not None
    frames = [RawFrame(name="f0"), RawFrame(name="f1")]
    reader.insert_between(frames, at, list(copy), True)
    # A word the copy lacked: the frames may lack a builtin (the sample is not kept to
    # recognise its stack by), and the next plans copy it, as the one it held.
    assert reader.missed_word
    assert sorted(reader.pc_words.regions()) == [(PC_AT_OTHER, 8), (PC_UNCOPIED, 8)]
    assert reader.pc_words.dirty
    reader.pc_words.dirty = False  # taken by a plan
    copy[0x1000] = _context(layout, CTXT_FUNCTION, BODY, PC_AT_CALLBUILTIN, 0, CALL_M)
    reader.insert_between(frames, at, list(copy), True)
    assert not reader.missed_word
    assert reader.pc_words.dirty  # a new word
    # From R 4.4 contexts keep the pc: no words.
    assert _reader(layout_for((4, 5), "EM_X86_64")).pc_words is None
