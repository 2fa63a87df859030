"""Finding R inside a process: the mapped libR.so (or R executable), its symbols, its version.

The file is opened so that it is the very file the process maps, in every setting: plain,
chroot, or a container with its own mount namespace (where the path in /proc/PID/maps means
a different file on the host). A candidate is accepted only when its device and inode match
the maps line; the host's file is never opened by accident.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.constants import P_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_ST_INFO_BIND
from elftools.elf.enums import ENUM_ST_INFO_TYPE
from elftools.elf.sections import SymbolTableSection

from sampler.errors import NoSuchProcessError
from sampler.errors import NotRProcessError
from sampler.errors import PermissionDeniedError

#: Symbols xrtop reads. The first one is required; the rest make frames and lines exact.
WANTED_SYMBOLS = (
    "R_GlobalContext",
    "R_NilValue",
    "R_DoubleColonSymbol",
    "R_TripleColonSymbol",
    "R_DollarSymbol",
    "R_Bracket2Symbol",
    "R_Srcref",
    "R_InBCInterpreter",
    "R_Home",
    "R_SrcfileSymbol",
    "R_GlobalEnv",
    "R_BaseEnv",
    "R_interrupts_suspended",
    "R_CStackStart",
    "R_BCNodeStackTop",
    "R_BCNodeStackEnd",
)
_MAPS_LINE = re.compile(
    r"^(?P<start>[0-9a-f]+)-(?P<end>[0-9a-f]+) (?P<perms>\S+) (?P<offset>[0-9a-f]+) "
    r"(?P<major>[0-9a-f]+):(?P<minor>[0-9a-f]+) (?P<inode>\d+)\s*(?P<path>.*)$"
)


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int
    device: tuple[int, int]
    inode: int
    path: str


def read_maps(pid: int) -> list[Mapping]:
    """The process's memory mappings; raise NoSuchProcessError or PermissionDeniedError."""
    try:
        text = Path(f"/proc/{pid}/maps").read_text(errors="surrogateescape")
    except FileNotFoundError:
        raise NoSuchProcessError(f"no process with PID {pid}") from None
    except PermissionError:
        raise PermissionDeniedError(f"cannot read /proc/{pid}/maps") from None
    maps = []
    for line in text.splitlines():
        m = _MAPS_LINE.match(line)
        if m:
            maps.append(_mapping(m))
    return maps


def mapping_at(pid: int, start: int) -> Mapping | None:
    """The mapping of process `pid` that starts at address `start`, or None; reads the
    maps but parses only that line (a fork's check that R is where its parent's is)."""
    try:
        text = Path(f"/proc/{pid}/maps").read_text(errors="surrogateescape")
    except (FileNotFoundError, ProcessLookupError):  # (the second: exiting as it is read)
        raise NoSuchProcessError(f"no process with PID {pid}") from None
    except PermissionError:
        raise PermissionDeniedError(f"cannot read /proc/{pid}/maps") from None
    prefix = f"{start:x}-"
    if text.startswith(prefix):
        at = 0
    else:
        at = text.find("\n" + prefix) + 1
        if at == 0:
            return None
    end = text.find("\n", at)
    m = _MAPS_LINE.match(text[at:] if end < 0 else text[at:end])
    return _mapping(m) if m else None


def _mapping(m: re.Match[str]) -> Mapping:
    return Mapping(
        int(m["start"], 16),
        int(m["end"], 16),
        m["perms"],
        int(m["offset"], 16),
        (int(m["major"], 16), int(m["minor"], 16)),
        int(m["inode"]),
        m["path"],
    )


def _is_libr(path: str) -> bool:
    return os.path.basename(path.removesuffix(" (deleted)")) == "libR.so"


def find_libr_mapping(maps: list[Mapping]) -> Mapping | None:
    """The offset-0 mapping of libR.so, or None when the process maps no libR.so."""
    for mapping in maps:
        if _is_libr(mapping.path) and mapping.offset == 0:
            return mapping
    return None


def needs_libr(path: str) -> bool:
    """Whether the ELF file at `path` names libR.so among the libraries it needs (an R
    binary built with libR: R only once the dynamic loader has mapped it); False when it
    cannot be read."""
    try:
        with open(path, "rb") as stream:
            dynamic = ELFFile(stream).get_section_by_name(".dynamic")
            if dynamic is None:
                return False
            return any(
                tag.entry.d_tag == "DT_NEEDED" and tag.needed == "libR.so"
                for tag in dynamic.iter_tags()
            )
    except (OSError, ELFError):
        return False


def _matches(fd: int, mapping: Mapping) -> bool:
    st = os.fstat(fd)
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_ino == mapping.inode
        and (os.major(st.st_dev), os.minor(st.st_dev)) == mapping.device
    )


def open_mapped_file(pid: int, mapping: Mapping) -> tuple[BinaryIO, str]:
    """Open the file behind `mapping` as the target sees it; return it and how it was found.

    Tries /proc/PID/map_files (the mapped file itself), then the path inside the target's
    root, then the path as the host sees it; each is accepted only if dev:inode match.
    """
    path = mapping.path.removesuffix(" (deleted)")
    candidates = [
        f"/proc/{pid}/map_files/{mapping.start:x}-{mapping.end:x}",
        f"/proc/{pid}/root{path}",
        path,
    ]
    refused = []
    for candidate in candidates:
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            refused.append(f"{candidate}: {err.strerror}")
            continue
        if _matches(fd, mapping) or candidate.startswith(f"/proc/{pid}/map_files/"):
            # map_files is the mapping itself; on overlay filesystems its st_dev may differ
            # from the maps line, which shows the underlying device.
            return os.fdopen(fd, "rb"), candidate
        os.close(fd)
        refused.append(f"{candidate}: a different file (device or inode differ)")
    raise PermissionDeniedError(
        f"cannot open the {os.path.basename(path)} that process {pid} maps",
        "Tried: " + "; ".join(refused) + ". If the process runs in a rootless container, "
        "run xrtop inside that container (or enter its mount namespace with nsenter).",
    )


@dataclass(frozen=True)
class RBinary:
    """Where R's code is loaded in the target and the runtime addresses of its symbols."""

    path: str
    opened_as: str
    bias: int
    symbols: dict[str, int]
    machine: str
    #: The code bytes of small functions xrtop decodes (e.g. R_gc_running), by name.
    code: dict[str, bytes]


_ELF64_SYM = struct.Struct("<IBBHQQ")  # st_name, st_info, st_other, st_shndx, st_value, st_size


def symbol_entries(
    elf: ELFFile, section_name: str = ".dynsym"
) -> Iterator[tuple[str, int, int, int]]:
    """Every defined, named symbol of a symbol table: (name, st_value, st_size, st_info).

    Parsed with `struct` from the section's bytes: pyelftools parses each of libR.so's
    thousands of symbols through `construct`, which takes most of a second, and attaching
    (and `xrtop dump`) should take well under one.
    """
    section = elf.get_section_by_name(section_name)
    if not isinstance(section, SymbolTableSection) or section["sh_type"] == "SHT_NOBITS":
        return
    if elf.elfclass != 64 or not elf.little_endian:
        for sym in section.iter_symbols():
            if sym["st_shndx"] != "SHN_UNDEF" and sym.name:
                kind = sym["st_info"]
                info = ENUM_ST_INFO_BIND[kind["bind"]] << 4 | ENUM_ST_INFO_TYPE[kind["type"]]
                yield sym.name, int(sym["st_value"]), int(sym["st_size"]), info
        return
    strtab = elf.get_section(section["sh_link"]).data()
    data = section.data()
    entsize = section["sh_entsize"] or _ELF64_SYM.size
    for offset in range(0, len(data) - _ELF64_SYM.size + 1, entsize):
        name_at, info, _, shndx, value, size = _ELF64_SYM.unpack_from(data, offset)
        if shndx == 0 or not name_at:  # SHN_UNDEF, or no name
            continue
        name = strtab[name_at : strtab.find(b"\0", name_at)].decode("utf-8", "replace")
        yield name, value, size, info


def defined_symbols(elf: ELFFile, section_name: str = ".dynsym") -> dict[str, tuple[int, int]]:
    """Every defined symbol of a symbol table: name -> (st_value, st_size), first one wins."""
    found: dict[str, tuple[int, int]] = {}
    for name, value, size, _ in symbol_entries(elf, section_name):
        found.setdefault(name, (value, size))
    return found


def load_bias(elf: ELFFile, mapping_start: int) -> int:
    """What to add to the ELF's addresses to get the target's: from its offset-0 mapping."""
    if elf["e_type"] == "ET_EXEC":
        return 0
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_LOAD" and segment["p_offset"] == 0:
            return int(mapping_start - (segment["p_vaddr"] & ~0xFFF))
    return mapping_start


def _function_bytes(elf: ELFFile, value: int, size: int) -> bytes:
    for segment in elf.iter_segments():
        if (
            segment["p_type"] == "PT_LOAD"
            and segment["p_flags"] & P_FLAGS.PF_X
            and segment["p_vaddr"] <= value < segment["p_vaddr"] + segment["p_filesz"]
        ):
            stream = elf.stream
            stream.seek(segment["p_offset"] + value - segment["p_vaddr"])
            return bytes(stream.read(size))
    return b""


_CODE_SYMBOLS = ("R_gc_running", "R_gc", "Rf_begincontext")


def find_r_mapping(pid: int, maps: list[Mapping]) -> Mapping:
    """The offset-0 mapping of R's code in process `pid` (`maps`): libR.so, or the R
    executable of a static build; raise NotRProcessError when there is none."""
    mapping = find_libr_mapping(maps)
    if mapping is None:
        # R built without a shared library: the symbols are in the executable itself.
        try:
            exe_stat = os.stat(f"/proc/{pid}/exe")
        except OSError:
            raise NotRProcessError(f"process {pid} is not an R process") from None
        for candidate in maps:
            if candidate.inode == exe_stat.st_ino and candidate.offset == 0:
                mapping = candidate
                break
        if mapping is None:
            raise NotRProcessError(f"process {pid} is not an R process (no libR.so, no R binary)")
    return mapping


def load_r_binary(pid: int, maps: list[Mapping] | None = None) -> RBinary:
    """Locate R in process `pid`: libR.so, or the R executable of a static build."""
    maps = read_maps(pid) if maps is None else maps
    mapping = find_r_mapping(pid, maps)
    stream, opened_as = open_mapped_file(pid, mapping)
    with stream:
        try:
            elf = ELFFile(stream)
            table = defined_symbols(elf)
            found: dict[str, int] = {}
            sizes: dict[str, int] = {}
            for name in (*WANTED_SYMBOLS, *_CODE_SYMBOLS):
                if name in table:
                    found[name], sizes[name] = table[name]
            if "R_GlobalContext" not in found:
                raise NotRProcessError(
                    f"process {pid} is not an R process ({mapping.path} does not define "
                    "R_GlobalContext)"
                )
            bias = load_bias(elf, mapping.start)
            code = {
                name: _function_bytes(elf, found[name], max(sizes[name], 64))
                for name in _CODE_SYMBOLS
                if name in found
            }
            machine = str(elf["e_machine"])
        except (ELFError, struct.error) as err:
            raise NotRProcessError(f"{mapping.path} is not a readable ELF file: {err}") from None
    return RBinary(
        path=mapping.path,
        opened_as=opened_as,
        bias=bias,
        symbols={name: value + bias for name, value in found.items()},
        machine=machine,
        code=code,
    )


def resolve_in_root(pid: int, path: str, max_links: int = 40) -> str:
    """`path` as seen by process `pid`, as a host path under /proc/PID/root.

    Symbolic links are followed inside the target's root (an absolute link would otherwise
    resolve against xrtop's own root and reach the host's file).
    """
    root = f"/proc/{pid}/root"
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        current = root + "/" + "/".join([*resolved, part])
        try:
            is_link = stat.S_ISLNK(os.lstat(current).st_mode)
        except OSError:
            is_link = False
        if is_link:
            links += 1
            if links > max_links:
                raise OSError(f"too many symbolic links in {path}")
            target = os.readlink(current)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return root + "/" + "/".join(resolved)
