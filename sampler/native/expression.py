"""DWARF expressions of CFI (PLT entries, signal trampolines), run on a stack copy.

Only the operations CFI uses in practice are known: constants, register-relative values,
arithmetic, comparisons and `deref` of the stack copy. Anything else raises
ExpressionError naming the operation, so the unwinder stops with that reason.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from collections.abc import Sequence
from typing import Union

from sampler.native.leb128 import read_sleb
from sampler.native.leb128 import read_uleb

#: A copy of a stack: bytes, or a view of the buffer the copy was read into.
StackBytes = Union[bytes, bytearray, memoryview]
_U64 = struct.Struct("<Q")
_MASK = 0xFFFFFFFFFFFFFFFF


class StackEnds(Exception):
    """A read outside the stack copy; `address` is where."""

    def __init__(self, address: int) -> None:
        super().__init__(f"stack copy ends at {address:#x}")
        self.address = address


class ExpressionError(Exception):
    """A DWARF expression that cannot be run here."""


def read_word(stack: StackBytes, base: int, address: int) -> int:
    """The 8 bytes at target `address` in `stack` (a copy from `base`); raise StackEnds."""
    at = address - base
    if at < 0 or at + 8 > len(stack):
        raise StackEnds(address)
    return int(_U64.unpack_from(stack, at)[0])


_FIXED = {
    0x08: struct.Struct("<B"),
    0x09: struct.Struct("<b"),
    0x0A: struct.Struct("<H"),
    0x0B: struct.Struct("<h"),
    0x0C: struct.Struct("<I"),
    0x0D: struct.Struct("<i"),
    0x0E: struct.Struct("<Q"),
    0x0F: struct.Struct("<q"),
    0x03: struct.Struct("<Q"),  # DW_OP_addr
}
_BINARY: dict[int, Callable[[int, int], int]] = {
    0x1A: lambda a, b: a & b,
    0x1C: lambda a, b: a - b,
    0x1E: lambda a, b: a * b,
    0x21: lambda a, b: a | b,
    0x22: lambda a, b: a + b,
    0x24: lambda a, b: a << (b & 63),
    0x25: lambda a, b: a >> (b & 63),
    0x27: lambda a, b: a ^ b,
    0x29: lambda a, b: int(a == b),
    0x2A: lambda a, b: int(_signed(a) >= _signed(b)),
    0x2B: lambda a, b: int(_signed(a) > _signed(b)),
    0x2C: lambda a, b: int(_signed(a) <= _signed(b)),
    0x2D: lambda a, b: int(_signed(a) < _signed(b)),
    0x2E: lambda a, b: int(a != b),
}


def _signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


def evaluate(
    code: bytes,
    registers: Sequence[int | None],
    stack: StackBytes,
    base: int,
    initial: Sequence[int],
    reads: list[int] | None = None,
) -> int:
    """Run `code` with `initial` pushed first; return the value on top of the stack. The
    address of each word a `deref` reads is appended to `reads`, if given.

    Raise ExpressionError (an unknown operation, an unknown register, an empty stack) or
    StackEnds (a `deref` outside the stack copy).
    """
    values = list(initial)
    at = 0
    try:
        while at < len(code):
            op = code[at]
            at += 1
            if 0x30 <= op <= 0x4F:  # DW_OP_lit0..31
                values.append(op - 0x30)
            elif 0x70 <= op <= 0x8F or op == 0x92:  # DW_OP_breg0..31, DW_OP_bregx
                number = op - 0x70
                if op == 0x92:
                    number, at = read_uleb(code, at)
                offset, at = read_sleb(code, at)
                value = registers[number] if number < len(registers) else None
                if value is None:
                    raise ExpressionError(f"expression needs register {number}, unknown here")
                values.append((value + offset) & _MASK)
            elif op in _FIXED:
                form = _FIXED[op]
                values.append(form.unpack_from(code, at)[0] & _MASK)
                at += form.size
            elif op == 0x10:  # DW_OP_constu
                value, at = read_uleb(code, at)
                values.append(value & _MASK)
            elif op == 0x11:  # DW_OP_consts
                value, at = read_sleb(code, at)
                values.append(value & _MASK)
            elif op == 0x23:  # DW_OP_plus_uconst
                value, at = read_uleb(code, at)
                values.append((values.pop() + value) & _MASK)
            elif op == 0x06:  # DW_OP_deref
                address = values.pop()
                if reads is not None:
                    reads.append(address)
                values.append(read_word(stack, base, address))
            elif op == 0x12:  # DW_OP_dup
                values.append(values[-1])
            elif op == 0x13:  # DW_OP_drop
                values.pop()
            elif op == 0x16:  # DW_OP_swap
                values[-1], values[-2] = values[-2], values[-1]
            elif op in _BINARY:
                right = values.pop()
                values.append(_BINARY[op](values.pop(), right) & _MASK)
            else:
                raise ExpressionError(f"DWARF expression operation {op:#x} is not supported")
        return values[-1]
    except (IndexError, struct.error):
        raise ExpressionError("malformed DWARF expression") from None
