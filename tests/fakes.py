"""Fakes for pure-logic tests: a process memory made of byte segments, and a builder of R
memory images (contexts, calls, symbols) that the stack reader decodes.

`FakeMemory` implements `sampler.procmem.ProcessMemory` (read, read_upto, read_many,
read_scatter, plan) with the kernel's semantics: a read fails or stops short where the
mapping ends, a scatter read stops at the first unreadable region. It can also misbehave on
purpose (`chaos`): cut reads short, fail them, or report the target gone or the permission
revoked, as a process that changes or exits mid-read does. It refuses any request larger
than `max_request`, so a decoder that trusts a length it read fails the test.
"""

from __future__ import annotations

import bisect
import ctypes
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

from sampler.errors import BadAddressError
from sampler.errors import ReadPermissionError
from sampler.errors import SampleError
from sampler.errors import TargetGoneError
from sampler.layouts import CHARSXP
from sampler.layouts import CTXT_FUNCTION
from sampler.layouts import LANGSXP
from sampler.layouts import SYMSXP
from sampler.layouts import VECTOR_DATA
from sampler.layouts import VECTOR_LENGTH
from sampler.layouts import ContextLayout
from sampler.symbols import RBinary

Address = int
_U64 = struct.Struct("<Q")


class RequestTooLarge(AssertionError):
    """A decoder asked for more memory than any sane sample needs (a trusted length)."""


class FakeMemory:
    """A `ProcessMemory` over mapped segments {start address: bytes}."""

    def __init__(
        self,
        segments: dict[Address, bytes],
        *,
        chaos: random.Random | None = None,
        chaos_rate: float = 0.0,
        max_request: int = 1 << 20,
    ) -> None:
        """`chaos` (with `chaos_rate`, 0..1) makes reads misbehave at random."""
        self.starts = sorted(segments)
        self.segments = segments
        self.chaos = chaos
        self.chaos_rate = chaos_rate
        self.max_request = max_request
        self.calls = 0
        self.bytes_requested = 0

    # -- the kernel's view ---------------------------------------------------------------

    def _available(self, address: Address, size: int) -> bytes:
        """The bytes at `address`, up to `size`, as far as one mapping goes (b"": none)."""
        if size < 0:
            raise RequestTooLarge(f"negative size {size}")
        if size > self.max_request:
            raise RequestTooLarge(f"a read of {size} bytes")
        self.bytes_requested += size
        i = bisect.bisect_right(self.starts, address) - 1
        if i < 0:
            return b""
        start = self.starts[i]
        data = self.segments[start]
        offset = address - start
        if offset >= len(data):
            return b""
        return data[offset : offset + size]

    def _misbehave(self, data: bytes) -> bytes:
        """Maybe cut, fail or refuse a read (a target changing or exiting mid-read)."""
        chaos = self.chaos
        if chaos is None or chaos.random() >= self.chaos_rate:
            return data
        what = chaos.randrange(10)
        if what == 0:
            raise TargetGoneError("fake: the target exited")
        if what == 1:
            raise ReadPermissionError("fake: permission revoked")
        if what < 5:
            return b""
        return data[: chaos.randrange(len(data) + 1)]

    # -- ProcessMemory ----------------------------------------------------------------------

    def read_upto(self, address: Address, size: int) -> bytes:
        """Up to `size` bytes at `address`; raise BadAddressError when none."""
        self.calls += 1
        data = self._misbehave(self._available(address, size))
        if not data:
            raise BadAddressError(f"fake: cannot read {address:#x}")
        return data

    def read(self, address: Address, size: int) -> bytes:
        """Exactly `size` bytes at `address`."""
        data = self.read_upto(address, size)
        if len(data) != size:
            raise BadAddressError(f"fake: short read at {address:#x}")
        return data

    def read_many(self, regions: Sequence[tuple[Address, int]]) -> list[bytes | None]:
        """Each region's bytes, or None where unreadable."""
        results: list[bytes | None] = []
        for address, size in regions:
            try:
                results.append(self.read(address, size))
            except BadAddressError:
                results.append(None)
        return results

    def read_scatter(self, regions: Sequence[tuple[Address, int]]) -> tuple[bytes, list[int]]:
        """All regions in one go, stopping at the first unreadable one."""
        self.calls += 1
        blob = bytearray()
        offsets: list[int] = []
        stopped = False
        for address, size in regions:
            if not stopped:
                data = self._misbehave(self._available(address, size))
                if len(data) == size:
                    offsets.append(len(blob))
                    blob += data
                    continue
                stopped = True
            offsets.append(-1)
        return bytes(blob), offsets

    def plan(
        self,
        regions: Sequence[tuple[Address, int]],
        speculative: Sequence[tuple[Address, int]] = (),
        *,
        leading: Sequence[tuple[Address, int]] = (),
        trailing: Sequence[tuple[Address, int]] = (),
    ) -> FakePlan:
        """A `ScatterPlan` reading leading, regions, trailing, speculative, in one go."""
        return FakePlan(self, [*leading], [*regions], [*trailing], [*speculative])


class FakePlan:
    """`ScatterPlan` for `FakeMemory`: regions laid out one after another in `buffer`."""

    def __init__(
        self,
        memory: FakeMemory,
        leading: list[tuple[Address, int]],
        regions: list[tuple[Address, int]],
        trailing: list[tuple[Address, int]],
        speculative: list[tuple[Address, int]],
    ) -> None:
        """Lay out each distinct region once, leading ones first, then the others in address
        order (as LivePlan does); trailing ones again; guesses last."""
        self.memory = memory
        self.offsets: dict[Address, int] = {}
        self.regions: list[tuple[Address, int]] = []
        self.trailing_offsets: list[int] = []
        offset = 0
        for address, size in [*leading, *sorted(regions)]:
            if address and address not in self.offsets:
                self.offsets[address] = offset
                self.regions.append((address, size))
                offset += size
        self._located = len(self.regions)
        for address, size in trailing:
            self.trailing_offsets.append(offset)
            self.regions.append((address, size))
            offset += size
        for address, size in speculative:
            if address and address not in self.offsets:
                self.offsets[address] = offset
                self.regions.append((address, size))
                offset += size
        self.buffer = ctypes.create_string_buffer(max(offset, 1))
        self.size = offset

    def locate(self, address: Address, size: int) -> int | None:
        """Where `size` bytes at `address` lie in `buffer`, if one region covers them."""
        for start, length in (
            self.regions[: self._located]
            + self.regions[self._located + len(self.trailing_offsets) :]
        ):
            if start <= address and address + size <= start + length:
                return self.offsets[start] + address - start
        return None

    def read(self) -> int:
        """Fill `buffer` region by region; stop at the first unreadable one."""
        blob, offsets = self.memory.read_scatter(self.regions)
        ctypes.memmove(self.buffer, blob, len(blob))
        valid = 0
        for (_, size), offset in zip(self.regions, offsets):
            if offset < 0:
                break
            valid = offset + size
        return valid


# ---------------------------------------------------------------------------------------------
# Building R memory images


@dataclass
class Frame:
    """One context to lay out: a function frame named `name` (None: not a function frame)."""

    name: str | None
    flag: int = CTXT_FUNCTION


@dataclass
class Image:
    """An R memory image: segments, the symbol table, and what the stack should read."""

    segments: dict[Address, bytes]
    symbols: dict[str, Address]
    expected: tuple[str, ...]
    heap: Address = 0
    heap_size: int = 0
    context_addresses: list[Address] = field(default_factory=list)

    def binary(self) -> RBinary:
        """An `RBinary` whose symbols point into the image."""
        return RBinary("/fake/libR.so", "/fake/libR.so", 0, dict(self.symbols), "EM_X86_64", {})


GLOBALS = 0x10_0000  # .bss: R_GlobalContext, R_NilValue, operator symbols
STACK = 0x7F00_0000_0000  # the C stack, where contexts live
HEAP = 0x5500_0000_0000  # SEXPs


def header(kind: int) -> bytes:
    """An sxpinfo word of SEXP type `kind` (other bits zero)."""
    return _U64.pack(kind)


def cell(kind: int, car: Address = 0, cdr: Address = 0, tag: Address = 0) -> bytes:
    """A CELL_SIZE node: sxpinfo, attrib, gc links, CAR, CDR, TAG."""
    return header(kind) + bytes(24) + _U64.pack(car) + _U64.pack(cdr) + _U64.pack(tag)


def charsxp(text: str) -> bytes:
    """A CHARSXP holding `text`."""
    data = text.encode()
    head = header(CHARSXP) + bytes(VECTOR_LENGTH - 8) + _U64.pack(len(data))
    head += bytes(VECTOR_DATA - len(head))
    return head + data + b"\0"


def build_image(frames: list[Frame], layout: ContextLayout, stride: int = 0) -> Image:
    """Contexts for `frames` (innermost first) on a fake C stack, with calls and symbols."""
    heap = bytearray()

    def alloc(data: bytes) -> Address:
        address = HEAP + len(heap)
        heap.extend(data)
        heap.extend(bytes(-len(heap) % 16))
        return address

    nil = alloc(cell(0))
    symbols_by_name: dict[str, Address] = {}
    calls: list[Address] = []
    for frame in frames:
        if frame.name is None:
            calls.append(nil)
            continue
        sym = symbols_by_name.get(frame.name)
        if sym is None:
            printname = alloc(charsxp(frame.name))
            sym = alloc(cell(SYMSXP, printname))
            symbols_by_name[frame.name] = sym
        calls.append(alloc(cell(LANGSXP, sym, nil)))
    step = max(stride, layout.size)
    stack = bytearray(step * len(frames))
    addresses = [STACK + i * step for i in range(len(frames))]
    for i, (frame, call) in enumerate(zip(frames, calls)):
        base = i * step
        nxt = addresses[i + 1] if i + 1 < len(frames) else 0
        struct.pack_into("<Q", stack, base, nxt)
        struct.pack_into("<i", stack, base + layout.callflag, frame.flag)
        struct.pack_into("<Q", stack, base + layout.call, call)
    globals_ = bytearray(64)
    struct.pack_into("<Q", globals_, 0, addresses[0] if frames else 0)
    struct.pack_into("<Q", globals_, 8, nil)
    expected = tuple(f.name for f in frames if f.name is not None)
    return Image(
        segments={GLOBALS: bytes(globals_), STACK: bytes(stack), HEAP: bytes(heap)},
        symbols={"R_GlobalContext": GLOBALS, "R_NilValue": GLOBALS + 8},
        expected=expected,
        heap=HEAP,
        heap_size=len(heap),
        context_addresses=addresses,
    )


def take_sample(reader: object) -> object:
    """One sample the way the sampler thread takes it (`StoppedCapture.sample`): the
    snapshot, checked while "stopped" and completed by decoding then if it lacks anything,
    else decoded after "resuming"; a full capture only if the two disagree."""
    from sampler.rstack import StackReader

    assert isinstance(reader, StackReader)
    got = reader.snapshot()
    raw = None
    if not reader.snapshot_complete(got):
        raw = reader.decode_stopped(got)
    if raw is None:
        raw = reader.decode_snapshot(got)
    if raw is None:
        raw = reader.capture()
    return reader.finish(raw)


def outcome(reader: object) -> object:
    """One sample (`take_sample`) or the SampleError it ended in; anything else escapes
    (and fails the test). A sample is a `Stack` of string names."""
    from sampler.model import Stack

    try:
        stack = take_sample(reader)
    except SampleError as err:
        return err
    assert isinstance(stack, Stack)
    assert all(isinstance(n, str) for n in stack.names)
    return stack


__all__ = [
    "FakeMemory",
    "FakePlan",
    "Frame",
    "Image",
    "RequestTooLarge",
    "SampleError",
    "build_image",
    "outcome",
    "take_sample",
]
