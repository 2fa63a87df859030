"""x86-64 registers: PTRACE_GETREGS' `struct user_regs_struct` in DWARF's numbering.

The unwinder works with a sequence indexed by DWARF register number (0 rax ... 15 r15, 16
the return address / rip), None where a register's value is not known in a caller's frame.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Optional

#: `struct user_regs_struct` on x86-64: 27 unsigned longs (r15 first, rip #16, rsp #19).
USER_REGS = struct.Struct("<27Q")
#: For each DWARF register number, its index in `struct user_regs_struct`.
_USER_INDEX = (10, 12, 11, 5, 13, 14, 4, 19, 9, 8, 7, 6, 3, 2, 1, 0, 16)
#: DWARF numbers of the stack pointer, the frame pointer and the return address.
RSP, RBP, RIP = 7, 6, 16
#: The registers a callee keeps for its caller: rbx, rbp, r12-r15.
CALLEE_SAVED = (3, 6, 12, 13, 14, 15)
DWARF_NAMES = (
    "rax",
    "rdx",
    "rcx",
    "rbx",
    "rsi",
    "rdi",
    "rbp",
    "rsp",
    *(f"r{n}" for n in range(8, 16)),
    "rip",
)

Registers = Sequence[Optional[int]]


def from_user_regs(raw: bytes) -> Registers:
    """DWARF-numbered registers from a `struct user_regs_struct` (PTRACE_GETREGS' bytes)."""
    values = USER_REGS.unpack_from(raw)
    return [values[index] for index in _USER_INDEX]
