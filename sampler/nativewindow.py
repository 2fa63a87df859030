"""The C stack a stopped `--native` sample copies when no span copy holds it: all of it, or
only what the unwinder will read there.

Before R 4.4 each R call takes 6-20 KB of C stack (a loop 37 frames deep: 470 KB on R 4.2),
yet the unwinder reads about 80 bytes of each native frame: the return address and saved
registers just below its CFA (12 KB of those 470). Copying the whole stack while R is
stopped costs 30-100 us; copying what the unwinder reads costs a tenth of the bytes, in a
few dozen pieces. So, once a whole copy was unwound (`plan`), the next stops copy, in one
`process_vm_readv`: the stack from the stack pointer for INNER bytes (the innermost frames,
which change from sample to sample), and beyond it the ranges the last RECENT unwindings
read (`NativeUnwinder.reads`: a loop's stacks take turns), merged where less than MERGE
bytes apart. Each range lands at its
own place in a buffer that stands for the top CAP bytes of the stack, so that the unwinder
walks it as one copy.

Why this is sound: the ranges are only a guess of where the unwinder will read; the bytes
between them are stale (an earlier stop's) and never trusted. After unwinding, `check`
finds the first read that this stop did not copy: the stack is cut there (the frames found
before it stand, marked incomplete) and the next stop copies the whole stack again. Every
byte a frame was found from is R's at this stop, so a sparse copy yields the stack a whole
copy of the same stop would, or a prefix of it that ends in `[unwinding stopped]`; nothing
is reused from an earlier sample. While R runs the same code the frames keep their places,
so the guess holds; a stack whose outer part moved (R returned past the innermost INNER
bytes and called elsewhere) costs one cut sample and one whole copy.
"""

from __future__ import annotations

import bisect
import ctypes
import struct

from sampler.libc import IoVec
from sampler.libc import process_vm_readv
from sampler.procmem import Address

#: The most C stack copied from the stack pointer (whole copies), and the top of the stack a
#: sparse copy's buffer stands for: the span copy's cap (`sampler.spans`); 20 R calls take
#: 120-400 KB before R 4.4 (a loop 37 frames deep: 470 KB on R 4.2), under 4 KB from 4.4.
CAP = 1280 << 10
#: The stack copied whole from the stack pointer by a sparse copy: the frames that change
#: from sample to sample (an R call of byte code takes 11 KB of C stack on R 4.2).
INNER = 32 << 10
#: A stack shorter than this is copied whole: the guess would save little.
SPARSE_FROM = 2 * INNER
#: Ranges closer than this are read as one: a piece of a read costs about as much as 3 KB
#: copied.
MERGE = 2 << 10
#: The unwindings whose reads a sparse copy copies again.
RECENT = 8
#: x86-64's red zone: a leaf function may keep data this far below the stack pointer.
_RED_ZONE = 128
#: The kernel's limit on pieces per read (UIO_MAXIOV); one is the inner window's.
_MAX_PIECES = 1024


class StackCopy:
    """Copies one thread's C stack for unwinding, whole or sparse (see the module)."""

    def __init__(self, pid: int, top: Address) -> None:
        """Copy the stack of process `pid`'s thread whose stack ends at `top`."""
        self.pid = pid
        self.top = top
        #: The address the buffer's first byte stands for in a sparse copy.
        self.base = top - CAP
        self.buffer = ctypes.create_string_buffer(CAP)
        self._address = ctypes.addressof(self.buffer)
        # Slot 0 is free for the inner window before the first range; range i is slot i + 1.
        self._local = (IoVec * _MAX_PIECES)()
        self._remote = (IoVec * _MAX_PIECES)()
        self._starts: list[Address] = []
        self._ends: list[Address] = []
        #: The pieces each of the last unwindings read (merged), each once, oldest first.
        self._recent: dict[tuple[tuple[Address, Address], ...], None] = {}
        #: What the last copy holds: the inner window, and the ranges from `_first` on
        #: (those before `_last`, the ones read whole); (0, 0) after a whole copy.
        self._window = (0, 0)
        self._first = self._last = 0
        #: Bytes the last copy read.
        self.copied = 0

    def copy(self, sp: Address) -> tuple[int, int, Address, bool]:
        """Copy the stack, the thread stopped at stack pointer `sp`: (where the copy is in
        `buffer`, its length, the address it starts at, whether it is sparse)."""
        low = sp - _RED_ZONE
        starts = self._starts
        if starts and self.base <= low and self.top - low >= SPARSE_FROM:
            high = low + INNER
            first = bisect.bisect_left(starts, high)
            if first and self._ends[first - 1] > high:
                high = self._ends[first - 1]  # a range across the window's end: take it all
            if first < len(starts):
                return self._sparse(low, high, first)
        self._window = (0, 0)
        length = max(0, min(CAP, self.top - low))
        local, remote = self._local[0], self._remote[0]
        local.base, local.len = self._address, length
        remote.base, remote.len = low, length
        got = process_vm_readv(self.pid, self._local, 1, self._remote, 1, 0)
        self.copied = max(got, 0)
        return 0, self.copied, low, False

    def _sparse(self, low: Address, high: Address, first: int) -> tuple[int, int, Address, bool]:
        """Copy the window [low, high) and the ranges from `first` on, in one read."""
        local, remote = self._local[first], self._remote[first]  # the slot before `first`
        kept = (local.base, remote.base, local.len)
        local.base = self._address + low - self.base
        remote.base, local.len = low, high - low
        remote.len = local.len
        count = len(self._starts) - first + 1
        got = process_vm_readv(self.pid, ctypes.byref(local), count, ctypes.byref(remote), count, 0)
        local.base, remote.base, local.len = kept
        remote.len = local.len
        self.copied = got = max(got, 0)
        # What was read: the kernel stops at the first piece it cannot read.
        starts, ends = self._starts, self._ends
        self._window, self._first = (low, low + min(got, high - low)), first
        got -= high - low
        last = first
        while last < len(starts) and got >= ends[last] - starts[last]:
            got -= ends[last] - starts[last]
            last += 1
        self._last = last
        return low - self.base, ends[-1] - low, low, True

    def check(self, reads: list[tuple[Address, Address, int]]) -> tuple[int, Address] | None:
        """After unwinding a sparse copy that made `reads` (`NativeUnwinder.reads`): the
        frames that stand and the address of the first read this copy did not hold (then
        the next copy is whole), None when it held them all."""
        low, high = self._window
        starts, ends = self._starts, self._ends
        first, last = self._first, self._last
        for start, end, frames in reads:
            if low <= start and end <= high:
                continue
            at = bisect.bisect_right(starts, start, first, last) - 1
            if at < first or end > ends[at]:
                self.forget()
                return frames, start
        return None

    def plan(self, reads: list[tuple[Address, Address, int]]) -> None:
        """Guess the next sparse copy's ranges from the reads of the last unwinding and of
        the RECENT - 1 before it."""
        recent = self._recent
        read = tuple(_merged([(start, end) for start, end, _ in reads]))
        seen = read in recent
        if seen:
            del recent[read]  # (and in again, as the most recent)
        recent[read] = None
        if seen and self._starts:
            return  # a stack's reads seen lately (a loop's): the guess stays as it is
        while len(recent) > RECENT:
            del recent[next(iter(recent))]
        pieces = _merged([piece for read in recent for piece in read])
        pieces = [piece for piece in pieces if self.base <= piece[0] and piece[1] <= self.top]
        if not pieces or len(pieces) >= _MAX_PIECES:
            self.forget()
            return
        self._starts = [start for start, _ in pieces]
        self._ends = [end for _, end in pieces]
        count = len(pieces)
        remote = [field for start, end in pieces for field in (start, end - start)]
        local = list(remote)
        local[0::2] = [self._address + start - self.base for start, _ in pieces]
        slot = ctypes.sizeof(IoVec)  # (slot 0 is the window's)
        struct.pack_into(f"<{2 * count}Q", self._remote, slot, *remote)
        struct.pack_into(f"<{2 * count}Q", self._local, slot, *local)

    def forget(self) -> None:
        """Copy the whole stack next time (what earlier unwindings read stays known)."""
        self._starts, self._ends = [], []


def _merged(ranges: list[tuple[Address, Address]]) -> list[tuple[Address, Address]]:
    """`ranges` as (start, end) pieces in address order, those less than MERGE apart as one."""
    pieces: list[tuple[Address, Address]] = []
    last_start = last_end = -MERGE
    for start, end in sorted(ranges):
        if start - last_end < MERGE:
            last_end = max(last_end, end)
            pieces[-1] = (last_start, last_end)
        else:
            last_start, last_end = start, end
            pieces.append((start, end))
    return pieces
