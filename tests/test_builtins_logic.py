"""Where the recovered builtin frame goes (sampler.builtins.BuiltinReader.frame): pure logic
over context bytes; the reading itself is tested against real R in tests/test_builtins.py."""

from __future__ import annotations

import struct
from typing import cast

import pytest

from sampler.builtins import BuiltinReader
from sampler.builtins import CurrentBuiltin
from sampler.framenames import RawFrame
from sampler.layouts import CTXT_BUILTIN
from sampler.layouts import CTXT_FUNCTION
from sampler.layouts import ContextLayout
from sampler.layouts import layout_for
from sampler.procmem import LiveMemory

BODY, OTHER_BODY, PC_VAR, SUM = 0x5000, 0x6000, 0x7FF0, 0x9000
CURRENT = CurrentBuiltin(symbol=SUM, body=BODY, pc_var=PC_VAR, relpc=12)
CTXT_LOOP = 3


class _NoProcess:
    pid = 0


def _reader(layout: ContextLayout) -> BuiltinReader:
    memory = cast(LiveMemory, _NoProcess())
    return BuiltinReader(memory, layout, bc_globals=(0x100, 0x108), callbuiltin=1, nil=2)


def _context(layout: ContextLayout, flag: int, body: int, pc_var: int, relpc: int) -> bytes:
    data = bytearray(layout.size)
    struct.pack_into("<i", data, layout.callflag, flag)
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
