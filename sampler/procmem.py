"""Reading another process's memory with `process_vm_readv`, several regions per call.

`ProcessMemory` is the interface the stack reader uses; `LiveMemory` implements it for a
real process. Failures raise the per-sample errors of `sampler.errors`.
"""

from __future__ import annotations

import bisect
import ctypes
import errno
import os
from array import array
from collections import OrderedDict
from collections.abc import Hashable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import Protocol
from typing import TypeVar

from sampler.errors import BadAddressError
from sampler.errors import ReadPermissionError
from sampler.errors import SampleError
from sampler.errors import TargetGoneError
from sampler.libc import IoVec as _IoVec
from sampler.libc import process_vm_readv as _process_vm_readv

Address = int
_K = TypeVar("_K", bound=Hashable)


class ProcessMemory(Protocol):
    """Random access to a process's memory."""

    def read(self, address: Address, size: int) -> bytes:
        """`size` bytes at `address`, or raise a SampleError."""
        ...

    def read_upto(self, address: Address, size: int) -> bytes:
        """Up to `size` bytes at `address`: fewer where the mapping ends; raise if none."""
        ...

    def read_many(self, regions: Sequence[tuple[Address, int]]) -> list[bytes | None]:
        """Each region's bytes, or None for a region that could not be read."""
        ...

    def read_scatter(self, regions: Sequence[tuple[Address, int]]) -> tuple[bytes, list[int]]:
        """All regions in one call: (blob, offset of each region in blob or -1).

        The read stops at the first unreadable region; it and all later ones get -1.
        """
        ...

    def plan(
        self,
        regions: Sequence[tuple[Address, int]],
        speculative: Sequence[tuple[Address, int]] = (),
        *,
        leading: Sequence[tuple[Address, int]] = (),
        trailing: Sequence[tuple[Address, int]] = (),
    ) -> ScatterPlan:
        """Regions to read again and again, each time in one call.

        `leading` regions come first, one after another from offset 0 of the buffer, in
        the order given; then `regions`; then `trailing` ones, read again even if read
        before; guesses (`speculative`) last.
        """
        ...


class ScatterPlan(Protocol):
    """Regions fixed in advance, read in one call into a buffer of the plan's own.

    After `read()` the bytes stay in `buffer` until the next `read()`, so they can be
    decoded later (after the target was resumed) without copying them out first.
    """

    #: Where each region's bytes start in `buffer`, by the region's address.
    offsets: dict[Address, int]
    #: The bytes of the last `read()`; valid up to the count it returned.
    buffer: ctypes.Array[ctypes.c_char]
    #: How many bytes a complete `read()` returns.
    size: int
    #: Where each trailing region's second copy is in `buffer`, in the order given.
    trailing_offsets: list[int]

    def locate(self, address: Address, size: int) -> int | None:
        """Where `size` bytes at `address` are in `buffer` if one read span covers them.

        Finds regions that were not planned but lie inside a merged span (e.g. a context
        between two planned ones); valid after a read only if the result + size <= it.
        """
        ...

    def read(self) -> int:
        """Read every region now; return how many bytes of `buffer` are valid.

        The kernel stops at the first unreadable region, so a region is valid exactly when
        `offsets[address] + size <= read()`.
        """
        ...


#: The kernel's limit on iovecs per call (UIO_MAXIOV).
_MAX_IOV = 1024
#: Regions this close are read as one: copying a few hundred bytes more costs less than
#: the kernel's work per iovec (and a gap under a page cannot hide an unmapped page).
_MERGE_GAP = 512


def _error_for(code: int, pid: int, address: Address) -> SampleError:
    if code == errno.ESRCH:
        return TargetGoneError(f"process {pid} has exited")
    if code == errno.EPERM:
        return ReadPermissionError(f"no permission to read process {pid}")
    return BadAddressError(f"cannot read {pid}:{address:#x} ({os.strerror(code)})")


class LiveMemory:
    """`ProcessMemory` over `process_vm_readv` for process `pid`.

    One scratch buffer and one pair of iovec arrays are reused for every call, so a read
    allocates only the `bytes` it returns.
    """

    def __init__(self, pid: int, scratch_size: int = 1 << 20) -> None:
        """Prepare to read process `pid`; nothing is read yet."""
        self.pid = pid
        self.calls = 0
        self._scratch = ctypes.create_string_buffer(scratch_size)
        self._scratch_addr = ctypes.addressof(self._scratch)
        self._scratch_size = scratch_size
        self._local = (_IoVec * _MAX_IOV)()
        self._remote = (_IoVec * _MAX_IOV)()

    def _readv(self, count: int) -> int:
        self.calls += 1
        got: int = _process_vm_readv(self.pid, self._local, count, self._remote, count, 0)
        if got < 0:
            code = ctypes.get_errno()
            raise _error_for(code, self.pid, self._remote[0].base or 0)
        return got

    def read_upto(self, address: Address, size: int) -> bytes:
        """Up to `size` bytes at `address`; fewer where the mapping ends."""
        size = min(size, self._scratch_size)
        self._local[0].base = self._scratch_addr
        self._local[0].len = size
        self._remote[0].base = address
        self._remote[0].len = size
        got = self._readv(1)
        if got <= 0:
            raise BadAddressError(f"cannot read {self.pid}:{address:#x}")
        return ctypes.string_at(self._scratch_addr, got)

    def read(self, address: Address, size: int) -> bytes:
        """Exactly `size` bytes at `address`."""
        data = self.read_upto(address, size)
        if len(data) != size:
            raise BadAddressError(f"short read at {self.pid}:{address:#x}")
        return data

    def read_scatter(self, regions: Sequence[tuple[Address, int]]) -> tuple[bytes, list[int]]:
        """All regions (at most 1024) in one system call; see `ProcessMemory.read_scatter`."""
        offset = 0
        count = 0
        offsets: list[int] = []
        for address, size in regions[:_MAX_IOV]:
            if offset + size > self._scratch_size:
                break
            self._local[count].base = self._scratch_addr + offset
            self._local[count].len = size
            self._remote[count].base = address
            self._remote[count].len = size
            offsets.append(offset)
            offset += size
            count += 1
        try:
            got = self._readv(count) if count else 0
        except BadAddressError:
            got = 0
        for i in range(count):
            if offsets[i] + regions[i][1] > got:
                for j in range(i, count):
                    offsets[j] = -1
                break
        offsets.extend([-1] * (len(regions) - count))
        return ctypes.string_at(self._scratch_addr, got), offsets

    def plan(
        self,
        regions: Sequence[tuple[Address, int]],
        speculative: Sequence[tuple[Address, int]] = (),
        *,
        leading: Sequence[tuple[Address, int]] = (),
        trailing: Sequence[tuple[Address, int]] = (),
    ) -> LivePlan:
        """A `ScatterPlan` of what fits 1024 iovecs and the scratch size (see `LivePlan`)."""
        return LivePlan(self, regions, speculative, leading=leading, trailing=trailing)

    def read_many(self, regions: Sequence[tuple[Address, int]]) -> list[bytes | None]:
        """Every region in as few calls as possible; None where a region is unreadable."""
        results: list[bytes | None] = []
        index = 0
        while index < len(regions):
            batch = regions[index : index + _MAX_IOV]
            offset = 0
            count = 0
            for address, size in batch:
                if offset + size > self._scratch_size:
                    break
                self._local[count].base = self._scratch_addr + offset
                self._local[count].len = size
                self._remote[count].base = address
                self._remote[count].len = size
                offset += size
                count += 1
            if count == 0:
                raise BadAddressError("read_many region larger than the scratch buffer")
            try:
                got = self._readv(count)
            except BadAddressError:
                got = 0  # the first region is bad; it is skipped below
            # The kernel stops at the first region it cannot read; everything before is good.
            offset = 0
            done = 0
            for _address, size in batch[:count]:
                if offset + size > got:
                    break
                results.append(ctypes.string_at(self._scratch_addr + offset, size))
                offset += size
                done += 1
            index += done
            if done < count:
                results.append(None)  # the region the kernel stopped at
                index += 1
        return results


class LivePlan:
    """`ScatterPlan` for `LiveMemory`: iovec arrays built once, so `read()` is one C call.

    Building the plan is the slow part (Python per region) and happens while the target
    runs; `read()` runs while it is stopped and does no per-region Python work at all.
    The kernel's cost grows with the number of remote iovecs (each one pins its pages on
    its own), so regions less than `_MERGE_GAP` apart are read as one, and the local side
    is a single iovec: the kernel fills it region after region.
    """

    def __init__(
        self,
        memory: LiveMemory,
        regions: Sequence[tuple[Address, int]],
        speculative: Sequence[tuple[Address, int]] = (),
        *,
        leading: Sequence[tuple[Address, int]] = (),
        trailing: Sequence[tuple[Address, int]] = (),
    ) -> None:
        """Plan the read `ScatterPlan` describes: leading, regions, trailing, speculative."""
        self._memory = memory
        self.offsets: dict[Address, int] = {}
        # Leading regions keep their order and are not merged: they are read before all
        # others (the stack reader's first look at R_GlobalContext). A region inside one
        # is read with it (R_Toplevel lies among the globals).
        first = [(address, address + size, [address]) for address, size in leading if address]
        known = {start for start, _, _ in first}
        # Merged spans of the known regions, in address order: [start, end, members].
        spans: list[tuple[int, int, list[Address]]] = []
        for address, size in sorted({r for r in regions if r[0] and r[0] not in known}):
            end = address + size
            within = [members for start, stop, members in first if start <= address and end <= stop]
            if within:
                within[0].append(address)  # inside a leading region: read with it
                continue
            if spans and address - spans[-1][1] <= _MERGE_GAP:
                start, last_end, members = spans[-1]
                spans[-1] = (start, max(last_end, end), members)
                members.append(address)
            else:
                spans.append((address, end, [address]))
        known.update(address for address, _ in regions)
        # Guesses go last, unmerged: a read stops at the first unmapped byte, and merging
        # a guess into a known span could cut the known part off.
        guesses = []
        for address, size in speculative:
            if address and address not in known:
                known.add(address)
                guesses.append((address, address + size, [address]))
        again: list[tuple[int, int, list[Address]]] = [
            (address, address + size, []) for address, size in trailing if address
        ]
        # Remote iovecs as a flat array of (base, len) pairs, copied into the ctypes array
        # with one memmove instead of two attribute stores per iovec.
        remote = array("Q")
        offset = 0
        self.trailing_offsets: list[int] = []
        for start, end, members in [*first, *spans, *again, *guesses][:_MAX_IOV]:
            if offset + end - start > memory._scratch_size:
                break
            for address in members:
                self.offsets.setdefault(address, offset + address - start)
            if not members:
                self.trailing_offsets.append(offset)
            remote.extend((start, end - start))
            offset += end - start
        self.count = len(remote) // 2
        self.size = offset
        # (start, end, offset in buffer) of each span read, by start, for `locate`.
        layout = []
        at = 0
        trailing_at = set(self.trailing_offsets)
        for i in range(self.count):
            start, length = remote[2 * i], remote[2 * i + 1]
            if at not in trailing_at:  # a second copy: `locate` finds the first
                layout.append((start, start + length, at))
            at += length
        self._spans = sorted(layout)
        self._starts = [span[0] for span in self._spans]
        self.buffer = ctypes.create_string_buffer(max(offset, 1))
        self._local = _IoVec(ctypes.addressof(self.buffer), offset)
        self._local_ref = ctypes.byref(self._local)
        self._remote = (_IoVec * max(self.count, 1))()
        if self.count:
            ctypes.memmove(self._remote, remote.buffer_info()[0], len(remote) * 8)

    def locate(self, address: Address, size: int) -> int | None:
        """See `ScatterPlan.locate` (a bisection over the spans)."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0:
            return None
        start, end, offset = self._spans[i]
        if address + size > end:
            return None
        return offset + address - start

    def read(self) -> int:
        """Read every region in one `process_vm_readv`; return the valid byte count."""
        count = self.count
        if not count:
            return 0
        memory = self._memory
        memory.calls += 1
        got: int = _process_vm_readv(memory.pid, self._local_ref, 1, self._remote, count, 0)
        if got < 0:
            code = ctypes.get_errno()
            if code in (errno.ESRCH, errno.EPERM):
                raise _error_for(code, memory.pid, self._remote[0].base or 0)
            return 0  # the first region is unreadable: nothing valid
        return got


def note_recent(recent: OrderedDict[_K, None], needed: Iterable[_K], limit: int) -> bool:
    """Mark `needed` as what a sample needed last in `recent` (regions a snapshot plan
    copies, oldest first) and forget the oldest beyond `limit`; whether `recent` changed
    (something new, or forgotten), so that the plan is made again."""
    changed = False
    for item in needed:
        if item not in recent:
            changed = True
        recent[item] = None
        recent.move_to_end(item)
    while len(recent) > limit:
        recent.popitem(last=False)
        changed = True
    return changed
