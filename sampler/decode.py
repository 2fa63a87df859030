"""Finding R's hidden globals by reading a few x86_64 instructions of exported functions.

R does not export `R_BCbody`/`R_BCpc` (where the byte-code interpreter is) nor, since R 4.5,
`R_gc_running` (whose one instruction names the `R_in_gc` flag). Exported functions that use
them do, and their code says where those globals are:

- `Rf_begincontext` copies `R_BCbody` and `R_BCpc` into the new context at the fixed offsets
  `bcbody`/`bcpc`. `find_bc_globals` follows the data flow of its straight-line code with a
  tiny symbolic executor: a register holds "the context", "the address G" (`lea G(%rip)`),
  or "the value of global G" (a load from such an address); a store of "the value of G" to
  context+bcbody means G is R_BCbody. Only the instruction forms seen in the Debian builds
  of R 4.0 to 4.6 are decoded (plain and SSE moves, lea, push, sub, call, endbr64); at the
  first other instruction the search stops and nothing is guessed.
- `R_gc` calls `R_gc_internal` first. That function sets `R_interrupts_suspended = TRUE`
  (BEGIN_SUSPEND_INTERRUPTS) and at once `R_in_gc = TRUE`, and tests `R_in_gc` on entry.
  `find_gc_flag` looks for exactly that: a GOT load of `R_interrupts_suspended`, `movl $1`
  through it, then `lea F(%rip); movl $1` through that, with F also read in the function's
  first instructions.

Every result is an address inside R's binary, checked against its writable segment by the
caller; anything unexpected returns None, and xrtop then does without.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from sampler.symbols import RBinary

Value = Optional[tuple[str, int]]  # ("ctx", 0), ("addr", G), ("val", G), ("got", slot) or unknown

_REGS_CLOBBERED_BY_CALL = (0, 1, 2, 6, 7, 8, 9, 10, 11)  # rax rcx rdx rsi rdi r8-r11
_RIP = -1


@dataclass(frozen=True)
class _Operand:
    """A decoded ModRM operand: a register (`reg`), or memory at base+disp (base -1: rip)."""

    is_reg: bool
    reg: int  # the ModRM reg field (with REX.R)
    base: int | None  # rm register or memory base (with REX.B); None with an index
    disp: int
    end: int  # offset just after the ModRM bytes and displacement


def _modrm(code: bytes, pos: int, rex: int) -> _Operand | None:
    """Decode the ModRM (and SIB/displacement) at `pos`."""
    if pos >= len(code):
        return None
    modrm = code[pos]
    mod, reg, rm = modrm >> 6, (modrm >> 3) & 7, modrm & 7
    reg |= (rex & 4) << 1
    pos += 1
    if mod == 3:
        return _Operand(True, reg, rm | ((rex & 1) << 3), 0, pos)
    base: int | None = rm | ((rex & 1) << 3)
    if rm == 4:  # SIB
        if pos >= len(code):
            return None
        sib = code[pos]
        pos += 1
        index = ((sib >> 3) & 7) | ((rex & 2) << 2)
        base = (sib & 7) | ((rex & 1) << 3)
        if index != 4:
            base = None  # an indexed address: not something this decoder tracks
        if sib & 7 == 5 and mod == 0:
            return None
    if mod == 0 and rm == 5:
        disp = struct.unpack_from("<i", code, pos)[0]
        return _Operand(False, reg, _RIP, disp, pos + 4)
    disp = 0
    if mod == 1:
        disp = struct.unpack_from("<b", code, pos)[0]
        pos += 1
    elif mod == 2:
        disp = struct.unpack_from("<i", code, pos)[0]
        pos += 4
    return _Operand(False, reg, base, disp, pos)


class _Machine:
    """Registers and context stores while running straight-line code symbolically."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.gpr: dict[int, Value] = {7: ("ctx", 0)}  # rdi holds the context on entry
        self.xmm: dict[int, tuple[Value, Value]] = {}
        #: context offset -> (value stored, size in bytes)
        self.stores: dict[int, tuple[Value, int]] = {}

    def address(self, op: _Operand, next_ip: int) -> Value:
        """What a memory operand addresses: a rip-relative constant or [reg + disp]."""
        if op.base == _RIP:
            return ("addr", self.start + next_ip + op.disp)
        if op.base is None:
            return None
        held = self.gpr.get(op.base)
        if held is None:
            return None
        if held[0] == "ctx":
            return ("ctxfield", op.disp)
        if held[0] == "addr" and op.disp == 0:
            return held
        return None

    def load(self, where: Value) -> Value:
        if where is None:
            return None
        if where[0] == "addr":
            return ("val", where[1])
        return None

    def store(self, where: Value, value: Value, size: int) -> None:
        if where is not None and where[0] == "ctxfield":
            self.stores[where[1]] = (value, size)


def run_straight_line(code: bytes, start: int, limit: int = 160) -> dict[int, tuple[Value, int]]:
    """Symbolically run `code` (loaded at `start`) from its entry; return its context stores.

    Stops at `ret`, at a jump, or at the first instruction form it does not know.
    """
    m = _Machine(start)
    pos = 0
    for _ in range(limit):
        if pos >= len(code):
            break
        if code.startswith(b"\xf3\x0f\x1e\xfa", pos):  # endbr64
            pos += 4
            continue
        op66 = f3 = False
        while pos < len(code) and code[pos] in (0x66, 0xF3):
            op66 |= code[pos] == 0x66
            f3 |= code[pos] == 0xF3
            pos += 1
        rex = 0
        if pos < len(code) and 0x40 <= code[pos] <= 0x4F:
            rex = code[pos] & 0xF
            pos += 1
        if pos >= len(code):
            break
        opcode = code[pos]
        pos += 1
        wide = bool(rex & 8)
        if opcode == 0xC3:
            break
        if 0x50 <= opcode <= 0x57:  # push
            continue
        if opcode == 0xE8:  # call rel32: caller-saved registers are lost
            pos += 4
            for reg in _REGS_CLOBBERED_BY_CALL:
                m.gpr.pop(reg, None)
            m.gpr[0] = None
            m.xmm.clear()
            continue
        if opcode == 0x83:  # add/sub r/m, imm8 (the stack pointer)
            op = _modrm(code, pos, rex)
            if op is None:
                break
            pos = op.end + 1
            if op.is_reg:
                m.gpr[op.base or 0] = None if op.base != 4 else m.gpr.get(4)
            continue
        if opcode in (0x89, 0x8B, 0x8D, 0xC7):
            op = _modrm(code, pos, rex)
            if op is None:
                break
            pos = op.end
            if opcode == 0xC7:  # mov r/m, imm32
                imm = struct.unpack_from("<i", code, pos)[0]
                pos += 4
                if not op.is_reg:
                    m.store(m.address(op, pos), ("imm", imm), 8 if wide else 4)
                else:
                    m.gpr[op.base or 0] = ("imm", imm)
                continue
            size = 8 if wide else (2 if op66 else 4)
            if opcode == 0x8D:  # lea
                m.gpr[op.reg] = m.address(op, pos) if not op.is_reg else None
                if op.base == _RIP:
                    m.gpr[op.reg] = ("addr", start + pos + op.disp)
            elif opcode == 0x8B:  # mov reg, r/m
                if op.is_reg:
                    m.gpr[op.reg] = m.gpr.get(op.base or 0) if wide else None
                elif op.base == _RIP and wide:
                    m.gpr[op.reg] = ("got", start + pos + op.disp)
                else:
                    m.gpr[op.reg] = m.load(m.address(op, pos)) if size in (4, 8) else None
                    if size == 4 and m.gpr[op.reg] is not None:
                        loaded = m.gpr[op.reg]
                        m.gpr[op.reg] = ("val32", loaded[1]) if loaded else None
            else:  # 0x89: mov r/m, reg
                if op.is_reg:
                    m.gpr[op.base or 0] = m.gpr.get(op.reg) if wide else None
                else:
                    m.store(m.address(op, pos), m.gpr.get(op.reg), size)
            continue
        if opcode == 0x0F and pos < len(code):
            op2 = code[pos]
            pos += 1
            op = _modrm(code, pos, rex)
            if op is None:
                break
            pos = op.end
            lo, hi = m.xmm.get(op.reg, (None, None))
            if op2 == 0x7E and f3 and not op.is_reg:  # movq xmm, m64
                m.xmm[op.reg] = (m.load(m.address(op, pos)), None)
            elif op2 == 0x16 and not op66 and not f3 and not op.is_reg:  # movhps xmm, m64
                m.xmm[op.reg] = (lo, m.load(m.address(op, pos)))
            elif op2 == 0x11 and not op66 and not f3 and not op.is_reg:  # movups m128, xmm
                where = m.address(op, pos)
                m.store(where, lo, 8)
                if where is not None and where[0] == "ctxfield":
                    m.stores[where[1] + 8] = (hi, 8)
            elif op2 == 0xD6 and op66 and not op.is_reg:  # movq m64, xmm
                m.store(m.address(op, pos), lo, 8)
            elif op2 in (0x6E, 0x62, 0xEF, 0x7E):  # movd, punpckldq, pxor: values we drop
                if op2 == 0x7E and op66 and op.is_reg:
                    m.gpr[op.base or 0] = None
                else:
                    m.xmm[op.reg] = (None, None)
            else:
                break
            continue
        break  # an instruction this decoder does not know: stop, guess nothing
    return m.stores


def find_bc_globals(code: bytes, start: int, bcbody: int, bcpc: int) -> tuple[int, int] | None:
    """(address of R_BCbody, address of R_BCpc) from the code of `Rf_begincontext`."""
    stores = run_straight_line(code, start)
    body, pc = stores.get(bcbody), stores.get(bcpc)
    if body is None or pc is None or body[1] != 8 or pc[1] != 8:
        return None
    if body[0] is None or pc[0] is None or body[0][0] != "val" or pc[0][0] != "val":
        return None
    if body[0][1] == pc[0][1]:
        return None
    return body[0][1], pc[0][1]


_MOVL_1_RAX = b"\xc7\x00\x01\x00\x00\x00"  # movl $1,(%rax)
_LEA_RAX = b"\x48\x8d\x05"  # lea d32(%rip),%rax
_MOV_GOT_RAX = b"\x48\x8b\x05"  # mov d32(%rip),%rax


def first_call_target(code: bytes, start: int) -> int | None:
    """The target of the first `call rel32` in the prologue of a tiny wrapper like `R_gc`."""
    pos = 4 if code.startswith(b"\xf3\x0f\x1e\xfa") else 0
    # R_gc: sub $8,%rsp; xor %edi,%edi; movl $2,X(%rip); call R_gc_internal
    for _ in range(8):
        if pos >= len(code):
            return None
        if code[pos] == 0xE8:
            return start + pos + 5 + int(struct.unpack_from("<i", code, pos + 1)[0])
        if code.startswith(b"\x48\x83\xec", pos):
            pos += 4
        elif code.startswith(b"\x31\xff", pos) or code.startswith(b"\x33\xff", pos):
            pos += 2
        elif code.startswith(b"\xc7\x05", pos):
            pos += 10
        elif code.startswith(b"\xbf", pos):
            pos += 5
        else:
            return None
    return None


def find_gc_flag(
    code: bytes, start: int, got_points_to_suspended: Callable[[int], bool]
) -> int | None:
    """The address of `R_in_gc` from the code of `R_gc_internal` (see the module doc).

    `got_points_to_suspended(slot)` says whether the GOT slot at runtime address `slot`
    holds the address of `R_interrupts_suspended`.
    """
    found: set[int] = set()
    pos = code.find(_MOVL_1_RAX)
    while pos >= 0:
        lea = pos + len(_MOVL_1_RAX)
        if code.startswith(_LEA_RAX, lea) and code.startswith(_MOVL_1_RAX, lea + 7) and pos >= 7:
            # The GOT load of R_interrupts_suspended into rax comes just before, possibly
            # with the old value saved in between (`mov (%rax),%r15d`).
            for back in range(7, 17):
                if pos - back >= 0 and code.startswith(_MOV_GOT_RAX, pos - back):
                    disp = struct.unpack_from("<i", code, pos - back + 3)[0]
                    slot = start + pos - back + 7 + disp
                    if got_points_to_suspended(slot):
                        flag = start + lea + 7 + struct.unpack_from("<i", code, lea + 3)[0]
                        found.add(flag)
                    break
        pos = code.find(_MOVL_1_RAX, pos + 1)
    if len(found) != 1:
        return None
    flag = found.pop()
    # R_gc_internal starts with `if (!R_GCEnabled || R_in_gc)`: the flag is read early.
    head = code[:192]
    for i in range(2, len(head) - 4):
        if head[i - 1] & 0xC7 == 0x05 and head[i - 2] in (0x8B, 0x8D, 0x83, 0x39, 0x3B):
            if start + i + 4 + struct.unpack_from("<i", head, i)[0] == flag:
                return flag
            if head[i - 2] == 0x83 and start + i + 5 + struct.unpack_from("<i", head, i)[0] == flag:
                return flag
    return None


@dataclass(frozen=True)
class HiddenGlobals:
    """Addresses of R globals that R does not export, where this build's code gives them."""

    bc_body: int | None = None
    bc_pc: int | None = None
    gc_flag: int | None = None

    @property
    def bc_globals(self) -> tuple[int, int] | None:
        """(R_BCbody, R_BCpc), or None."""
        if self.bc_body is None or self.bc_pc is None:
            return None
        return self.bc_body, self.bc_pc


def _segment_bytes(elf: ELFFile, vaddr: int, size: int) -> bytes:
    for segment in elf.iter_segments():
        if (
            segment["p_type"] == "PT_LOAD"
            and segment["p_vaddr"] <= vaddr < segment["p_vaddr"] + segment["p_filesz"]
        ):
            elf.stream.seek(segment["p_offset"] + vaddr - segment["p_vaddr"])
            available = segment["p_vaddr"] + segment["p_filesz"] - vaddr
            return bytes(elf.stream.read(min(size, available)))
    return b""


def find_hidden_globals(
    binary: RBinary,
    bcbody_offset: int,
    bcpc_offset: int,
    read_pointer: Callable[[int], int | None],
    *,
    want_gc: bool = True,
) -> HiddenGlobals:
    """Decode R_BCbody/R_BCpc and (if `want_gc`) R_in_gc from R's code; None where unsure.

    `read_pointer(address)` reads 8 bytes of the target (for its GOT); x86_64 only.
    """
    if binary.machine != "EM_X86_64":
        return HiddenGlobals()
    try:
        with open(binary.opened_as, "rb") as stream:
            return _decode_elf(
                ELFFile(stream), binary, bcbody_offset, bcpc_offset, read_pointer, want_gc
            )
    except (OSError, ELFError, struct.error):
        return HiddenGlobals()


def _decode_elf(
    elf: ELFFile,
    binary: RBinary,
    bcbody_offset: int,
    bcpc_offset: int,
    read_pointer: Callable[[int], int | None],
    want_gc: bool,
) -> HiddenGlobals:
    # Symbols and small functions' code come from the attach-time pass over .dynsym
    # (sampler.symbols); only R_gc_internal, a local function, is read from the file here.
    writable = [
        (int(s["p_vaddr"]) + binary.bias, int(s["p_vaddr"] + s["p_memsz"]) + binary.bias)
        for s in elf.iter_segments()
        if s["p_type"] == "PT_LOAD" and s["p_flags"] & 2
    ]

    def plausible(address: int | None) -> bool:
        return address is not None and any(lo <= address < hi for lo, hi in writable)

    bc_body = bc_pc = gc_flag = None
    begin = binary.symbols.get("Rf_begincontext")
    begin_code = binary.code.get("Rf_begincontext")
    if begin is not None and begin_code:
        found_bc = find_bc_globals(begin_code, begin, bcbody_offset, bcpc_offset)
        if found_bc is not None and all(plausible(a) for a in found_bc):
            bc_body, bc_pc = found_bc
    gc_entry = binary.symbols.get("R_gc")
    gc_code = binary.code.get("R_gc")
    suspended = binary.symbols.get("R_interrupts_suspended")
    if want_gc and gc_entry is not None and gc_code and suspended is not None:
        internal = first_call_target(gc_code, gc_entry)
        if internal is not None:

            def got_holds_suspended(slot: int) -> bool:
                return plausible(slot) and read_pointer(slot) == suspended

            code = _segment_bytes(elf, internal - binary.bias, 16384)
            flag = find_gc_flag(code, internal, got_holds_suspended)
            if plausible(flag) and flag != suspended:
                gc_flag = flag
    return HiddenGlobals(bc_body, bc_pc, gc_flag)
