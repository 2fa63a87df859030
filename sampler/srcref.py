"""Source lines of R frames, as R's line profiling (`Rprof(line.profiling = TRUE)`) reports them.

R's `doprof` writes, per sample, the line executing in the innermost function
(`R_getCurrentSrcref()`) and, after each frame's name, the srcref stored in that frame's
context: the place in the caller from which the function was called. A srcref becomes
`file#line` as in eval.c `lineprof()`: line = its first integer; file = the `filename`
variable of the environment in its `srcfile` attribute.

Where the srcref is:
- AST code: `cptr->srcref` (contexts) or the global `R_Srcref` (current) is the srcref.
- Byte code: both are the sentinel `R_InBCInterpreter`. The srcref is then entry
  `ltable[relpc]` of the constant pool of the body being run, where `ltable` is the INTSXP
  of class "srcrefsIndex" at the end of the pool and `relpc` is the interpreter's pc
  offset: the context's `relpc` (R >= 4.4, when > 0), or `*bcpc - codebase`. For the
  current line this needs the hidden globals `R_BCbody`/`R_BCpc` (sampler.decode); without
  them only the call sites are known.

The work is split as the stack reader splits it. `capture()` takes what changes as R runs,
as it was at the stop: three globals, the srcref nodes, the bodies' cells and the pc words.
It gets them from the stack reader's one-read snapshot (`plan_regions()` names the regions
the last samples needed, so the next snapshot copies them too) or, when the snapshot lacks
one, from a read while the target is still stopped. `finish()` runs after the target was
resumed and reads what cannot change while the frame lives (constant pools, location
tables, srcfile environments), with caches keyed so that a freed and reused address is not
mistaken for the old object: a body by (address, code, constants), a srcref by (address,
attributes, line).
"""

from __future__ import annotations

import ctypes
import struct
from array import array
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Optional
from typing import Union

from sampler.errors import SampleError
from sampler.layouts import BCODESXP
from sampler.layouts import CELL_SIZE
from sampler.layouts import ENVSXP
from sampler.layouts import INTSXP
from sampler.layouts import STRSXP
from sampler.layouts import TYPE_MASK
from sampler.layouts import VECSXP
from sampler.layouts import VECTOR_DATA
from sampler.layouts import ContextLayout
from sampler.model import SrcLoc
from sampler.procmem import Address
from sampler.procmem import ProcessMemory
from sampler.procmem import note_recent
from sampler.sexp import NODE
from sampler.sexp import instruction_offset
from sampler.sexp import is_plain_vector
from sampler.sexp import read_charsxp
from sampler.sexp import read_node
from sampler.sexp import read_vector
from sampler.sexp import vector_length
from sampler.symbols import RBinary

#: Reads regions as they were at the stop: bytes, or None where unreadable.
Fetch = Callable[[list[tuple[int, int]]], list[Optional[bytes]]]
#: Bytes a context was copied into (the stack reader's snapshot buffer or a bytes).
Blob = Union[bytes, bytearray, memoryview, "ctypes.Array[ctypes.c_char]"]

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_I32 = struct.Struct("<i")
_NODE = VECTOR_DATA + 8  # a srcref's header and its first two integers
_MAX_POOL = 1 << 20  # constant pools and location tables longer than this are corrupt
_MAX_CHAIN = 256  # bindings walked in one environment frame or hash bucket
_ACTIVE_BINDING = 1 << (8 + 15)  # gp bit 15 of sxpinfo
_EXTRA_SHIFT = 48  # sxpinfo.extra: nonzero marks an unboxed value in a binding cell
_RECENT = 48  # regions of earlier samples kept in the plan beyond this sample's
_TRIES_TO_DECIDE = 50  # lines in user functions without a location before saying "none"

# Kinds of a frame's srcref.
_NONE, _AST, _BC = 0, 1, 2


@dataclass
class _Site:
    """One location to resolve, as captured while the target was stopped."""

    kind: int = _NONE
    srcref: Address = 0  # AST: the srcref
    node: bytes | None = None  # AST: its header and first integers
    body: Address = 0  # BC: the body being run
    cell: bytes | None = None  # BC: the body's cell (type, code, constants)
    relpc: int = -1  # BC: the pc offset, when the context stores it
    pc: int = 0  # BC: *bcpc, when relpc is not stored


@dataclass
class RawLines:
    """What `capture()` copied: the current location, then each frame's call site."""

    sites: list[_Site] = field(default_factory=list)
    #: Per frame: whether its function was defined in the global environment (read only
    #: until `SrcrefReader.keeps_source` is known); empty when not read.
    user: list[bool] = field(default_factory=list)


@dataclass
class _Body:
    """A byte-code body's location table and constant pool (immutable while it lives)."""

    table: array[int]
    consts: array[int]
    resolved: dict[int, SrcLoc | None] = field(default_factory=dict)


def hashpjw(name: str) -> int:
    """R's `R_Newhashpjw`: the hash R files a symbol under in a hashed environment."""
    h = 0
    for byte in name.encode():
        signed = byte - 256 if byte >= 128 else byte  # C `char` is signed on x86_64
        h = ((h << 4) + signed) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
            h ^= g
    return h


class SrcrefReader:
    """Reads the source locations of sampled frames in one target process."""

    def __init__(
        self,
        memory: ProcessMemory,
        binary: RBinary,
        layout: ContextLayout,
        *,
        nil: Address,
        bc_globals: tuple[Address, Address] | None,
        symbol_name: Callable[[Address], str],
        setup_memory: ProcessMemory | None = None,
    ) -> None:
        """Read the constant globals (`R_InBCInterpreter`, the `srcfile` symbol) once.

        They are read through `setup_memory` when given: the sampler's `memory` is not safe
        to use from another thread while it samples.
        """
        self.memory = memory
        self.layout = layout
        self.nil = nil
        self.symbol_name = symbol_name
        syms = binary.symbols
        self.srcref_global: Address = syms.get("R_Srcref", 0)
        # R sets these up while it starts: a process attached that early still has zeros
        # there, so they are read again until all are set (see `_read_constants`).
        self._constant_addresses = [
            syms.get(name, 0)
            for name in ("R_NilValue", "R_InBCInterpreter", "R_SrcfileSymbol", "R_GlobalEnv")
        ]
        self.in_bc = self.srcfile_symbol = self.global_env = 0
        self._constants_ready = False
        self._read_constants(setup_memory or memory)
        #: Addresses of R_BCbody and R_BCpc; None when they could not be found in this build.
        self.bc_globals = bc_globals
        self.relpc_offset = layout.relpc
        globals_ = [self.srcref_global, *(bc_globals or ())]
        self._globals = [g for g in globals_ if g]
        self._bodies: dict[tuple[Address, Address, Address], _Body | None] = {}
        self._srcrefs: dict[tuple[Address, Address, int], SrcLoc | None] = {}
        self._filenames: dict[tuple[Address, Address, Address], str | None] = {}
        # Regions of the last samples (srcref nodes, body cells, pc words, functions), least
        # recently used first, for `plan_regions`; `plan_dirty` says they changed.
        self._recent: OrderedDict[tuple[Address, int], None] = OrderedDict()
        self.plan_dirty = False
        #: Lines looked up in functions defined in the global environment (user code, not
        #: packages), and how many of them had a source location.
        self.sites_tried = 0
        self.sites_found = 0
        self.errors = 0

    def _read_constants(self, memory: ProcessMemory) -> None:
        values = [_U64.unpack(memory.read(a, 8))[0] if a else 0 for a in self._constant_addresses]
        nil, self.in_bc, self.srcfile_symbol, self.global_env = values
        if nil:
            self.nil = nil
        self._constants_ready = all(values)

    @property
    def keeps_source(self) -> bool | None:
        """Whether the target's code carries source references (None: not seen enough yet).

        R keeps them only with `options(keep.source = TRUE)` (interactive R's default; not
        Rscript's) or, for packages, R_KEEP_PKG_SOURCE=yes. Judged from the lines running
        in functions defined in the global environment: installed packages never carry
        source references by default, so their frames say nothing about the user's code.
        """
        if self.sites_found:
            return True
        return None if self.sites_tried < _TRIES_TO_DECIDE else False

    # -- stopped half --------------------------------------------------------------------

    def _classify(self, srcref: Address, body: Address, relpc: int, bcpc: Address) -> _Site:
        if srcref == 0 or srcref == self.nil:
            return _Site()
        if srcref != self.in_bc:
            return _Site(_AST, srcref=srcref)
        if body == 0:
            return _Site()
        return _Site(_BC, body=body, relpc=relpc if relpc > 0 else -1, pc=bcpc)

    def plan_regions(self) -> list[tuple[Address, int]]:
        """Regions the next sample likely reads: the globals and the last samples' nodes.

        The stack reader copies them in its one read while the target is stopped, so that
        `capture()` can run from that copy after the target was resumed.
        """
        return [(g, 8) for g in self._globals] + list(reversed(self._recent))

    def _learn(self, regions: list[tuple[Address, int]], got: list[bytes | None]) -> None:
        """Remember the regions this sample read (and forget unreadable ones)."""
        recent = self._recent
        for region, data in zip(regions, got):
            if data is None and region in recent:
                del recent[region]
                self.plan_dirty = True
        readable = [region for region, data in zip(regions, got) if data is not None]
        if note_recent(recent, readable, len(regions) + _RECENT):
            self.plan_dirty = True

    def capture(self, contexts: Sequence[tuple[Blob, int]], fetch: Fetch | None = None) -> RawLines:
        """Copy the volatile parts of the current location and of each frame's call site.

        `contexts` are the frames' context bytes (blob, offset), innermost first. `fetch`
        gives the bytes of regions as they were at the stop (from the stack reader's copy,
        or read now while the target is still stopped); it may raise to say its copy lacks
        one. Without it, memory is read now: call while the target is stopped.
        """
        fetch = fetch or self.memory.read_many
        if not self._constants_ready:
            self._read_constants(self.memory)
            if not self._constants_ready:
                return RawLines([_Site() for _ in range(len(contexts) + 1)])
        layout = self.layout
        sites: list[_Site] = []
        # The current location: R_Srcref, or R_BCbody/R_BCpc inside byte code.
        regions = [(g, 8) for g in self._globals]
        values = fetch(regions)
        current = [_U64.unpack(v)[0] if v is not None else 0 for v in values]
        srcref = current[0] if self.srcref_global else 0
        if srcref == self.in_bc and self.bc_globals is None:
            sites.append(_Site())
        else:
            body, pc_at = (current[1], current[2]) if self.bc_globals else (0, 0)
            sites.append(self._classify(srcref, body, -1, pc_at))
        relpc_at = self.relpc_offset
        # Until a user function shows a location, keep checking which frames are user code.
        deciding = self.sites_found == 0 and self.global_env != 0
        funs: list[Address] = []
        for blob, offset in contexts:
            if deciding:
                funs.append(_U64.unpack_from(blob, offset + layout.callfun)[0])
            srcref = _U64.unpack_from(blob, offset + layout.srcref)[0]
            body = _U64.unpack_from(blob, offset + layout.bcbody)[0]
            bcpc = _U64.unpack_from(blob, offset + layout.bcpc)[0]
            relpc = -1 if relpc_at is None else _I64.unpack_from(blob, offset + relpc_at)[0]
            sites.append(self._classify(srcref, body, relpc, bcpc))
        # One batched read of everything the sites point at.
        wanted: list[tuple[Address, int]] = []
        for site in sites:
            if site.kind == _AST:
                wanted.append((site.srcref, _NODE))
            elif site.kind == _BC:
                wanted.append((site.body, CELL_SIZE))
                if site.relpc < 0:
                    wanted.append((site.pc, 8) if site.pc else (site.body, 8))
        # Whether each frame's function lives in the global environment (its CLOENV, TAG).
        wanted += [(fun, CELL_SIZE) for fun in funs]
        if wanted:
            results = fetch(wanted)
            self._learn(wanted, results)
            got = iter(results)
            for site in sites:
                if site.kind == _AST:
                    site.node = next(got)
                elif site.kind == _BC:
                    site.cell = next(got)
                    if site.relpc < 0:
                        word = next(got)
                        site.pc = _U64.unpack(word)[0] if word is not None and site.pc else 0
        user = []
        for _ in funs:
            cell = next(got)
            user.append(cell is not None and NODE.unpack(cell)[4] == self.global_env)
        return RawLines(sites, user)

    # -- running half --------------------------------------------------------------------

    def finish(self, raw: RawLines) -> tuple[SrcLoc | None, ...]:
        """The source location of each captured site (None where R would write none)."""
        locs: list[SrcLoc | None] = []
        for i, site in enumerate(raw.sites):
            try:
                loc = self._resolve(site)
            except SampleError:
                self.errors += 1
                loc = None
            # sites[i] is the line running in frame i; the current line (i = 0) of byte
            # code is knowable only with R_BCbody/R_BCpc.
            if i < len(raw.user) and raw.user[i] and (i or self.bc_globals or site.kind):
                self.sites_tried += 1
                if loc is not None:
                    self.sites_found += 1
            locs.append(loc)
        return tuple(locs)

    def _resolve(self, site: _Site) -> SrcLoc | None:
        if site.kind == _AST:
            return self._srcref_loc(site.srcref, site.node)
        if site.kind != _BC or site.cell is None:
            return None
        info, _, code, consts, _ = NODE.unpack(site.cell)
        if info & TYPE_MASK != BCODESXP:
            return None
        body = self._body(site.body, code, consts)
        if body is None:
            return None
        if site.relpc >= 0:
            relpc = site.relpc
        else:
            if not site.pc:
                return None
            relpc = instruction_offset(site.pc, code)
        if not 0 <= relpc < len(body.table):
            return None
        index = body.table[relpc]
        if not 0 <= index < len(body.consts):
            return None
        if index not in body.resolved:
            srcref = body.consts[index]
            loc = None
            if srcref != self.nil:
                loc = self._srcref_loc(srcref, self.memory.read(srcref, _NODE))
            body.resolved[index] = loc
        return body.resolved[index]

    def _srcref_loc(self, address: Address, node: bytes | None) -> SrcLoc | None:
        """`file#line` of the srcref at `address` whose header bytes are `node`."""
        if node is None or len(node) < _NODE:
            return None
        info = node[0]
        if not is_plain_vector(info, INTSXP) or vector_length(node) < 1:
            return None
        attrib = _U64.unpack_from(node, 8)[0]
        line = _I32.unpack_from(node, VECTOR_DATA)[0]
        key = (address, attrib, line)
        if key in self._srcrefs:
            return self._srcrefs[key]
        filename = self._filename(attrib)
        # The target ran while the attributes were followed: if the srcref was freed (its
        # function returned and was collected), what was read may be another object's.
        now = self.memory.read(address, _NODE)
        if now[0] != node[0] or now[8:16] != node[8:16] or now[VECTOR_DATA:] != node[VECTOR_DATA:]:
            return None
        loc = None if filename is None else (filename, line)
        self._srcrefs[key] = loc
        return loc

    def _filename(self, attrib: Address) -> str | None:
        """The `filename` in the srcfile environment among the attributes `attrib`."""
        env = 0
        node = attrib
        for _ in range(8):
            if not node or node == self.nil:
                break
            _, _, car, cdr, tag = read_node(self.memory, node)
            if tag == self.srcfile_symbol:
                env = car
                break
            node = cdr
        if not env:
            return None
        info, _, frame, _, hashtab = read_node(self.memory, env)
        if info & TYPE_MASK != ENVSXP:
            return None
        key = (env, frame, hashtab)
        if key not in self._filenames:
            self._filenames[key] = self._lookup_filename(frame, hashtab)
        return self._filenames[key]

    def _lookup_filename(self, frame: Address, hashtab: Address) -> str | None:
        if hashtab and hashtab != self.nil:
            header = self.memory.read(hashtab, VECTOR_DATA)
            size = vector_length(header)
            if header[0] & TYPE_MASK != VECSXP or not 0 < size <= _MAX_POOL:
                return None
            buckets = array("Q", self.memory.read(hashtab + VECTOR_DATA, 8 * size))
            first = hashpjw("filename") % size
            # The bucket R files it under first; then every bucket, in case of doubt.
            for chain in (buckets[first], *buckets):
                found = self._find_in_chain(chain)
                if found is not None:
                    return found[0]
            return None
        found = self._find_in_chain(frame)
        return found[0] if found is not None else None

    def _find_in_chain(self, node: Address) -> tuple[str | None] | None:
        """(value,) of the `filename` binding in the pairlist at `node`; None if absent."""
        for _ in range(_MAX_CHAIN):
            if not node or node == self.nil:
                return None
            info, _, value, cdr, tag = read_node(self.memory, node)
            if tag and tag != self.nil and self.symbol_name(tag) == "filename":
                if info >> _EXTRA_SHIFT or info & _ACTIVE_BINDING:
                    return (None,)
                return (self._first_string(value),)
            node = cdr
        return None

    def _first_string(self, value: Address) -> str | None:
        header = self.memory.read(value, VECTOR_DATA + 8)
        if not is_plain_vector(header[0], STRSXP) or vector_length(header) < 1:
            return None
        charsxp = _U64.unpack_from(header, VECTOR_DATA)[0]
        return read_charsxp(self.memory, charsxp, "surrogateescape")

    def _body(self, body: Address, code: Address, consts: Address) -> _Body | None:
        """The location table and constants of a byte-code body (cached; read once)."""
        key = (body, code, consts)
        if key in self._bodies:
            return self._bodies[key]
        info = self._read_body(code, consts)
        # The body was live when captured; if it changed since, what was read is not its.
        _, _, code_now, consts_now, _ = read_node(self.memory, body)
        if (code_now, consts_now) != (code, consts):
            return None
        self._bodies[key] = info
        return info

    def _vector(self, address: Address, kind: int, item: int) -> bytes | None:
        return read_vector(self.memory, address, kind, item, _MAX_POOL)

    def _read_body(self, code: Address, consts: Address) -> _Body | None:
        pool_bytes = self._vector(consts, VECSXP, 8)
        if pool_bytes is None:
            return None
        pool = array("Q", pool_bytes)
        table = self._find_table(pool)
        if table is None:
            return None
        table_bytes = self._vector(table, INTSXP, 4)
        if table_bytes is None:
            return None
        return _Body(array("i", table_bytes), pool)

    def _find_table(self, pool: array[int]) -> Address | None:
        """The last INTSXP of class "srcrefsIndex" in a constant pool (eval.c findLocTable).

        R searches the whole pool from its end; the compiler always appends its location
        tables last, so the search stops after the last 32 constants (a pool without one,
        from code compiled without srcrefs, is then rejected cheaply).
        """
        end = len(pool)
        floor = max(0, end - 32)
        while end > floor:
            start = max(floor, end - 16)
            candidates = list(reversed(pool[start:end]))
            heads = self.memory.read_many([(c, 16) for c in candidates])
            for candidate, head in zip(candidates, heads):
                if head is None or head[0] & TYPE_MASK != INTSXP:
                    continue
                attrib = _U64.unpack_from(head, 8)[0]
                if attrib and attrib != self.nil and self._has_class(attrib, "srcrefsIndex"):
                    return candidate
            end = start
        return None

    def _has_class(self, attrib: Address, wanted: str) -> bool:
        node = attrib
        for _ in range(8):
            if not node or node == self.nil:
                return False
            _, _, car, cdr, tag = read_node(self.memory, node)
            if tag and tag != self.nil and self.symbol_name(tag) == "class":
                classes = self._vector(car, STRSXP, 8)
                if classes is None:
                    return False
                return any(read_charsxp(self.memory, c) == wanted for c in array("Q", classes)[:8])
            node = cdr
        return False
