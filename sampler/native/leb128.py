"""DWARF's variable-length integers (LEB128), as call frame information and expressions
hold them."""

from __future__ import annotations


def read_uleb(data: bytes, at: int) -> tuple[int, int]:
    """The unsigned LEB128 number at `at` of `data`: (value, next position)."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def read_sleb(data: bytes, at: int) -> tuple[int, int]:
    """The signed LEB128 number at `at` of `data`: (value, next position)."""
    value, end = read_uleb(data, at)
    bits = 7 * (end - at)
    return (value - (1 << bits) if value >> (bits - 1) & 1 else value), end
