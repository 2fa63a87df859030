"""Native (C, C++, Fortran) frames of an R process, unwound from copies (x86-64 only).

`NativeUnwinder(pid).unwind(regs, stack, stack_address)` turns the registers
(PTRACE_GETREGS) and a copy of the stack taken while the thread was stopped into a
`NativeStack` of `NativeFrame`s, innermost first, after the thread has run on.
"""

from __future__ import annotations

from sampler.native.frames import NativeFrame
from sampler.native.frames import NativeStack
from sampler.native.unwind import NativeUnwinder
from sampler.native.unwind import check_platform

__all__ = ["NativeFrame", "NativeStack", "NativeUnwinder", "check_platform"]
