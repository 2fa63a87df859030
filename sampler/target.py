"""Attaching to an R process: checks, version detection, layout choice, and its verification.

`inspect_process` answers "can this PID be profiled at all" with a precise error;
`attach` locates R, detects its version, chooses and verifies the context layout, and
returns a `Target` ready for sampling. Neither stops the target.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Literal

from sampler.builtins import builtin_reader
from sampler.chain import RawSample
from sampler.decode import HiddenGlobals
from sampler.decode import find_hidden_globals
from sampler.doctor import missing_process_hint
from sampler.doctor import permission_error
from sampler.errors import NoSuchProcessError
from sampler.errors import NotRProcessError
from sampler.errors import PermissionDeniedError
from sampler.errors import SampleError
from sampler.errors import UnsupportedRError
from sampler.errors import UsageError
from sampler.layouts import CTXT_FUNCTION
from sampler.layouts import LISTSXP
from sampler.layouts import NILSXP
from sampler.layouts import TYPE_MASK
from sampler.layouts import ContextLayout
from sampler.layouts import layout_for
from sampler.procmem import LiveMemory
from sampler.procstat import EXITED_STATES
from sampler.procstat import PF_KTHREAD
from sampler.procstat import read_stat
from sampler.rstack import StackReader
from sampler.spans import SpanBounds
from sampler.spans import SpanPlan
from sampler.spans import span_bounds
from sampler.srcref import SrcrefReader
from sampler.symbols import RBinary
from sampler.symbols import find_r_mapping
from sampler.symbols import load_r_binary
from sampler.symbols import mapping_at
from sampler.symbols import read_maps
from sampler.symbols import resolve_in_root


@dataclass(frozen=True)
class ProcessInfo:
    """What /proc says about a process, read once at attach."""

    pid: int
    name: str
    cmdline: tuple[str, ...]
    uid: int
    start_ticks: int
    other_mount_ns: bool

    @property
    def script(self) -> str:
        """The R script for `Rscript file.R` (`--file=file.R`), else the command line."""
        for arg in self.cmdline:
            if arg.startswith("--file="):
                return arg.removeprefix("--file=")
        return " ".join(self.cmdline) or self.name


def parse_pid(text: str) -> int:
    """A PID from the command line; raise UsageError when it is not a positive number."""
    try:
        pid = int(text, 10)
    except ValueError:
        raise UsageError(
            f"'{text}' is not a process ID", "Give a number, e.g. xrtop 1234."
        ) from None
    if pid <= 0:
        raise UsageError(f"{pid} is not a valid process ID", "Process IDs are positive numbers.")
    return pid


def inspect_process(pid: int) -> ProcessInfo:
    """Check that `pid` is a live user-space process (not a thread); describe it."""
    try:
        stat = read_stat(pid)
        status = Path(f"/proc/{pid}/status").read_text() if stat is not None else ""
    except (FileNotFoundError, ProcessLookupError):  # (the second: exiting as it is read)
        stat = None
    except PermissionError:
        raise permission_error(pid, "cannot read /proc entries of") from None
    if stat is None:
        raise NoSuchProcessError(f"no process with PID {pid}", missing_process_hint())
    tgid = int(re.search(r"^Tgid:\s*(\d+)", status, re.M)[1])  # type: ignore[index]
    if tgid != pid:
        raise NoSuchProcessError(
            f"{pid} is a thread of process {tgid}, not a process",
            f"Profile the process instead: xrtop {tgid}",
        )
    if stat.flags & PF_KTHREAD:
        raise NotRProcessError(f"{pid} is a kernel thread, not an R process")
    if stat.state in EXITED_STATES:
        raise NoSuchProcessError(f"process {pid} has exited (it is a zombie)")
    name = re.search(r"^Name:\s*(.*)$", status, re.M)[1]  # type: ignore[index]
    uid = int(re.search(r"^Uid:\s*\d+\s+(\d+)", status, re.M)[1])  # type: ignore[index]
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cmdline = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    except OSError:
        cmdline = ()
    try:
        other_ns = os.stat(f"/proc/{pid}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        other_ns = False
    return ProcessInfo(pid, name, cmdline, uid, stat.start, other_ns)


_VERSION = re.compile(r"^Version:\s*(\d+)\.(\d+)(?:\.(\d+))?", re.M)


def _read_c_string(memory: LiveMemory, address: int, limit: int = 4096) -> str:
    data = memory.read_upto(address, limit)
    return data.split(b"\0", 1)[0].decode(errors="replace")


def detect_version(
    pid: int, memory: LiveMemory, binary: RBinary
) -> tuple[tuple[int, int, int], str]:
    """R's version in the target and where it was read; raise UnsupportedRError if unknown.

    Reads `R_Home` from the target, then `library/base/DESCRIPTION` under the target's own
    root; falls back to R_HOME from its environment and to the directory of libR.so.
    """
    homes: list[tuple[str, str]] = []
    home_ptr = binary.symbols.get("R_Home")
    if home_ptr:
        try:
            pointer = struct.unpack("<Q", memory.read(home_ptr, 8))[0]
            if pointer:
                homes.append((_read_c_string(memory, pointer), "R_Home"))
        except SampleError:
            pass
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        for entry in environ:
            if entry.startswith(b"R_HOME="):
                homes.append((entry[7:].decode(errors="replace"), "R_HOME in the environment"))
    except OSError:
        pass
    homes.append((os.path.dirname(os.path.dirname(binary.path)), "the libR.so path"))
    tried = []
    for home, source in homes:
        if not home.startswith("/"):
            continue
        try:
            path = resolve_in_root(pid, home + "/library/base/DESCRIPTION")
            text = Path(path).read_text(errors="replace")
        except OSError:
            tried.append(home)
            continue
        m = _VERSION.search(text)
        if m:
            return (int(m[1]), int(m[2]), int(m[3] or 0)), f"{home} (from {source})"
    raise UnsupportedRError(
        f"cannot tell which R version process {pid} runs (no base DESCRIPTION under "
        f"{', '.join(tried) or 'R_HOME'})",
        "Give it with --force-version X.Y (e.g. --force-version 4.3).",
    )


def decode_gc_flag(binary: RBinary) -> int | None:
    """The address of R's `R_in_gc` flag, decoded from the exported `R_gc_running`.

    Accepts the instruction shapes compilers emit for `return R_in_gc;` (x86_64:
    `mov eax,[rip+d]` or `lea rax,[rip+d]; mov eax,[rax]`, with an optional endbr64;
    aarch64: `adrp x0; ldr w0,[x0,#lo12]`). Returns None for anything else: no guessing.
    """
    code = binary.code.get("R_gc_running")
    start = binary.symbols.get("R_gc_running")
    if not code or start is None:
        return None
    if binary.machine == "EM_X86_64":
        pos = 4 if code.startswith(b"\xf3\x0f\x1e\xfa") else 0
        if code[pos : pos + 2] == b"\x8b\x05" and code[pos + 6] == 0xC3:
            disp = int(struct.unpack_from("<i", code, pos + 2)[0])
            return start + pos + 6 + disp
        if code[pos : pos + 3] == b"\x48\x8d\x05" and code[pos + 7 : pos + 10] == b"\x8b\x00\xc3":
            disp = int(struct.unpack_from("<i", code, pos + 3)[0])
            return start + pos + 7 + disp
        return None
    if binary.machine == "EM_AARCH64" and len(code) >= 12:
        adrp, ldr, ret = struct.unpack_from("<3I", code)
        if adrp & 0x9F00001F == 0x90000000 and ldr & 0xFFC003FF == 0xB9400000 and ret == 0xD65F03C0:
            immlo = (adrp >> 29) & 3
            immhi = (adrp >> 5) & 0x7FFFF
            imm = (immhi << 2) | immlo
            if imm & (1 << 20):
                imm -= 1 << 21
            page = (start & ~0xFFF) + (imm << 12)
            return int(page + ((ldr >> 10) & 0xFFF) * 4)
    return None


@dataclass
class Target:
    """An R process ready to be sampled."""

    info: ProcessInfo
    binary: RBinary
    version: tuple[int, int, int]
    version_source: str
    layout: ContextLayout
    memory: LiveMemory
    reader: StackReader
    gc_available: bool
    #: Hidden globals decoded from R's code (R_BCbody/R_BCpc for lines, R_in_gc on 4.5+).
    hidden: HiddenGlobals = field(default_factory=HiddenGlobals)
    #: Where R's code is mapped: (start address, device, inode); a forked child that maps
    #: it identically is the same R (`attach_clone`).
    mapping: tuple[int, tuple[int, int], int] = (0, (0, 0), 0)

    def set_lines(self, on: bool) -> SrcrefReader | None:
        """Start or stop reading source lines with each sample; returns the line reader.

        Off by default: without lines a sample costs no extra reads. Safe to call from any
        thread, also while the sampler thread runs (it picks the change up next sample).
        """
        reader = self.reader
        if not on:
            reader.lines = None
            return None
        if reader.lines is None:
            reader.lines = SrcrefReader(
                self.memory,
                self.binary,
                self.layout,
                nil=reader.nil,
                bc_globals=self.hidden.bc_globals,
                symbol_name=reader.symbol_name,
                setup_memory=LiveMemory(self.pid, scratch_size=64),
            )
        return reader.lines

    def set_native(self, on: bool, *, evaluator: bool = False) -> None:
        """Start or stop unwinding native frames with each stopped sample (`--native`),
        keeping R's evaluator frames with `evaluator`; raise UsageError off x86-64. Call
        before sampling starts."""
        from sampler.nativecapture import NativeFrames  # pyelftools' DWARF only when asked

        reader = self.reader
        if reader.native is not None:
            reader.native.close()
        reader.native = NativeFrames(self.pid, reader.spans, evaluator=evaluator) if on else None

    @property
    def keeps_source(self) -> bool | None:
        """Whether R's code carries source references (None: unknown, or lines are off)."""
        return self.reader.lines.keeps_source if self.reader.lines is not None else None

    @property
    def pid(self) -> int:
        """The target's PID (in xrtop's PID namespace)."""
        return self.info.pid

    @property
    def version_text(self) -> str:
        """The version as R prints it, e.g. "4.2.2"."""
        return ".".join(map(str, self.version))

    def alive(self) -> bool:
        """Whether the same process still runs (not exited, not a zombie, PID not reused)."""
        try:
            stat = read_stat(self.pid)
        except OSError:
            return False
        return (
            stat is not None
            and stat.state not in EXITED_STATES
            and stat.start == self.info.start_ticks
        )


def parse_version(text: str) -> tuple[int, int, int]:
    """ "4.3" or "4.3.1" as a tuple; raise UsageError otherwise."""
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not m:
        raise UsageError(f"--force-version wants X.Y (e.g. 4.3), not '{text}'")
    return int(m[1]), int(m[2]), int(m[3] or 0)


def _pointer_reader(memory: LiveMemory) -> Callable[[int], int | None]:
    """Reads one pointer of the target's memory (None where it cannot be read)."""

    def read_pointer(address: int) -> int | None:
        try:
            return int(struct.unpack("<Q", memory.read(address, 8))[0])
        except SampleError:
            return None

    return read_pointer


def attach(pid: int, *, force_version: str | None = None, validate_each: bool = False) -> Target:
    """Locate R in `pid` and pick its layout; raise an XrtopError when impossible.

    The layout is verified against live stacks by the sampler (`verify_layout`), which can
    stop the target for it.
    """
    info = inspect_process(pid)
    try:
        maps = read_maps(pid)
    except PermissionDeniedError:
        raise permission_error(pid, "cannot read the memory map of") from None
    binary = load_r_binary(pid, maps)
    memory = LiveMemory(pid)
    if force_version is not None:
        version, source = parse_version(force_version), "--force-version"
    else:
        try:
            version, source = detect_version(pid, memory, binary)
        except UnsupportedRError:
            raise
        except SampleError as err:
            if err.kind == "permission":
                raise permission_error(pid, "cannot read the memory of") from None
            raise
    layout = layout_for(version[:2], binary.machine)
    gc_flag = decode_gc_flag(binary)
    read_pointer = _pointer_reader(memory)

    hidden = find_hidden_globals(
        binary, layout.bcbody, layout.bcpc, read_pointer, want_gc=gc_flag is None
    )
    if gc_flag is None:
        gc_flag = hidden.gc_flag  # R >= 4.5 hides R_gc_running: found through R_gc instead
    mapping = find_r_mapping(pid, maps)
    return _ready_target(
        info,
        binary,
        (version, source),
        (mapping.start, mapping.device, mapping.inode),
        layout,
        memory,
        hidden,
        gc_flag,
        validate_each,
    )


def attach_clone(parent: Target, pid: int) -> Target:
    """A forked child of `parent`: the same R at the same addresses, so the parent's
    binary, version, layout and decoded globals serve it unchanged (nothing is looked up
    again); only its memory and stack reader are its own. Raise NotRProcessError unless its
    R code is mapped exactly where the parent's is (it exec'd something else), and
    NoSuchProcessError when it is gone."""
    info = inspect_process(pid)
    if not maps_r_at(pid, parent.mapping):
        raise NotRProcessError(f"process {pid} does not map R where its parent {parent.pid} does")
    spans = parent.reader.spans
    return _ready_target(
        info,
        parent.binary,
        (parent.version, parent.version_source),
        parent.mapping,
        parent.layout,
        LiveMemory(pid),
        parent.hidden,
        parent.reader.gc_flag,
        parent.reader.validate,
        spans.bounds if spans is not None else None,
        parent,
    )


def maps_r_at(pid: int, mapping: tuple[int, tuple[int, int], int]) -> bool:
    """Whether process `pid` maps R's code exactly as `mapping` (`Target.mapping`) says:
    true of a fork of the process it was read from, until it execs something."""
    mine = mapping_at(pid, mapping[0])
    return mine is not None and (mine.start, mine.device, mine.inode, mine.offset) == (*mapping, 0)


def _ready_target(
    info: ProcessInfo,
    binary: RBinary,
    version_and_source: tuple[tuple[int, int, int], str],
    mapping: tuple[int, tuple[int, int], int],
    layout: ContextLayout,
    memory: LiveMemory,
    hidden: HiddenGlobals,
    gc_flag: int | None,
    validate_each: bool,
    bounds: SpanBounds | Literal["find"] | None = "find",
    parent: Target | None = None,
) -> Target:
    """The `Target` of process `info.pid` once its R is known: its stack reader made, with
    spans at `bounds` (found in the process unless given: a fork's are its parent's) and
    builtin frames read as in `parent` when it is a fork of that process."""
    pid = info.pid
    version, source = version_and_source
    read_pointer = _pointer_reader(memory)

    try:
        reader = StackReader(
            memory, binary, layout, version[:2], gc_flag=gc_flag, validate=validate_each
        )
    except SampleError as err:
        if err.kind == "permission":
            raise permission_error(pid, "cannot read the memory of") from None
        raise NoSuchProcessError(f"process {pid} went away while attaching ({err})") from None
    parent_builtins = parent.reader.builtins if parent is not None else None
    if parent is None:
        reader.builtins = builtin_reader(memory, binary, layout, hidden, reader.nil)
    elif parent_builtins is not None:
        reader.builtins = parent_builtins.for_fork(memory)
    if bounds == "find":
        bounds = span_bounds(pid, binary.symbols, read_pointer, version[:2], reader.globals_span())
    if bounds is not None:
        reader.spans = SpanPlan(
            pid, bounds, layout, version[:2], reader.namer.names, reader.namer.compound_names
        )
    return Target(
        info,
        binary,
        version,
        source,
        layout,
        memory,
        reader,
        gc_flag is not None,
        hidden,
        mapping,
    )


def layout_discriminator(target: Target, depth: int = 8) -> bool | None:
    """Whether the 4.4 layout boundary checks out on the current stack (None: no frames).

    The word after `bcpc` is `relpc` (a small byte-code offset, or -1) from R 4.4 on, and
    `handlerstack` (a pointer to R_NilValue or a pairlist) before: a 4.4 layout on an older R,
    or the reverse, shows here even though calls and names would read fine. Call it while
    the target is stopped.
    """
    layout = target.layout
    offset = layout.bcpc + 8
    memory = target.memory
    reader = target.reader
    address = reader.read_globals()[0]
    verdicts: list[bool] = []
    for _ in range(depth):
        if not address:
            break
        data = memory.read(address, offset + 8)
        nxt, flag = struct.unpack_from("<Qi", data)
        word = struct.unpack_from("<q", data, offset)[0]
        if flag & CTXT_FUNCTION:  # made by begincontext, which sets this word
            if layout.relpc is not None:
                verdicts.append(-1 <= word < 1 << 24)
            else:
                pointer = word & 0xFFFFFFFFFFFFFFFF
                kind = memory.read_many([(pointer, 1)])[0] if pointer >= 1 << 12 else None
                verdicts.append(kind is not None and kind[0] & TYPE_MASK in (NILSXP, LISTSXP))
        address = nxt
    return all(verdicts) if verdicts else None


def verify_layout(
    target: Target,
    capture: Callable[[], tuple[RawSample, bool | None]] | None = None,
    *,
    attempts: int = 40,
) -> None:
    """Check the chosen layout against live stacks; raise UnsupportedRError if it fails.

    `capture` takes one validated sample and the `layout_discriminator` verdict while the
    target is stopped (the sampler thread passes one that stops it). Without it the target
    is read running, and a sample whose chain head moved while it was read proves nothing
    either way. A few stacks must show closure frames with a call, a closure and an
    environment where the layout says, and the 4.4 boundary must check out; an idle R
    (empty stack) passes.
    """
    reader = target.reader
    saved = reader.validate
    reader.validate = True
    good = bad = 0
    try:
        for _ in range(attempts):
            try:
                if capture is not None:
                    raw, boundary_ok = capture()
                else:
                    raw = reader.capture()
                    boundary_ok = layout_discriminator(target)
                    if reader.read_globals()[0] != raw.head:
                        continue  # moved while read: proves nothing
            except SampleError as err:
                if err.kind == "exited":
                    raise NoSuchProcessError(
                        f"process {target.pid} exited while attaching"
                    ) from None
                if err.kind == "permission":
                    raise permission_error(target.pid, "cannot read the memory of") from None
                if capture is not None or reader.read_globals()[0] == reader.last_head:
                    bad += 1
            else:
                if boundary_ok is False:
                    bad += 1
                elif raw.frames:
                    good += 1
                    if good >= 3:
                        return
            time.sleep(0.002)
    finally:
        reader.validate = saved
    if bad > attempts // 2 and good == 0:
        how = (
            "forced"
            if target.version_source == "--force-version"
            else f"detected from {target.version_source}"
        )
        raise UnsupportedRError(
            f"the memory layout for R {target.version_text} ({how}) does not check out in "
            f"process {target.pid}; xrtop will not print garbage",
            "If the version is wrong, give the right one with --force-version X.Y.",
        )
