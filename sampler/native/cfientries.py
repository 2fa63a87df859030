"""One FDE (and its CIE) of .eh_frame or .debug_frame, parsed with `struct` (DWARF 5, 6.4).

pyelftools parses an entry through `construct`, about a millisecond an FDE: a session pays
that for every function it meets, and varied R code keeps meeting new ones. Only what the
unwinder needs is read: the CIE's factors, return-address register, pointer encoding and
signal flag, the FDE's range, and both instruction lists.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from sampler.native.leb128 import read_sleb
from sampler.native.leb128 import read_uleb

_U8, _U16, _U32, _U64 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<Q"))
_POINTERS = {
    0x00: _U64,
    0x02: _U16,
    0x03: _U32,
    0x04: _U64,
    0x0A: struct.Struct("<h"),
    0x0B: struct.Struct("<i"),
    0x0C: struct.Struct("<q"),
}
_MASK = 0xFFFFFFFFFFFFFFFF


class EntryError(Exception):
    """CFI bytes that cannot be parsed; the message says what."""


class Instruction(NamedTuple):
    """One call frame instruction: its opcode (a primary one's operand in `args`) and
    arguments (ints, and the bytes of an expression)."""

    opcode: int
    args: tuple[int | bytes, ...]


class Cie(NamedTuple):
    """What the unwinder needs of a CIE (`signal_frame`: augmentation "S")."""

    code_align: int
    data_align: int
    return_address_register: int
    pointer_encoding: int
    augmented: bool
    signal_frame: bool
    instructions: list[Instruction]


class Fde(NamedTuple):
    """An FDE: the code [start, start + size) and its instructions, after its CIE's."""

    start: int
    size: int
    cie: Cie
    instructions: list[Instruction]


def read_pointer(data: bytes, at: int, encoding: int, address: int) -> tuple[int, int]:
    """A pointer encoded as `encoding` (DW_EH_PE_*) at `at` of a section at `address`:
    (value, next position)."""
    form = _POINTERS.get(encoding & 0x0F)
    base = {0x00: 0, 0x10: address + at, 0x30: address}.get(encoding & 0x70)
    if form is None or base is None:
        raise EntryError(f"pointer encoding {encoding:#x} is not supported")
    return (base + form.unpack_from(data, at)[0]) & _MASK, at + form.size


#: How each extended opcode's arguments are written: u(leb), s(leb), b(lock), 1/2/4/8 bytes.
_ARGUMENTS = {
    0x00: "",
    0x01: "8",
    0x02: "1",
    0x03: "2",
    0x04: "4",
    0x05: "uu",
    0x06: "u",
    0x07: "u",
    0x08: "u",
    0x09: "uu",
    0x0A: "",
    0x0B: "",
    0x0C: "uu",
    0x0D: "u",
    0x0E: "u",
    0x0F: "b",
    0x10: "ub",
    0x11: "us",
    0x12: "us",
    0x13: "s",
    0x14: "uu",
    0x15: "us",
    0x16: "ub",
    0x2D: "",
    0x2E: "u",
    0x2F: "uu",
}
_FIXED = {"1": _U8, "2": _U16, "4": _U32, "8": _U64}


def instructions(data: bytes, at: int, end: int) -> list[Instruction]:
    """The call frame instructions in data[at:end]."""
    found = []
    while at < end:
        opcode = data[at]
        at += 1
        primary = opcode & 0xC0
        if primary == 0x80:  # DW_CFA_offset: register, factored offset
            offset, at = read_uleb(data, at)
            found.append(Instruction(primary, (opcode & 0x3F, offset)))
            continue
        if primary:  # DW_CFA_advance_loc, DW_CFA_restore
            found.append(Instruction(primary, (opcode & 0x3F,)))
            continue
        layout = _ARGUMENTS.get(opcode)
        if layout is None:
            raise EntryError(f"unknown CFA instruction {opcode:#x}")
        args: list[int | bytes] = []
        for kind in layout:
            if kind == "u":
                value, at = read_uleb(data, at)
                args.append(value)
            elif kind == "s":
                value, at = read_sleb(data, at)
                args.append(value)
            elif kind == "b":
                size, at = read_uleb(data, at)
                args.append(bytes(data[at : at + size]))
                at += size
            else:
                args.append(_FIXED[kind].unpack_from(data, at)[0])
                at += _FIXED[kind].size
        found.append(Instruction(opcode, tuple(args)))
    if at != end:
        raise EntryError("an instruction runs past its entry")
    return found


def _header(data: bytes, offset: int, for_eh_frame: bool) -> tuple[int, int, int, bool]:
    """An entry's (end, CIE id or pointer, position after it, whether it is a CIE)."""
    length, at = _U32.unpack_from(data, offset)[0], offset + 4
    wide = length == 0xFFFFFFFF
    if wide:
        length, at = _U64.unpack_from(data, at)[0], at + 8
    end = at + length
    if length == 0 or end > len(data):
        raise EntryError(f"no entry at {offset:#x}")
    word = _U64 if wide else _U32
    pointer = word.unpack_from(data, at)[0]
    if for_eh_frame:
        is_cie = pointer == 0
        pointer = at - pointer  # relative to the field itself
    else:
        is_cie = pointer == (_MASK if wide else 0xFFFFFFFF)
    return end, pointer, at + word.size, is_cie


def parse_cie(data: bytes, offset: int, for_eh_frame: bool, address: int) -> Cie:
    """The CIE at `offset` of a section at `address`."""
    end, _, at, is_cie = _header(data, offset, for_eh_frame)
    if not is_cie:
        raise EntryError(f"no CIE at {offset:#x}")
    version = data[at]
    nul = data.index(b"\0", at + 1)
    augmentation = bytes(data[at + 1 : nul])
    at = nul + 1
    if not for_eh_frame and version >= 4:
        at += 2  # address_size, segment_selector_size
    code_align, at = read_uleb(data, at)
    data_align, at = read_sleb(data, at)
    if version == 1:
        return_address, at = data[at], at + 1
    else:
        return_address, at = read_uleb(data, at)
    encoding = 0
    augmented = augmentation.startswith(b"z")
    if augmented:
        size, at = read_uleb(data, at)
        after, field = at + size, at
        for letter in augmentation[1:]:
            if letter == ord("R"):
                encoding, field = data[field], field + 1
            elif letter == ord("P"):
                personality = data[field]
                _, field = read_pointer(data, field + 1, personality & 0x7F, address)
            elif letter == ord("L"):
                field += 1
        at = after
    elif augmentation:
        raise EntryError(f"CIE augmentation {augmentation!r} is not supported")
    return Cie(
        code_align,
        data_align,
        return_address,
        encoding,
        augmented,
        b"S" in augmentation,
        instructions(data, at, end),
    )


def _fde_range(
    data: bytes, at: int, pointer: int, for_eh_frame: bool, address: int, cies: dict[int, Cie]
) -> tuple[Cie, int, int, int]:
    """An FDE's CIE (from `cies` by offset, or parsed into it), start, size and the position
    after them; `at` is just past the FDE's CIE pointer, `pointer` the CIE's offset."""
    cie = cies.get(pointer)
    if cie is None:
        cie = cies[pointer] = parse_cie(data, pointer, for_eh_frame, address)
    if for_eh_frame:
        start, at = read_pointer(data, at, cie.pointer_encoding, address)
        size, at = read_pointer(data, at, cie.pointer_encoding & 0x0F, address)
        return cie, start, size, at
    return cie, _U64.unpack_from(data, at)[0], _U64.unpack_from(data, at + 8)[0], at + 16


def parse_fde(
    data: bytes, offset: int, for_eh_frame: bool, address: int, cies: dict[int, Cie]
) -> Fde | None:
    """The FDE at `offset` of a section at `address` (None: a CIE is there); its CIE is
    taken from `cies` (by offset) or parsed into it. Raise EntryError."""
    try:
        end, pointer, at, is_cie = _header(data, offset, for_eh_frame)
        if is_cie:
            return None
        cie, start, size, at = _fde_range(data, at, pointer, for_eh_frame, address, cies)
        if cie.augmented:
            skip, at = read_uleb(data, at)
            at += skip
        return Fde(start, size, cie, instructions(data, at, end))
    except (IndexError, ValueError, struct.error) as err:
        raise EntryError(f"the entry at {offset:#x} is cut short: {err}") from None


def fde_starts(
    data: bytes, for_eh_frame: bool, address: int, cies: dict[int, Cie]
) -> list[tuple[int, int]]:
    """(start, offset) of every FDE of a section at `address`, in section order, without
    parsing their instructions (for a section no .eh_frame_hdr indexes). Raise EntryError."""
    found = []
    offset = 0
    try:
        # .eh_frame ends with a zero length; .debug_frame at the section's end
        while offset + 4 <= len(data) and _U32.unpack_from(data, offset)[0] != 0:
            end, pointer, at, is_cie = _header(data, offset, for_eh_frame)
            if not is_cie:
                _, start, _, _ = _fde_range(data, at, pointer, for_eh_frame, address, cies)
                found.append((start, offset))
            offset = end
    except (IndexError, ValueError, struct.error) as err:
        raise EntryError(f"the entry at {offset:#x} is cut short: {err}") from None
    return found
