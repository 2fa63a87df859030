"""What the native unwinder returns: frames of compiled code, innermost first."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple


class NativeFrame(NamedTuple):
    """One frame of compiled code (a named tuple: a deep stack makes thousands a second).

    `pc` is the target's address: the exact instruction for the innermost frame (and for a
    frame a signal interrupted), else the return address. `cfa` is the frame's canonical
    frame address (the caller's stack pointer before the call; 0 when no rule finds it, on
    the last frame of an incomplete stack). `module` is the mapped
    file's path as the target sees it ("" when the pc is in no mapped file). `symbol` is
    the function's name when a symbol table names it; `offset` is then pc minus the
    function's start. Without a symbol, `offset` is an address in the file's own ELF address
    space (what objdump, addr2line and gdb use): the start of the function that holds pc,
    as its CFI's FDE gives it (its initial location), so that every pc of one unnamed
    function has one label; pc's own address where no FDE covers pc.
    """

    pc: int
    cfa: int
    module: str
    symbol: str | None
    offset: int

    def label(self) -> str:
        """The function's name, else "libR.so+0x1d54e0" (`offset`; never a bare address)."""
        if self.symbol is not None:
            return self.symbol
        return f"{os.path.basename(self.module) or '[unknown]'}+{self.offset:#x}"


@dataclass(frozen=True)
class NativeStack:
    """The native frames of one sample, innermost first.

    `complete` is True when unwinding reached the thread's outermost frame (or main);
    otherwise `reason` says where and why it gave up (e.g. "stack copy ends at ...").
    """

    frames: tuple[NativeFrame, ...]
    complete: bool
    reason: str
