"""sampler.nativewindow's sparse copies on a fake stack: a buffer of this process (copied
with process_vm_readv from ourselves), whose bytes the test changes between copies. The
same on real R: tests/test_native_window.py."""

from __future__ import annotations

import ctypes
import mmap
import os

from sampler.nativewindow import INNER
from sampler.nativewindow import MERGE
from sampler.nativewindow import StackCopy

SIZE = 256 << 10


class FakeStack:
    """SIZE bytes standing for a thread's stack, its top at `top`."""

    def __init__(self) -> None:
        self.memory = ctypes.create_string_buffer(SIZE)
        self.low = ctypes.addressof(self.memory)
        self.top = self.low + SIZE

    def fill(self, byte: int) -> None:
        ctypes.memset(self.memory, byte, SIZE)


def held(copier: StackCopy, copied: tuple[int, int, int, bool], address: int, size: int) -> bytes:
    """The `size` bytes the copy `copied` (StackCopy.copy's) holds for `address`."""
    offset, _, start, _ = copied
    return ctypes.string_at(ctypes.addressof(copier.buffer) + offset + address - start, size)


def test_the_first_copy_is_whole_then_sparse_copies_take_the_window_and_the_reads() -> None:
    stack = FakeStack()
    stack.fill(1)
    copier = StackCopy(os.getpid(), stack.top)
    sp = stack.low + 4096
    whole = copier.copy(sp)
    assert whole[1:] == (stack.top - (sp - 128), sp - 128, False)
    assert held(copier, whole, sp, 16) == b"\1" * 16
    # The unwinder read two words far out, 100 bytes apart (one piece), and one beyond.
    far, farther = sp + 100_000, sp + 200_000
    reads = [(far, far + 8, 5), (far + 100, far + 108, 6), (farther, farther + 56, 7)]
    copier.plan(reads)
    stack.fill(2)  # R ran on: every byte may have changed
    sparse = copier.copy(sp)
    assert sparse[2:] == (sp - 128, True)
    assert copier.copied == INNER + 108 + 56  # the window, the two pieces; no gap
    for address, size in ((sp - 128, INNER), (far, 108), (farther, 56)):
        assert held(copier, sparse, address, size) == b"\2" * size
    assert held(copier, sparse, far + 200, 8) != b"\2" * 8  # a gap: stale, not copied
    assert copier.check([(sp, sp + 8, 1), *reads]) is None
    # A read in a gap cuts the stack there (its frames stand), and the next copy is whole.
    assert copier.check([(sp, sp + 8, 1), (far, far + 8, 5), (far + 300, far + 308, 6)]) == (
        6,
        far + 300,
    )
    assert copier.copy(sp)[3] is False


def test_sparse_copies_guess_from_the_recent_unwindings_and_merge_close_reads() -> None:
    stack = FakeStack()
    copier = StackCopy(os.getpid(), stack.top)
    sp = stack.low + 4096
    copier.copy(sp)
    one, two = sp + 150_000, sp + 180_000
    copier.plan([(one, one + 16, 3)])
    copier.copy(sp)
    copier.plan([(two, two + 16, 3), (two + MERGE + 100, two + MERGE + 116, 4)])
    copier.copy(sp)
    # Both unwindings' reads are copied (a loop's stacks take turns); the first alone would
    # have been one piece, the second's two pieces stay two (more than MERGE apart).
    assert copier.check([(one, one + 16, 3), (two, two + 16, 3)]) is None
    assert copier.copied == INNER + 16 + 16 + 16
    # A window that reaches past the stack's guesses copies the whole stack instead.
    assert copier.copy(two + 64)[3] is False


def test_a_read_the_kernel_did_not_copy_cuts_the_stack() -> None:
    # A fake stack whose last page cannot be read (as memory unmapped since the guess).
    pages = mmap.mmap(-1, SIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    low = ctypes.addressof(ctypes.c_char.from_buffer(pages))
    top = low + SIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    assert libc.mprotect(top - mmap.PAGESIZE, mmap.PAGESIZE, 0) == 0  # PROT_NONE
    try:
        copier = StackCopy(os.getpid(), top)
        sp = low + 4096
        whole = copier.copy(sp)
        assert whole[1] == SIZE - mmap.PAGESIZE - 4096 + 128  # up to the page it cannot read
        readable, unreadable = top - mmap.PAGESIZE - 64, top - 64
        copier.plan([(readable, readable + 8, 2), (unreadable, unreadable + 8, 3)])
        assert copier.copy(sp)[3] is True
        assert copier.check([(readable, readable + 8, 2)]) is None
        assert copier.check([(readable, readable + 8, 2), (unreadable, unreadable + 8, 3)]) == (
            3,
            unreadable,
        )
    finally:
        protection = mmap.PROT_READ | mmap.PROT_WRITE
        assert libc.mprotect(top - mmap.PAGESIZE, mmap.PAGESIZE, protection) == 0
