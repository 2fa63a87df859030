"""Function symbols of one ELF file, looked up by address with a binary search."""

from __future__ import annotations

import bisect
import struct
from array import array
from collections.abc import Iterable
from collections.abc import Iterator

from elftools.elf.elffile import ELFFile

from sampler.symbols import symbol_entries

#: st_info types that name code: STT_FUNC, STT_GNU_IFUNC.
_STT_FUNC = 2
_CODE_TYPES = frozenset({_STT_FUNC, 10})
_R_X86_64_JUMP_SLOT = 7
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
    """The function symbols of .symtab and .dynsym of each file (a debug file's too), and
    the first file's PLT entries ("pause@plt")."""
    entries = [
        entry
        for elf in elves
        for section in (".symtab", ".dynsym")
        for entry in symbol_entries(elf, section)
    ]
    if elves:
        entries.extend(plt_symbols(elves[0]))
    return SymbolTable(entries)


_RELA = struct.Struct("<QQq")  # r_offset, r_info, r_addend
_ST_NAME = struct.Struct("<I")  # an Elf64_Sym's first field: its name's offset in the strtab
_PLT_ENTRY = 16  # bytes per x86-64 PLT entry (.plt after its first one, or .plt.sec)


def plt_symbols(elf: ELFFile) -> Iterator[tuple[str, int, int, int]]:
    """The PLT's entries as symbols named like gdb's and objdump's "pause@plt".

    Each 16-byte entry of .plt.sec (with IBT), else of .plt, jumps through a GOT slot
    (`jmp *slot(%rip)`); the .rela.plt relocation of that slot names the function.
    """
    relocations = elf.get_section_by_name(".rela.plt")
    plt = elf.get_section_by_name(".plt.sec") or elf.get_section_by_name(".plt")
    if relocations is None or plt is None or elf["e_machine"] != "EM_X86_64":
        return
    symbols = elf.get_section(relocations["sh_link"])
    # The symbols' names by index, parsed with `struct`: pyelftools' `get_symbol` parses
    # each through `construct` (the PLTs of R and its libraries, 4,000 entries, took a second).
    table, entry_size = symbols.data(), symbols["sh_entsize"] or 24
    strings = elf.get_section(symbols["sh_link"]).data()
    slots: dict[int, int] = {}
    data = relocations.data()
    for offset in range(0, len(data) - _RELA.size + 1, _RELA.size):
        slot, info, _ = _RELA.unpack_from(data, offset)
        if info & 0xFFFFFFFF == _R_X86_64_JUMP_SLOT and info >> 32:
            slots[slot] = info >> 32
    code, base = plt.data(), int(plt["sh_addr"])
    for entry in range(0, len(code) - _PLT_ENTRY + 1, _PLT_ENTRY):
        jump = code.find(b"\xff\x25", entry, entry + _PLT_ENTRY - 6)
        if jump < 0:
            continue  # .plt's first entry, which pushes and jumps to the resolver
        slot = base + jump + 6 + struct.unpack_from("<i", code, jump + 2)[0]
        if slot in slots and (slots[slot] + 1) * entry_size <= len(table):
            (name_at,) = _ST_NAME.unpack_from(table, slots[slot] * entry_size)
            name = strings[name_at : strings.find(b"\0", name_at)].decode("utf-8", "replace")
            if name:
                yield f"{name}@plt", base + entry, _PLT_ENTRY, _STT_FUNC
