"""Function symbols of one ELF file, looked up by address with a binary search."""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable

from elftools.elf.elffile import ELFFile

from sampler.symbols import symbol_entries

#: st_info types that name code: STT_FUNC, STT_GNU_IFUNC.
_CODE_TYPES = frozenset({2, 10})
#: st_info binding STB_LOCAL: a global or weak name is preferred for an address.
_LOCAL = 0


class SymbolTable:
    """Sorted function symbols: `lookup(address)` -> (name, start) or None.

    Addresses are the ELF file's own (before the load bias). An address past a symbol's
    size is not attributed to it: stripped libraries keep only their exported symbols, and
    a static function between two of them must not take the name of the one before.
    """

    def __init__(self, entries: Iterable[tuple[str, int, int, int]]) -> None:
        best: dict[int, tuple[bool, str, int]] = {}
        #: Every function name (aliases too) -> its start.
        self.starts_by_name: dict[str, int] = {}
        for name, value, size, info in entries:
            if info & 0xF not in _CODE_TYPES or not value:
                continue
            self.starts_by_name.setdefault(name, value)
            rank = (info >> 4 != _LOCAL, name, size)
            held = best.get(value)
            # The global name over a local alias, then the one that covers more code.
            if held is None or (rank[0], rank[2]) > (held[0], held[2]):
                best[value] = rank
        self.starts = array("Q", sorted(best))
        self.ends = array("Q", (start + max(best[start][2], 1) for start in self.starts))
        self.names = [best[start][1] for start in self.starts]

    def lookup(self, address: int) -> tuple[str, int] | None:
        """The function containing `address` and its start, or None."""
        index = bisect.bisect_right(self.starts, address) - 1
        # Symbols may nest (a local alias inside a bigger function): look back a little.
        for at in range(index, max(index - 4, -1), -1):
            if address < self.ends[at]:
                return self.names[at], self.starts[at]
        return None

    def address_of(self, name: str) -> int | None:
        """The start of the function called `name` (any alias), or None."""
        return self.starts_by_name.get(name)


def read_symbols(*elves: ELFFile) -> SymbolTable:
    """The function symbols of .symtab and .dynsym of each file (a debug file's too)."""
    return SymbolTable(
        entry
        for elf in elves
        for section in (".symtab", ".dynsym")
        for entry in symbol_entries(elf, section)
    )
