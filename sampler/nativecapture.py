"""`--native`: what a stopped sample copies for native frames, and the mixed stack made of it.

While R is stopped (`NativeFrames.copy`): its registers, and its C stack from the stack
pointer. When the sample copied spans of R's stacks (sampler.spans), that copy already
holds the C stack from the stack pointer up to R's outermost context on it, and is used as
it is; otherwise one `process_vm_readv` copies the stack, whole (up to
`sampler.nativewindow.CAP`) or, once a whole copy was unwound, only what the unwinder will
read there (`sampler.nativewindow`: checked after unwinding). After R runs on
(`NativeFrames.mixed`): the copy is unwound (sampler.native) and the native frames are
placed among R's frames by the addresses of R's contexts (sampler.mixed).

A copy too short for the whole stack ends the unwinding early: the stack then shows
`<Native:[unwinding stopped]>` where it ends, R's outer frames after it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from itertools import accumulate

from sampler.chain import RawSample
from sampler.mixed import UNWIND_STOPPED
from sampler.mixed import interleave
from sampler.mixed import native_name
from sampler.mixed import shown
from sampler.model import Stack
from sampler.native import NativeStack
from sampler.native import NativeUnwinder
from sampler.nativewindow import StackCopy
from sampler.procmem import Address
from sampler.ptrace import Tracer
from sampler.spans import SpanPlan
from sampler.symbols import read_maps

#: The most frame names `NativeFrames` remembers (cleared when full).
_MAX_NAMES = 1 << 16


@dataclass
class NativeCopy:
    """One stop's copies: the registers, and where the stack copy is (in `buffer`)."""

    registers: bytes
    buffer: ctypes.Array[ctypes.c_char]
    offset: int
    length: int
    address: Address
    #: Whether the copy holds only what the unwinder is expected to read (`StackCopy`).
    sparse: bool = False

    def stack(self) -> memoryview:
        """The stack copy's bytes, in the buffer itself (unwind them before the buffer's
        next copy): copying out a span copy's hundreds of KB cost 60 us a sample."""
        return memoryview(self.buffer).cast("B")[self.offset : self.offset + self.length]


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
    ) -> None:
        """Unwind process `pid`'s main thread (raise UsageError off x86-64); `spans`: its
        span copier, whose copies hold the C stack (None: R does not say where it is).
        Stacks keep R's evaluator frames (`sampler.mixed.shown`) only with `evaluator`."""
        self.unwinder = NativeUnwinder(pid)
        self.evaluator = evaluator
        self.pid = pid
        self.spans = spans
        if spans is not None:
            self.c_stack = (spans.bounds.stack.start, spans.bounds.stack_top)
        else:
            stack = next(m for m in read_maps(pid) if m.path == "[stack]")
            self.c_stack = (stack.start, stack.end)
        self.stack_copy = StackCopy(pid, self.c_stack[1])
        #: Samples unwound; those copied sparse whose copy held every read (`StackCopy`);
        #: those whose stack copy ended before the unwinding did; the stack bytes copied
        #: while R was stopped (0 for a span copy that held the C stack).
        self.samples = 0
        self.sparse = 0
        self.truncated = 0
        self.copied = 0
        #: The native stack of the last sample (its frames' addresses, why it ended).
        self.last: NativeStack | None = None
        #: Frame names by label (`native_name`): a session's labels recur in every sample.
        self._names: dict[str, str] = {}

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
        copier = self.stack_copy
        offset, length, address, sparse = copier.copy(sp)
        self.copied += copier.copied
        return NativeCopy(tracer.registers(), copier.buffer, offset, length, address, sparse)

    def unwound(self, copy: NativeCopy) -> NativeStack:
        """The native stack of `copy`: cut where it read what a sparse copy lacked (then
        the next copy is whole); the next sparse copy is guided by its reads."""
        unwinder, copier = self.unwinder, self.stack_copy
        native = unwinder.unwind(copy.registers, copy.stack(), copy.address)
        self.samples += 1
        if copy.sparse:
            missed = copier.check(unwinder.reads)
            if missed is not None:
                frames, address = missed
                return NativeStack(
                    native.frames[:frames], False, f"stack copy ends at {address:#x}"
                )
            self.sparse += 1
        if copy.buffer is copier.buffer:
            copier.plan(unwinder.reads)
        else:
            # A span copy held the stack (stacks that vary): a sparse copy's guess would be
            # made from stacks unlike the next one, at a cost for each; the next copy that
            # is not a span copy is whole.
            copier.forget()
        return native

    def mixed(self, stack: Stack, raw: RawSample, copy: NativeCopy) -> Stack:
        """`stack` (R's frames, named from `raw`) with the native frames of `copy` in call
        order. Call after the target resumed, before the next sample's copy."""
        native = self.last = self.unwound(copy)
        if not native.complete and native.reason.startswith("stack copy ends"):
            self.truncated += 1
        frames = native.frames
        known = self._names
        names = [
            known.get(label) or self._name(label) for label in self.unwinder.labels[: len(frames)]
        ]
        r_names, sites = stack.names, stack.sites
        # One context per R frame (0: none, e.g. a builtin called from byte code). A frame
        # the stack has beyond `raw.frames` is such a builtin, innermost.
        contexts = [frame.context for frame in raw.frames]
        missing = len(r_names) - len(contexts)
        contexts = [0] * missing + contexts if missing >= 0 else [0] * len(r_names)
        # CFAs grow outward; the last frame of a cut stack may have none (0): its slice
        # then ends where its callee's does.
        cfas: list[Address] = list(accumulate([frame.cfa for frame in frames], max))
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
        mixed_names = tuple([all_names[at] for at in keep])
        if not sites:
            return Stack(mixed_names, (), gc=stack.gc, idle=stack.idle)
        mixed_sites = [None if slots[at][0] else stack.site(slots[at][1]) for at in keep]
        mixed_sites.append(sites[-1])
        return Stack(mixed_names, tuple(mixed_sites), gc=stack.gc, idle=stack.idle)

    def _name(self, label: str) -> str:
        """The frame name of `label` (`native_name`), remembered in `_names`."""
        if len(self._names) >= _MAX_NAMES:
            self._names.clear()
        name = self._names[label] = native_name(label)
        return name
