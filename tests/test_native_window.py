"""Sparse stack copies for `--native` (sampler.nativewindow) on real R, host and every lab R
(plain and container-like): in each stop a sparse copy and a whole copy of the same stack,
each unwound; the sparse copy's stack must be the whole copy's, or a prefix of it cut where
it read bytes it lacked. Ground truth for whole copies is tests/test_native_live.py's (gdb).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from conftest import REnv
from conftest import RLauncher

from sampler.native import NativeStack
from sampler.nativecapture import NativeCopy
from sampler.nativewindow import StackCopy
from sampler.ptrace import Tracer
from sampler.target import attach

pytestmark = pytest.mark.live

SAMPLES = 120


@dataclass
class Pair:
    """One stop: the stack from the sampler's copy (sparse when planned), and from a whole
    copy of the same stop."""

    sampled: NativeStack
    whole: NativeStack
    sparse: bool

    @property
    def cut(self) -> bool:
        """Whether the sparse copy lacked bytes the unwinding read (`StackCopy.check`)."""
        return self.sparse and not self.sampled.complete and self.sampled != self.whole


def pairs(pid: int, count: int) -> list[Pair]:
    """`count` stops of `pid`, 10 ms apart, each copied by the sampler's `NativeFrames` (as
    a sample would be: sparse once a stack was unwound) and whole, then unwound."""
    target = attach(pid)
    target.set_native(True, evaluator=True)
    native = target.reader.native
    assert native is not None
    whole = StackCopy(pid, native.c_stack[1])
    tracer = Tracer(pid)
    found: list[Pair] = []
    try:
        for _ in range(count):
            time.sleep(0.01)
            tracer.stop()
            try:
                assert tracer.save_registers()
                sp, registers = tracer.stack_pointer(), tracer.registers()
                sampled = native.copy(tracer, False)
                assert sampled is not None
                taken = NativeCopy(registers, whole.buffer, *whole.copy(sp))
            finally:
                tracer.resume()
            stack = native.unwound(sampled)
            full = native.unwinder.unwind(registers, taken.stack(), taken.address)
            found.append(Pair(stack, full, sampled.sparse))
    finally:
        tracer.detach()
        native.close()
    return found


def test_the_unwinder_notes_every_byte_it_reads(r_launcher: RLauncher, r_env: REnv) -> None:
    """A whole copy with every byte the unwinder did not note as read scrambled unwinds
    to the same stack: `NativeUnwinder.reads`, which sparse copies are checked against,
    misses nothing."""
    run = r_launcher.start("native_window.R", "inner", env=r_env)
    target = attach(run.pid)
    target.set_native(True, evaluator=True)
    native = target.reader.native
    assert native is not None
    whole = StackCopy(run.pid, native.c_stack[1])
    tracer = Tracer(run.pid)
    try:
        for _ in range(10):
            time.sleep(0.01)
            tracer.stop()
            try:
                assert tracer.save_registers()
                registers = tracer.registers()
                taken = NativeCopy(registers, whole.buffer, *whole.copy(tracer.stack_pointer()))
            finally:
                tracer.resume()
            copied = taken.stack()
            stack = native.unwinder.unwind(registers, copied, taken.address)
            assert stack.complete, stack.reason
            scrambled = bytearray(b"\x5a" * taken.length)
            for start, end, _ in native.unwinder.reads:
                at = start - taken.address
                scrambled[at : at + end - start] = copied[at : at + end - start]
            again = native.unwinder.unwind(registers, bytes(scrambled), taken.address)
            assert again == stack
    finally:
        tracer.detach()
        native.close()


def check_sound(found: list[Pair]) -> None:
    """Every sampled stack is the whole copy's, or a prefix of it cut for want of bytes;
    every whole copy reaches main."""
    for pair in found:
        assert pair.whole.complete, pair.whole.reason
        if pair.cut:
            assert pair.sampled.reason.startswith("stack copy ends"), pair.sampled.reason
            assert pair.sampled.frames == pair.whole.frames[: len(pair.sampled.frames)]
        else:
            assert pair.sampled == pair.whole, (pair.sampled.reason, pair.whole.reason)


def test_sparse_copies_unwind_as_whole_ones_under_a_fixed_outer_part(
    r_launcher: RLauncher, r_env: REnv
) -> None:
    run = r_launcher.start("native_window.R", "inner", env=r_env)
    found = pairs(run.pid, SAMPLES)
    check_sound(found)
    # The inner part changed (work_a, work_b at their depths, in R or in C)...
    assert len({pair.whole.frames[:8] for pair in found}) > 5
    # ... and the outer part's reads, guessed from the sample before, held it nearly always.
    held = sum(pair.sparse and not pair.cut for pair in found)
    assert held >= 0.8 * len(found), (held, sum(pair.cut for pair in found))


def test_sparse_copies_are_cut_not_wrong_when_the_outer_part_changes(
    r_launcher: RLauncher, r_env: REnv
) -> None:
    run = r_launcher.start("native_window.R", "outer", env=r_env)
    found = pairs(run.pid, SAMPLES)
    check_sound(found)
    # The outer part changed between samples (depth, and lapply's frames or not)...
    depths = [len(pair.whole.frames) for pair in found]
    assert sum(a != b for a, b in zip(depths, depths[1:])) >= 0.3 * len(found)
    # ... and sparse copies were taken all the same (held or cut, never wrong: above).
    assert sum(pair.sparse for pair in found) >= 0.3 * len(found)
