"""Reading R objects (SEXPs) out of another process: headers, nodes, vectors and strings.

One policy for every reader (the stack reader, the frame namer, the source-line reader):
a node is read as CELL_SIZE bytes; a vector's header says its type and length, and a length
beyond what a sample can need means a torn or corrupt object (TornSampleError), never a
huge read; a CHARSXP is read with a first guess of `_STRING_GUESS` bytes and once more when
longer; an address that cannot be read raises BadAddressError. Layout constants are in
sampler.layouts.
"""

from __future__ import annotations

import struct

from sampler.errors import BadAddressError
from sampler.errors import TornSampleError
from sampler.layouts import ALTREP_BIT
from sampler.layouts import CELL_SIZE
from sampler.layouts import SYMSXP
from sampler.layouts import TYPE_MASK
from sampler.layouts import VECTOR_DATA
from sampler.layouts import VECTOR_LENGTH
from sampler.procmem import Address
from sampler.procmem import ProcessMemory

#: Longest string read: R allows symbols of 10000 bytes, but 4 KB is plenty for frame
#: names and file names.
MAX_STRING = 4096
#: Bytes read after a CHARSXP's header before knowing its length.
_STRING_GUESS = 64

U64 = struct.Struct("<Q")
I32 = struct.Struct("<i")
F64 = struct.Struct("<d")
#: A node's sxpinfo, (attrib, gc links,) CAR, CDR and TAG.
LINKS = struct.Struct("<Q8x16x3Q")
#: A node's sxpinfo, attrib, (gc links,) CAR, CDR and TAG.
NODE = struct.Struct("<QQ16xQQQ")
#: A node's sxpinfo and CAR (a call's head).
HEAD = struct.Struct("<Q24xQ")
#: Where a node's header, CAR and CDR are, as struct fields after its start, and their span:
#: what identifies an expression (`sampler.knownstacks`).
CELL_LINK_FIELDS, CELL_LINK_SPAN = "Q24xQQ", 48
#: sizeof(BCODE) with threaded code (a union of a label address and an int).
BCODE_SIZE = 8


def links(data: bytes) -> tuple[int, int, int, int]:
    """(type, CAR, CDR, TAG) of a node read as CELL_SIZE bytes."""
    info, car, cdr, tag = LINKS.unpack_from(data)
    return info & TYPE_MASK, car, cdr, tag


def read_links(memory: ProcessMemory, address: Address) -> tuple[int, int, int, int]:
    """(type, CAR, CDR, TAG) of the node at `address`."""
    return links(memory.read(address, CELL_SIZE))


def read_node(memory: ProcessMemory, address: Address) -> tuple[int, int, int, int, int]:
    """(sxpinfo, attrib, CAR, CDR, TAG) of the node at `address`."""
    info, attrib, car, cdr, tag = NODE.unpack(memory.read(address, CELL_SIZE))
    return info, attrib, car, cdr, tag


def instruction_offset(pc: Address, code: Address) -> int:
    """The offset, in instructions, of the instruction at address `pc` from the start of
    the byte code vector `code` (as bcEval's `pc - BCCODE(body)`; 0 is the code's version
    word); -1 when `pc` is no instruction word of it."""
    delta = pc - (code + VECTOR_DATA)
    return -1 if delta < 0 or delta % BCODE_SIZE else delta // BCODE_SIZE


def is_plain_vector(info: int, kind: int) -> bool:
    """Whether the sxpinfo `info` is of a vector of type `kind` with its data in place
    (not ALTREP)."""
    return info & TYPE_MASK == kind and not info & ALTREP_BIT


def vector_length(header: bytes) -> int:
    """The length of the vector whose header (at least VECTOR_DATA bytes) is `header`."""
    return int(U64.unpack_from(header, VECTOR_LENGTH)[0])


def read_vector(
    memory: ProcessMemory, address: Address, kind: int, item: int, limit: int
) -> bytes | None:
    """The data of the plain vector of type `kind` at `address` (`item` bytes an element);
    None when it is of another type or ALTREP. Longer than `limit` elements: torn."""
    header = memory.read(address, VECTOR_DATA)
    if not is_plain_vector(header[0], kind):
        return None
    length = vector_length(header)
    if length > limit:
        raise TornSampleError("a vector is implausibly long")
    return memory.read(address + VECTOR_DATA, length * item) if length else b""


def read_charsxp(memory: ProcessMemory, address: Address, errors: str = "replace") -> str:
    """The text of the CHARSXP at `address`, decoded as UTF-8 with the `errors` handler
    ("replace" for names shown, "surrogateescape" for file names written back as bytes)."""
    data = memory.read_upto(address, VECTOR_DATA + _STRING_GUESS)
    if len(data) < VECTOR_DATA:
        raise BadAddressError(f"cannot read a string at {address:#x}")
    length = vector_length(data)
    if length > MAX_STRING:
        raise TornSampleError("a string is implausibly long")
    if VECTOR_DATA + length > len(data):
        data = memory.read(address, VECTOR_DATA + length)
    return data[VECTOR_DATA : VECTOR_DATA + length].decode("utf-8", errors)


class SymbolNames:
    """Names of symbols by address, read once each: R never frees or changes a symbol or
    its name, so a name may be read while R runs and kept for the life of the process."""

    def __init__(self, memory: ProcessMemory) -> None:
        """Read names through `memory`."""
        self.memory = memory
        #: Known names by symbol address (the stack decoder looks here first).
        self.known: dict[Address, str] = {}

    def __call__(self, symbol: Address) -> str:
        """The name of the symbol at `symbol`; raise TornSampleError if it is none."""
        name = self.known.get(symbol)
        if name is None:
            kind, printname, _, _ = read_links(self.memory, symbol)
            if kind != SYMSXP:
                raise TornSampleError("a symbol is not a symbol")
            name = read_charsxp(self.memory, printname)
            self.known[symbol] = name
        return name
