"""`LivePlan`: one process_vm_readv of many regions, laid out as the stack reader relies on
(leading regions first and in order, trailing regions read again after the rest, guesses
last). Read here from this very process, whose memory the test controls."""

from __future__ import annotations

import ctypes
import os
from collections import OrderedDict

from sampler.procmem import LiveMemory
from sampler.procmem import note_recent


def _region(content: bytes) -> tuple[ctypes.Array[ctypes.c_char], int]:
    buffer = ctypes.create_string_buffer(content, len(content))
    return buffer, ctypes.addressof(buffer)


def test_leading_regions_come_first_in_order_and_trailing_ones_are_read_again() -> None:
    # GIVEN four regions of this process's memory
    keep = [_region(bytes([n]) * size) for n, size in ((1, 16), (2, 24), (3, 40), (4, 8))]
    (_, a), (_, b), (_, c), (_, d) = keep
    memory = LiveMemory(os.getpid())
    # WHEN a plan leads with c then a, reads b and d, and reads c again at the end
    plan = memory.plan([(b, 24), (d, 8), (a, 16)], leading=[(c, 40), (a, 16)], trailing=[(c, 40)])
    got = plan.read()
    data = plan.buffer.raw[:got]
    # THEN the leading regions fill the buffer's start, in the order given
    assert data[:56] == bytes([3]) * 40 + bytes([1]) * 16
    assert plan.offsets[c] == 0 and plan.offsets[a] == 40
    # AND the other regions follow once each (a, already leading, is not read twice)
    assert data[plan.offsets[b] : plan.offsets[b] + 24] == bytes([2]) * 24
    assert data[plan.offsets[d] : plan.offsets[d] + 8] == bytes([4]) * 8
    # AND the trailing region's second copy comes after all of them
    (again,) = plan.trailing_offsets
    assert again >= max(plan.offsets.values()) and data[again : again + 40] == bytes([3]) * 40
    assert got == plan.size == 40 + 16 + 24 + 8 + 40
    # AND `locate` finds a region's first copy
    assert plan.locate(c + 8, 8) == 8


def test_a_region_inside_a_leading_region_is_read_with_it() -> None:
    # GIVEN R's globals read first as one span, and the top-level context inside that span
    buffer, span = _region(bytes(range(200)))
    _, other = _region(b"\x44" * 8)
    memory = LiveMemory(os.getpid())
    # WHEN a plan leads with the span and also asks for the context (and something else)
    plan = memory.plan([(span + 40, 64), (other, 8)], leading=[(span, 200)])
    got = plan.read()
    data = plan.buffer.raw[:got]
    # THEN the context is found in the span's bytes: one iovec and 64 bytes fewer
    assert plan.offsets[span + 40] == 40
    assert data[40:104] == bytes(range(40, 104))
    assert plan.count == 2 and got == plan.size == 200 + 8
    assert data[plan.offsets[other] : plan.offsets[other] + 8] == b"\x44" * 8
    # AND a region reaching past the span's end is read on its own
    plan = memory.plan([(span + 150, 64)], leading=[(span, 200)])
    assert plan.count == 2 and plan.offsets[span + 150] == 200
    del buffer


def test_a_trailing_copy_sees_memory_as_it_is_at_the_end_of_the_read() -> None:
    # GIVEN a region read first and again last: both copies of one read agree
    buffer, address = _region(b"\x11" * 8)
    plan = LiveMemory(os.getpid()).plan([], leading=[(address, 8)], trailing=[(address, 8)])
    got = plan.read()
    raw = plan.buffer.raw
    assert raw[:8] == raw[plan.trailing_offsets[0] : plan.trailing_offsets[0] + 8]
    # WHEN the memory changes between two reads, THEN the next read shows the change
    buffer[0] = b"\x22"
    assert plan.read() == got
    assert plan.buffer.raw[plan.trailing_offsets[0]] == 0x22


def test_an_unreadable_guess_does_not_cut_off_the_trailing_copy() -> None:
    # GIVEN a plan whose guess lies in unmapped memory (the first page is never mapped)
    buffer, address = _region(b"\x33" * 8)
    plan = LiveMemory(os.getpid()).plan(
        [], speculative=[(0x1000, 8)], leading=[(address, 8)], trailing=[(address, 8)]
    )
    # WHEN it is read, THEN everything up to the guess is valid, the second copy included
    got = plan.read()
    assert got >= plan.trailing_offsets[0] + 8
    assert plan.buffer.raw[plan.trailing_offsets[0]] == 0x33
    del buffer


def test_note_recent_keeps_the_last_needed_and_says_when_the_plan_changes() -> None:
    recent: OrderedDict[int, None] = OrderedDict()
    # Something new changes the plan; the same again does not
    assert note_recent(recent, [1, 2, 3], limit=4)
    assert not note_recent(recent, [2, 3], limit=4)
    # Needed again makes it the most recent, so the oldest goes first beyond the limit
    assert note_recent(recent, [1, 4, 5], limit=4)
    assert list(recent) == [3, 1, 4, 5]
    # Forgetting alone changes the plan too
    assert note_recent(recent, [5], limit=2)
    assert list(recent) == [4, 5]
