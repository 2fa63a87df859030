"""The ELF files a process maps: where each one's code is, its symbols and its CFI.

Files are opened the way `sampler.symbols` opens libR.so (map_files, then the target's
root), so that a containerised target's own files are read; the kernel's vDSO is copied
from the target's memory. A module's symbols and CFI
are read on first use and kept; `ModuleMap.refresh()` re-reads /proc/PID/maps (for
libraries loaded later) and keeps the modules that are still mapped.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import os
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from sampler.errors import SampleError
from sampler.errors import XrtopError
from sampler.native.cfi import CfiError
from sampler.native.cfi import CfiSection
from sampler.native.cfi import FdeRules
from sampler.native.cfi import find_fde
from sampler.native.debugfiles import find_debug_file
from sampler.native.symtab import SymbolTable
from sampler.native.symtab import read_symbols
from sampler.procmem import LiveMemory
from sampler.symbols import Mapping
from sampler.symbols import load_bias
from sampler.symbols import open_mapped_file
from sampler.symbols import read_maps

#: The kernel's code mapped into every process (clock_gettime and friends): an ELF image
#: that exists only in memory.
VDSO = "[vdso]"
#: A mapped file: its identity in /proc/PID/maps (device, inode, path).
ModuleKey = tuple[tuple[int, int], int, str]


def _section_bytes(elf: ELFFile, name: str) -> tuple[bytes, int] | None:
    """A section's bytes and address, or None when it is absent or has no bytes."""
    section = elf.get_section_by_name(name)
    if section is None or section["sh_type"] == "SHT_NOBITS":
        return None
    return section.data(), int(section["sh_addr"])


def read_cfi(elf: ELFFile, debug: ELFFile | None = None) -> list[CfiSection]:
    """The CFI sections of `elf`: .eh_frame (indexed by .eh_frame_hdr when present), then
    .debug_frame from the file itself or else from its separate debug file `debug`.

    Raise CfiError when a section cannot be read.
    """
    sections = []
    eh_frame = _section_bytes(elf, ".eh_frame")
    if eh_frame is not None:
        hdr = _section_bytes(elf, ".eh_frame_hdr")
        sections.append(
            CfiSection(
                eh_frame[0],
                eh_frame[1],
                for_eh_frame=True,
                hdr=hdr[0] if hdr else None,
                hdr_address=hdr[1] if hdr else 0,
            )
        )
    for source in (elf, debug):
        debug_frame = _section_bytes(source, ".debug_frame") if source is not None else None
        if debug_frame is not None:
            sections.append(CfiSection(debug_frame[0], debug_frame[1], for_eh_frame=False))
            break
    return sections


class Module:
    """One mapped ELF file of the target: ELF address = target address - `bias`."""

    def __init__(self, pid: int, first: Mapping) -> None:
        self.pid = pid
        self.path = first.path.removesuffix(" (deleted)")
        self.name = os.path.basename(self.path)
        self._mapping = first
        self._elf: ELFFile | None = None
        self._debug: ELFFile | None = None
        self._symbols: SymbolTable | None = None
        self._cfi: list[CfiSection] | None = None
        self._cfi_problem = ""
        #: Why this file cannot be read ("" while it can); set on the first failure.
        self.problem = ""
        self.bias = first.start - first.offset  # until the ELF headers say better

    def _open(self) -> ELFFile | None:
        if self._elf is None and not self.problem:
            try:
                stream = self._stream()
            except (XrtopError, SampleError) as err:
                self.problem = f"cannot open {self.path}: {err}"
                return None
            try:
                self._elf = ELFFile(stream)
                self.bias = load_bias(self._elf, self._mapping.start)
            except (ELFError, OSError, ValueError) as err:
                stream.close()
                self.problem = f"{self.path} is not a readable ELF file: {err}"
                return None
            if self.path != VDSO:
                with contextlib.suppress(OSError, ELFError, ValueError):
                    self._debug = find_debug_file(self.pid, self.path, self._elf)
        return self._elf

    def _stream(self) -> BinaryIO:
        """The file, opened as the target sees it; the vDSO is copied from its memory."""
        mapping = self._mapping
        if self.path == VDSO:
            size = mapping.end - mapping.start
            image = LiveMemory(self.pid, scratch_size=size).read(mapping.start, size)
            return io.BytesIO(image)
        return open_mapped_file(self.pid, mapping)[0]

    @property
    def is_executable(self) -> bool:
        """Whether this is a program (it names an interpreter), not a shared library."""
        elf = self._open()
        return elf is not None and any(
            segment["p_type"] == "PT_INTERP" for segment in elf.iter_segments()
        )

    def elf_address(self, pc: int) -> int:
        """`pc` (a target address in this module) as an address in the ELF file."""
        self._open()
        return pc - self.bias

    @property
    def symbols(self) -> SymbolTable:
        """The file's function symbols (its debug file's too), read on first use."""
        if self._symbols is None:
            elf = self._open()
            elves = [e for e in (elf, self._debug) if e is not None]
            try:
                self._symbols = read_symbols(*elves)
            except (ELFError, OSError, ValueError):
                self._symbols = SymbolTable(())
        return self._symbols

    @property
    def has_debug_file(self) -> bool:
        """Whether a separate debug file was found (after the first use)."""
        return self._debug is not None

    def cfi_sections(self) -> list[CfiSection]:
        """The file's CFI sections (.eh_frame, then .debug_frame), read on first use.

        Raise CfiError when a section cannot be read.
        """
        if self._cfi is None:
            elf = self._open()
            try:
                self._cfi = read_cfi(elf, self._debug) if elf is not None else []
            except CfiError as err:
                self._cfi = []
                self._cfi_problem = str(err)
        if self._cfi_problem:
            raise CfiError(self._cfi_problem)
        return self._cfi

    def fde_at(self, address: int) -> FdeRules | None:
        """The decoded FDE covering ELF address `address`, or None (no CFI covers it).

        Raise CfiError when the CFI is there but cannot be read or run.
        """
        return find_fde(self.cfi_sections(), address)

    def close(self) -> None:
        """Close the files; the module can no longer read anything new."""
        for elf in (self._elf, self._debug):
            if elf is not None:
                elf.stream.close()
        self._elf = self._debug = None
        self.problem = self.problem or "closed"


def _is_module(mapping: Mapping) -> bool:
    """Whether a mapping is (part of) an ELF file: a file, or the kernel's vDSO."""
    return bool(mapping.inode and mapping.path.startswith("/")) or mapping.path == VDSO


def _module_key(mapping: Mapping) -> ModuleKey:
    return (mapping.device, mapping.inode, mapping.path)


class ModuleMap:
    """The target's executable mappings of files, by address: `find(pc)` -> Module."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.modules: dict[ModuleKey, Module] = {}
        self._starts: list[int] = []
        self._ranges: list[tuple[int, int, Module]] = []
        self.refresh()

    def refresh(self) -> bool:
        """Re-read /proc/PID/maps; modules still mapped keep what they have read.

        Return whether any module came or went.
        """
        maps = read_maps(self.pid)
        kept: dict[ModuleKey, Module] = {}
        firsts: dict[ModuleKey, Mapping] = {}
        for mapping in maps:
            if _is_module(mapping):
                firsts.setdefault(_module_key(mapping), mapping)
        for key, first in firsts.items():
            held = self.modules.get(key)
            # The same file at another address (unloaded, loaded again) is a new module.
            if held is not None and held._mapping.start == first.start:
                kept[key] = held
            else:
                kept[key] = Module(self.pid, first)
        changed = kept.keys() != self.modules.keys()
        for key, module in self.modules.items():
            if kept.get(key) is not module:
                module.close()
                changed = True
        self.modules = kept
        ranges = [
            (m.start, m.end, kept[_module_key(m)])
            for m in maps
            if "x" in m.perms and _module_key(m) in kept
        ]
        ranges.sort(key=lambda r: r[0])
        self._ranges = ranges
        self._starts = [r[0] for r in ranges]
        return changed

    def find(self, pc: int) -> Module | None:
        """The module whose code contains `pc`, or None."""
        index = bisect.bisect_right(self._starts, pc) - 1
        if index >= 0:
            _start, end, module = self._ranges[index]
            if pc < end:
                return module
        return None

    def close(self) -> None:
        """Close every module's files."""
        for module in self.modules.values():
            module.close()
