"""Separate debug files (Debian's -dbg / -dbgsym packages) for a mapped ELF file.

Looked up the way gdb does, inside the target's root: by build ID under
/usr/lib/debug/.build-id/, then by .gnu_debuglink name (next to the file, in its .debug/
directory, under /usr/lib/debug/ + its directory), the link's CRC32 checked.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from sampler.symbols import resolve_in_root

_DEBUG_ROOT = "/usr/lib/debug"


def build_id(elf: ELFFile) -> str | None:
    """The file's GNU build ID as hex, or None."""
    section = elf.get_section_by_name(".note.gnu.build-id")
    if section is None:
        return None
    for note in section.iter_notes():
        if note["n_type"] == "NT_GNU_BUILD_ID":
            return str(note["n_desc"])
    return None


def _debuglink(elf: ELFFile) -> tuple[str, int] | None:
    section = elf.get_section_by_name(".gnu_debuglink")
    if section is None:
        return None
    data = section.data()
    end = data.find(b"\0")
    if end <= 0:
        return None
    crc_at = (end + 4) & ~3
    if crc_at + 4 > len(data):
        return None
    return data[:end].decode("utf-8", "replace"), struct.unpack_from("<I", data, crc_at)[0]


def _crc32(stream: BinaryIO) -> int:
    crc = 0
    while chunk := stream.read(1 << 20):
        crc = zlib.crc32(chunk, crc)
    return crc


def _open_elf(path: str) -> ELFFile | None:
    try:
        stream = open(path, "rb")  # noqa: SIM115 -- the ELFFile keeps reading it
    except OSError:
        return None
    try:
        return ELFFile(stream)
    except (ELFError, OSError):
        stream.close()
        return None


def find_debug_file(pid: int, path: str, elf: ELFFile) -> ELFFile | None:
    """The separate debug file of `elf` (mapped by `pid` from `path`), open, or None."""
    wanted = build_id(elf)
    if wanted is not None and len(wanted) > 2:
        candidate = f"{_DEBUG_ROOT}/.build-id/{wanted[:2]}/{wanted[2:]}.debug"
        found = _open_elf(resolve_in_root(pid, candidate))
        if found is not None:
            if build_id(found) == wanted:
                return found
            found.stream.close()
    link = _debuglink(elf)
    if link is None:
        return None
    name, crc = link
    directory = os.path.dirname(path)
    for candidate in (
        f"{directory}/{name}",
        f"{directory}/.debug/{name}",
        f"{_DEBUG_ROOT}{directory}/{name}",
    ):
        if candidate == path:
            continue
        found = _open_elf(resolve_in_root(pid, candidate))
        if found is None:
            continue
        found.stream.seek(0)
        if _crc32(found.stream) == crc:
            return found
        found.stream.close()
    return None
