"""`--native`: what a stopped sample copies for native frames, and the mixed stack made of it.

While R is stopped (`NativeFrames.copy`): its registers, and a bounded window of its C stack
from the stack pointer. On R >= 4.4, when the sample copied spans of R's stacks
(sampler.spans), that copy already holds the C stack from the stack pointer up to R's
outermost context on it, and is used as it is; otherwise one `process_vm_readv` copies
`window` bytes (from the red zone below the stack pointer; less where the stack ends).
After R runs on (`NativeFrames.mixed`): the copy is unwound (sampler.native) and the native
frames are placed among R's frames by the addresses of R's contexts (sampler.mixed).

A window too short for the whole stack ends the unwinding early: the stack then shows
`<Native:[unwinding stopped]>` where it ends, R's outer frames after it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from sampler.chain import RawSample
from sampler.libc import IoVec
from sampler.libc import process_vm_readv
from sampler.mixed import UNWIND_STOPPED
from sampler.mixed import interleave
from sampler.mixed import native_name
from sampler.mixed import shown
from sampler.model import Stack
from sampler.native import NativeStack
from sampler.native import NativeUnwinder
from sampler.procmem import Address
from sampler.ptrace import Tracer
from sampler.spans import SpanPlan
from sampler.symbols import read_maps

#: The C stack copied per sample where no span copy holds it. 20 R calls take 120-400 KB
#: of C stack before R 4.4; under 4 KB from 4.4 (closure calls from byte code stay off it).
WINDOW = 256 << 10
#: x86-64's red zone: a leaf function may keep data this far below the stack pointer.
_RED_ZONE = 128


@dataclass
class NativeCopy:
    """One stop's copies: the registers, and where the stack copy is (in `buffer`)."""

    registers: bytes
    buffer: ctypes.Array[ctypes.c_char]
    offset: int
    length: int
    address: Address

    def stack(self) -> bytes:
        """The stack copy's bytes (take them before the buffer's next copy)."""
        return ctypes.string_at(ctypes.addressof(self.buffer) + self.offset, self.length)


class NativeFrames:
    """Native frames for one target: copies while stopped, unwinds and interleaves after.

    Call from the sampler's thread (the unwinder is not thread-safe).
    """

    def __init__(
        self,
        pid: int,
        spans: SpanPlan | None,
        *,
        evaluator: bool = False,
        window: int = WINDOW,
    ) -> None:
        """Unwind process `pid`'s main thread (raise UsageError off x86-64); `spans`: its
        span copier, whose copies hold the C stack (None: R does not say where it is).
        Stacks keep R's evaluator frames (`sampler.mixed.shown`) only with `evaluator`."""
        self.unwinder = NativeUnwinder(pid)
        self.evaluator = evaluator
        self.pid = pid
        self.spans = spans
        self.window = window
        if spans is not None:
            self.c_stack = (spans.bounds.stack.start, spans.bounds.stack_top)
        else:
            stack = next(m for m in read_maps(pid) if m.path == "[stack]")
            self.c_stack = (stack.start, stack.end)
        self._buffer = ctypes.create_string_buffer(window)
        self._local = IoVec(ctypes.addressof(self._buffer), 0)
        self._remote = IoVec(0, 0)
        #: Samples whose stack copy ended before the unwinding did.
        self.truncated = 0
        #: The native stack of the last sample (its frames' addresses, why it ended).
        self.last: NativeStack | None = None

    def close(self) -> None:
        """Close the files the unwinder opened."""
        self.unwinder.close()

    def copy(self, tracer: Tracer, spans_copied: bool) -> NativeCopy | None:
        """Copy the registers and the stack window; call while stopped, after the sample's
        own copy (with `spans_copied`: a span copy, whose registers are saved already).
        None when the registers cannot be read."""
        if not spans_copied and not tracer.save_registers():
            return None
        sp = tracer.stack_pointer()
        spans = self.spans
        if spans_copied and spans is not None:
            held = spans.span_from(sp & ~7)
            if held is not None:
                offset, length = held
                return NativeCopy(tracer.registers(), spans.buffer, offset, length, sp & ~7)
        low = sp - _RED_ZONE
        length = max(0, min(self.window, self.c_stack[1] - low))
        self._local.len = self._remote.len = length
        self._remote.base = low
        got = process_vm_readv(
            self.pid, ctypes.byref(self._local), 1, ctypes.byref(self._remote), 1, 0
        )
        return NativeCopy(tracer.registers(), self._buffer, 0, max(got, 0), low)

    def mixed(self, stack: Stack, raw: RawSample, copy: NativeCopy) -> Stack:
        """`stack` (R's frames, named from `raw`) with the native frames of `copy` in call
        order. Call after the target resumed, before the next sample's copy."""
        native = self.last = self.unwinder.unwind(copy.registers, copy.stack(), copy.address)
        if not native.complete and native.reason.startswith("stack copy ends"):
            self.truncated += 1
        names = [native_name(frame.label()) for frame in native.frames]
        r_names, sites = stack.names, stack.sites
        # One context per R frame (0: none, e.g. a builtin called from byte code). A frame
        # the stack has beyond `raw.frames` is such a builtin, innermost.
        contexts = [frame.context for frame in raw.frames]
        missing = len(r_names) - len(contexts)
        contexts = [0] * missing + contexts if missing >= 0 else [0] * len(r_names)
        # CFAs grow outward; the last frame of a cut stack may have none (0): its slice
        # then ends where its callee's does.
        cfas: list[Address] = []
        for frame in native.frames:
            cfas.append(max(frame.cfa, cfas[-1] if cfas else 0))
        slots = interleave(
            contexts,
            cfas,
            names,
            self.c_stack,
            complete=native.complete,
        )
        all_names = [
            (names[index] if index >= 0 else UNWIND_STOPPED) if is_native else r_names[index]
            for is_native, index in slots
        ]
        keep = shown(all_names, native=True, evaluator=self.evaluator)
        mixed_names = [all_names[at] for at in keep]
        mixed_sites = [None if slots[at][0] else stack.site(slots[at][1]) for at in keep]
        if sites:
            mixed_sites.append(sites[-1])
        return Stack(
            tuple(mixed_names), tuple(mixed_sites) if sites else (), gc=stack.gc, idle=stack.idle
        )
