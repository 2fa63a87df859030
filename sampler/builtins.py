"""Builtin frames of byte code: the `"sum"` in `"sum" "f" "g"`, as R's own Rprof writes it.

While Rprof runs, R opens a CTXT_BUILTIN context around each builtin call, and names it
after the call's head like any frame (eval.c: `eval` for BUILTINSXP, which also opens one
for the "foreign" builtins `.C`, `.Call`, `.External`, `.Fortran` whether profiling or not;
`bcEval`'s CALLBUILTIN when `IS_TRUE_BUILTIN`, i.e. not an `.Internal`). An outside reader
samples R without Rprof, so in byte code (where nearly all R code runs) those contexts do not
exist. This module recovers the innermost one from the byte-code interpreter's position:

- `R_BCbody` is the body bcEval runs and `*R_BCpc` (bcEval's local `currentpc`) the address
  of its current instruction (R 4.0 to 4.6 alike; both hidden, found by sampler.decode).
- Code is threaded: an instruction's first word is the address of its label in bcEval, so
  the address of CALLBUILTIN's label is read once from R's own opcode table `opinfo`
  (a static array of {label address, operand count, name}, filled when R starts), found as
  the entry whose name pointer points at the string "CALLBUILTIN" in libR's read-only data.
- CALLBUILTIN's operand indexes the body's constant pool; that entry is the call, whose
  head symbol names the frame. `.Internal(f(x))` compiles to CALLBUILTIN of `f(x)` for an
  internal builtin `f`: such a symbol has an INTERNAL value (its TAG) and gets no frame, as
  in R. No name is both a primitive and an internal.

What R does not give a frame is left alone: `.Call(...)` without argument names compiles to
the DOTCALL instruction, arithmetic and `.Internal`s to their own instructions, and none of
them opens a context even under Rprof. Builtins called from AST code (R's `eval`) leave no
trace outside a context and are not recovered here (with native frames, the builtin's C
function would show them).

The stopped half (`BuiltinReader.capture`) copies the few words that change as R runs: the
two globals, `currentpc`, the instruction and the body's cell (two or three reads); a call
site seen before is named from a cache keyed by the body's address, code and constants and
the instruction's offset, so a body freed and reused is not mistaken for the old one. After
resuming, `frame()` drops the builtin when the innermost frame context was opened during
this very instruction: Rprof's own context (Rprof running inside R) or a closure the builtin
called (dispatch, callbacks), whose frame then lies inside the builtin's.

A builtin that called R code is not innermost: its frame lies between two frames (S3
dispatch from `length` or `c`, S4's `standardGeneric`, `.External` callbacks).
`insert_between` finds them from the instruction that was running in each frame's caller
when its context was opened, in the bodies, which do not change while their frames live.
From R 4.4 the context keeps that instruction's offset (`relpc`). Before, it keeps only
`bcpc`, the address of its caller bcEval's `currentpc` (context.c `begincontext`), a word on
the C stack that still holds that instruction's address while the frame lives (the caller
is suspended in that instruction until the frame returns), but changes as soon as the frame
returns: it is taken only from the sample's stopped copy. The span copy of the C stack
(sampler.spans) holds it unless the stack was deeper than the copy; a snapshot plan holds
the words the last samples' frames pointed at (`PcWords`), so a call path met first in a
plan's copy has none: its frames get no builtin between them then, and the sample is not
kept to recognise the stack by (sampler.knownstacks).
"""

from __future__ import annotations

import ctypes
import struct
from collections import OrderedDict
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from sampler.chain import Bytes
from sampler.chain import Finder
from sampler.decode import HiddenGlobals
from sampler.errors import SampleError
from sampler.framenames import RawFrame
from sampler.layouts import BCODESXP
from sampler.layouts import CELL_SIZE
from sampler.layouts import CTXT_BUILTIN
from sampler.layouts import CTXT_FUNCTION
from sampler.layouts import LANGSXP
from sampler.layouts import SYMSXP
from sampler.layouts import TYPE_MASK
from sampler.layouts import VECTOR_DATA
from sampler.layouts import ContextLayout
from sampler.libc import IoVec
from sampler.libc import process_vm_readv
from sampler.procmem import Address
from sampler.procmem import LiveMemory
from sampler.procmem import ProcessMemory
from sampler.procmem import note_recent
from sampler.sexp import BCODE_SIZE
from sampler.sexp import instruction_offset
from sampler.symbols import RBinary

_FRAME_FLAGS = CTXT_FUNCTION | CTXT_BUILTIN
_OPINFO_ENTRY = struct.Struct("<QiiQ")  # label address, operand count, (padding), name
_MAX_OPCODES = 256  # R 4.6 has 129
_READ_CHUNK = 1 << 19
#: Call sites remembered (by body and offset) before the cache starts over.
_MAX_SITES = 4096
_U64 = struct.Struct("<Q")
_TWO = struct.Struct("<Qq")
_WORDS = struct.Struct("<QQQ")
_BODY = struct.Struct("<Q24xQQ")  # a body's sxpinfo, CAR (code) and CDR (constants)
_I64 = struct.Struct("<q")
_I32 = struct.Struct("<i")
#: Pc words of earlier samples a snapshot plan keeps copying beyond the last sample's.
_RECENT_WORDS = 16


def opcode_labels(memory: ProcessMemory, binary: RBinary) -> dict[str, Address]:
    """bcEval's instruction labels by instruction name, from R's `opinfo` table in process
    memory; empty when this R has none (no threaded code, not filled yet, not x86_64/ELF)."""
    try:
        with open(binary.opened_as, "rb") as stream:
            elf = ELFFile(stream)
            loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            names: list[Address] = []
            writable: list[tuple[Address, int]] = []
            for segment in loads:
                start = int(segment["p_vaddr"]) + binary.bias
                if segment["p_flags"] & 2:
                    writable.append((start, int(segment["p_memsz"])))
                    continue
                data = segment.data()
                found = data.find(b"\0CALLBUILTIN\0")
                while found >= 0:
                    names.append(start + found + 1)
                    found = data.find(b"\0CALLBUILTIN\0", found + 1)
    except (OSError, ELFError, struct.error):
        return {}
    for start, size in writable:
        try:
            data = b"".join(
                memory.read(start + at, min(_READ_CHUNK, size - at))
                for at in range(0, size, _READ_CHUNK)
            )
        except SampleError:
            continue
        for name in names:
            entry = _find_entry(data, _U64.pack(name))
            if entry is not None:
                return _read_table(memory, data, entry)
    return {}


def _find_entry(data: bytes, name_pointer: bytes) -> int | None:
    """The offset in `data` of the `opinfo` entry whose name is at `name_pointer`."""
    at = data.find(name_pointer)
    while at >= 0:
        entry = at - 16
        if at % 8 == 0 and entry >= 0:
            label, argc, _, _ = _OPINFO_ENTRY.unpack_from(data, entry)
            if label and argc == 1:  # CALLBUILTIN has one operand
                return entry
        at = data.find(name_pointer, at + 1)
    return None


def _read_table(memory: ProcessMemory, data: bytes, entry: int) -> dict[str, Address]:
    """Every entry of the table around `entry` (each with a label, a small operand count
    and a name), by name."""
    size = _OPINFO_ENTRY.size

    def plausible(at: int) -> bool:
        if at < 0 or at + size > len(data):
            return False
        label, argc, _, name = _OPINFO_ENTRY.unpack_from(data, at)
        return bool(label and name and 0 <= argc < 8)

    first = entry
    while plausible(first - size) and (entry - first) // size < _MAX_OPCODES:
        first -= size
    entries: list[tuple[Address, Address]] = []
    at = first
    while plausible(at) and len(entries) < _MAX_OPCODES:
        label, _, _, name = _OPINFO_ENTRY.unpack_from(data, at)
        entries.append((label, name))
        at += size
    texts = memory.read_many([(name, 24) for _, name in entries])
    labels: dict[str, Address] = {}
    for (label, _), text in zip(entries, texts):
        if text is not None:
            labels[text.split(b"\0", 1)[0].decode("ascii", "replace")] = label
    return labels


@dataclass(frozen=True)
class CurrentBuiltin:
    """The builtin a stopped R's byte code was calling: its call's head symbol, and where."""

    symbol: Address
    body: Address
    #: R_BCpc's value: the address of that bcEval's `currentpc` (identifies the bcEval).
    pc_var: Address
    #: The instruction's offset from the body's code start, in instructions.
    relpc: int


class PcWords:
    """The pc words (R < 4.4: each frame context's `*bcpc`) the last samples needed, for the
    snapshot plan to copy (`sampler.snapplan`); `dirty` says they changed since taken."""

    def __init__(self) -> None:
        """None needed yet."""
        self._recent: OrderedDict[Address, None] = OrderedDict()
        self.dirty = False

    def regions(self) -> list[tuple[Address, int]]:
        """The words as regions, most recently needed first."""
        return [(word, 8) for word in reversed(self._recent)]

    def need(self, words: list[Address]) -> None:
        """Remember the words one sample needed (and forget the oldest beyond a few)."""
        if note_recent(self._recent, words, len(words) + _RECENT_WORDS):
            self.dirty = True


class BuiltinReader:
    """Recovers the builtin frame R's Rprof would write innermost (see the module's text)."""

    def __init__(
        self,
        memory: LiveMemory,
        layout: ContextLayout,
        *,
        bc_globals: tuple[Address, Address],
        callbuiltin: Address,
        nil: Address,
    ) -> None:
        """Read through `memory`; R_BCbody and R_BCpc are at `bc_globals`, the CALLBUILTIN
        instruction's label at `callbuiltin`; contexts have `layout`."""
        self.memory = memory
        self.layout = layout
        self.bc_globals = bc_globals
        self.callbuiltin = callbuiltin
        self.nil = nil
        self._pid = memory.pid
        # The stopped reads go through iovecs of their own, set up once: this runs in every
        # stop, and `LiveMemory`'s general reads cost several times the Python work.
        self._buffer = ctypes.create_string_buffer(_WORDS.size + CELL_SIZE)
        self._local = IoVec(ctypes.addressof(self._buffer), 0)
        self._local_ref = ctypes.byref(self._local)
        # R_BCbody, R_BCpc, then `currentpc` where R_BCpc pointed at the last sample (R_BCpc
        # changes only when another bcEval runs, so this usually spares a read).
        self._first = (IoVec * 3)(IoVec(bc_globals[0], 8), IoVec(bc_globals[1], 8), IoVec(0, 8))
        # The instruction (label and operand), then the body's cell.
        self._second = (IoVec * 2)(IoVec(0, 16), IoVec(0, CELL_SIZE))
        self._pc_var: Address = 0
        self._sites: dict[tuple[Address, Address, Address, int], tuple[Address, Address]] = {}
        #: Samples that found R calling a builtin from byte code.
        self.found = 0
        #: The pc words for a snapshot plan to copy (None from R 4.4: contexts keep relpc).
        self.pc_words = PcWords() if layout.relpc is None else None
        #: Whether the last `insert_between` lacked a pc word: its frames may lack builtins.
        self.missed_word = False

    def for_fork(self, memory: LiveMemory) -> BuiltinReader:
        """The reader of a fork of this process (`memory` is the fork's): R and its opcode
        labels sit at the same addresses there, so nothing is looked up again."""
        return BuiltinReader(
            memory,
            self.layout,
            bc_globals=self.bc_globals,
            callbuiltin=self.callbuiltin,
            nil=self.nil,
        )

    def capture(self) -> CurrentBuiltin | None:
        """The builtin R's byte code calls right now, if any. Call while R is stopped."""
        buffer, local, first = self._buffer, self._local, self._first
        local.len = 24 if self._pc_var else 16
        got = process_vm_readv(self._pid, self._local_ref, 1, first, 3 if self._pc_var else 2, 0)
        if got < 16:
            return None
        body, pc_var, pc = _WORDS.unpack_from(buffer)
        if not body or not pc_var:
            return None
        if pc_var != self._pc_var or got < 24:
            self._pc_var = first[2].base = pc_var
            local.len = 24
            if process_vm_readv(self._pid, self._local_ref, 1, first, 3, 0) < 24:
                return None
            pc = _WORDS.unpack_from(buffer)[2]
        second = self._second
        second[0].base, second[1].base = pc, body
        local.len = 16 + CELL_SIZE
        if process_vm_readv(self._pid, self._local_ref, 1, second, 2, 0) < 16 + CELL_SIZE:
            return None
        label, operand = _TWO.unpack_from(buffer)
        if label != self.callbuiltin:
            return None
        info, code, consts = _BODY.unpack_from(buffer, 16)
        relpc = instruction_offset(pc, code)
        if info & TYPE_MASK != BCODESXP or relpc < 0:
            return None
        key = (body, code, consts, relpc)
        site = self._sites.get(key)
        if site is None:
            site = self._remember(key, self._head_symbol(consts, operand))
        if not site[0]:
            return None
        self.found += 1
        return CurrentBuiltin(site[0], body, pc_var, relpc)

    def _remember(
        self, key: tuple[Address, Address, Address, int], site: tuple[Address, Address]
    ) -> tuple[Address, Address]:
        """Cache `site` (head symbol and call, or zeros) for the instruction at `key`."""
        if len(self._sites) >= _MAX_SITES:
            self._sites.clear()
        self._sites[key] = site
        return site

    def _head_symbol(self, consts: Address, index: int) -> tuple[Address, Address]:
        """(head symbol, call) of the call at `index` in the constant pool `consts`, when it
        is a true builtin's (not an .Internal's); else zeros. Read once per call site."""
        none = (0, 0)
        if not 0 <= index < 1 << 24:
            return none
        memory = self.memory
        word = memory.read_many([(consts + VECTOR_DATA + 8 * index, 8)])[0]
        if word is None:
            return none
        call = _U64.unpack(word)[0]
        cell = memory.read_many([(call, CELL_SIZE)])[0]
        if cell is None or _U64.unpack_from(cell)[0] & TYPE_MASK != LANGSXP:
            return none
        head = _U64.unpack_from(cell, 32)[0]
        head_cell = memory.read_many([(head, CELL_SIZE)])[0]
        if head_cell is None or _U64.unpack_from(head_cell)[0] & TYPE_MASK != SYMSXP:
            return none
        internal = _U64.unpack_from(head_cell, 48)[0]  # INTERNAL(symbol), the TAG
        return (head, call) if internal == self.nil else none

    def frame(self, current: CurrentBuiltin, at: Finder, chain: list[Address]) -> RawFrame | None:
        """The builtin's frame, innermost; None when the innermost frame context of `chain`
        (found in the sample's copy with `at`) was opened during this same instruction, so
        that the builtin's frame is not innermost or already there."""
        layout = self.layout
        for address in chain:
            hit = at(address, layout.size)
            if hit is None:
                break
            data, offset = hit
            if not _I32.unpack_from(data, offset + layout.callflag)[0] & _FRAME_FLAGS:
                continue
            if _U64.unpack_from(data, offset + layout.bcbody)[0] != current.body:
                break
            if layout.relpc is not None:
                same = _I64.unpack_from(data, offset + layout.relpc)[0] == current.relpc
            else:
                same = _U64.unpack_from(data, offset + layout.bcpc)[0] == current.pc_var
            if same:
                return None
            break
        return RawFrame(symbol=current.symbol)

    def insert_between(
        self, frames: list[RawFrame], at: Finder, chain: list[Address], whole: bool
    ) -> list[int]:
        """Insert into `frames` (those of `chain`'s contexts, innermost first, found with
        `at`) the builtin frames R's Rprof writes between two of them: a builtin that called
        R code (S4's standardGeneric, S3 dispatch from length or c, .External callbacks).
        Return their indices in `frames`, ascending. With `whole` false, the chain's outer
        part is not in `chain`.

        A context's `bcbody` and pc (`_frame_sites`) say which instruction of its caller was
        running when it was opened; when that is a CALLBUILTIN of a true builtin, the
        builtin's frame lies just outside the outermost of the consecutive frames opened
        there, unless that one is R's own context for the builtin (Rprof runs). Before R 4.4
        a context whose `*bcpc` is not in `at`'s copy gets none (`missed_word`): a snapshot
        plan copies the words the last samples needed (`pc_words`), a span copy all. Reads
        bodies and their code and constant pools, which do not change while their frames
        live, so this may run after R resumed (as source lines are read; a body freed since
        has other links).
        """
        self.missed_word = False
        if len(frames) < 2:
            return []
        sites = self._frame_sites(at, chain)
        if sites is None or len(sites) != len(frames):
            return []
        links = self._code_links({body for _, _, body, pc in sites if body and pc > 0}, at)
        if self.layout.relpc is None:  # absolute pcs: to offsets, as R 4.4 keeps them
            sites = [
                (flag, call, body, instruction_offset(pc, links[body][0]) if body in links else -1)
                for flag, call, body, pc in sites
            ]
        builtins = self._builtins_at([(body, relpc) for _, _, body, relpc in sites], links)
        inserted: list[int] = []
        last = len(sites) - 1 if whole else len(sites) - 2
        for i in range(last, -1, -1):  # outermost first, so that indices stay right
            flag, call, body, relpc = sites[i]
            found = builtins.get((body, relpc))
            if found is None or (i < len(sites) - 1 and sites[i + 1][2:] == (body, relpc)):
                continue
            symbol, builtin_call = found
            if flag & CTXT_BUILTIN and call == builtin_call:
                continue  # R's own context for this builtin: its frame is there already
            frames.insert(i + 1, RawFrame(symbol=symbol))
            inserted = [i + 1] + [k + 1 for k in inserted]
        return inserted

    def _frame_sites(
        self, at: Finder, chain: list[Address]
    ) -> list[tuple[int, Address, Address, int]] | None:
        """(flag, call, bcbody, caller's pc) of each frame context of `chain`, innermost
        first, the pc as the context keeps it (`relpc`, R >= 4.4) or, before, `*bcpc` if
        `at`'s copy holds it (an instruction's address; else 0, and `missed_word` is set);
        None when `at` lacks a context or call."""
        layout = self.layout
        relpc_at = layout.relpc
        sites: list[tuple[int, Address, Address, int]] = []
        words: list[Address] = []
        for address in chain:
            hit = at(address, layout.size)
            if hit is None:
                return None
            data, offset = hit
            flag = _I32.unpack_from(data, offset + layout.callflag)[0]
            if not flag & _FRAME_FLAGS:
                continue
            call = _U64.unpack_from(data, offset + layout.call)[0]
            cell = at(call, CELL_SIZE)
            if cell is None:
                return None
            if _U64.unpack_from(cell[0], cell[1])[0] & TYPE_MASK != LANGSXP:
                continue  # no frame (as in `sampler.chain`)
            body = _U64.unpack_from(data, offset + layout.bcbody)[0]
            if relpc_at is not None:
                sites.append((flag, call, body, _I64.unpack_from(data, offset + relpc_at)[0]))
                continue
            word = _U64.unpack_from(data, offset + layout.bcpc)[0]
            pc = at(word, 8) if word else None
            if word:
                words.append(word)
                self.missed_word = self.missed_word or pc is None
            sites.append((flag, call, body, _U64.unpack_from(*pc)[0] if pc is not None else 0))
        if self.pc_words is not None:
            self.pc_words.need(words)
        return sites

    def _code_links(
        self, bodies: set[Address], at: Finder
    ) -> dict[Address, tuple[Address, Address]]:
        """The (code, constants) of each byte-code body of `bodies`: from `at`'s copy when
        it holds the body (a snapshot plan with lines does), else read now."""
        cells: list[tuple[Address, Bytes, int]] = []
        unread: list[Address] = []
        for body in bodies:
            hit = at(body, CELL_SIZE)
            if hit is None:
                unread.append(body)
            else:
                cells.append((body, *hit))
        if unread:
            read = self.memory.read_many([(body, CELL_SIZE) for body in unread])
            cells += [(body, cell, 0) for body, cell in zip(unread, read) if cell is not None]
        links = {}
        for body, data, offset in cells:
            info, code, consts = _BODY.unpack_from(data, offset)
            if info & TYPE_MASK == BCODESXP:
                links[body] = (code, consts)
        return links

    def _builtins_at(
        self,
        places: list[tuple[Address, int]],
        links: dict[Address, tuple[Address, Address]],
    ) -> dict[tuple[Address, int], tuple[Address, Address]]:
        """The true builtins called at (body, relpc) `places`, bodies with `links`: (head
        symbol, call) by place."""
        found: dict[tuple[Address, int], tuple[Address, Address]] = {}
        for body, relpc in places:
            if body not in links or relpc <= 0:
                continue
            code, consts = links[body]
            key = (body, code, consts, relpc)
            site = self._sites.get(key)
            if site is None:
                site = self._remember(key, self._site_at(code, consts, relpc))
            if site[0]:
                found[body, relpc] = site
        return found

    def _site_at(self, code: Address, consts: Address, relpc: int) -> tuple[Address, Address]:
        """`_head_symbol` of the instruction `relpc` of `code`, if it is a CALLBUILTIN."""
        word = self.memory.read_many([(code + VECTOR_DATA + BCODE_SIZE * relpc, 16)])[0]
        if word is None:
            return (0, 0)
        label, operand = _TWO.unpack(word)
        return self._head_symbol(consts, operand) if label == self.callbuiltin else (0, 0)


def builtin_reader(
    memory: LiveMemory,
    binary: RBinary,
    layout: ContextLayout,
    hidden: HiddenGlobals,
    nil: Address,
) -> BuiltinReader | None:
    """The builtin reader for this R, or None when its code does not say where byte code
    runs (`hidden`: R_BCbody and R_BCpc) or which label is CALLBUILTIN."""
    bc_globals = hidden.bc_globals
    if bc_globals is None or not nil:
        return None
    label = opcode_labels(memory, binary).get("CALLBUILTIN")
    if label is None:
        return None
    return BuiltinReader(memory, layout, bc_globals=bc_globals, callbuiltin=label, nil=nil)
