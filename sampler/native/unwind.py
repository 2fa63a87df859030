"""Unwinding x86-64 native stacks from a copy of the registers and of the stack.

The copy is taken while the thread is stopped (PTRACE_GETREGS and one read of the stack
from sp); `NativeUnwinder.unwind` runs later, on the copy alone, while the target runs on.
Each frame is found with the DWARF CFI of the module its pc is in (.eh_frame, else
.debug_frame), or by following the frame pointer (rbp) where no CFI covers the pc.
Everything learned about a pc (module, symbol, rule) is cached, so a stack seen before
costs a few dictionary look-ups per frame.
"""

from __future__ import annotations

import os

from sampler.errors import UsageError
from sampler.errors import XrtopError
from sampler.native.cfi import AT_EXPRESSION
from sampler.native.cfi import IN_REGISTER
from sampler.native.cfi import IS_CFA
from sampler.native.cfi import IS_EXPRESSION
from sampler.native.cfi import SAME
from sampler.native.cfi import UNDEFINED
from sampler.native.cfi import CfiError
from sampler.native.cfi import FrameRule
from sampler.native.expression import ExpressionError
from sampler.native.expression import StackBytes
from sampler.native.expression import StackEnds
from sampler.native.expression import evaluate
from sampler.native.expression import read_word
from sampler.native.frames import NativeFrame
from sampler.native.frames import NativeStack
from sampler.native.modules import Module
from sampler.native.modules import ModuleMap
from sampler.native.registers import DWARF_NAMES
from sampler.native.registers import RBP
from sampler.native.registers import RIP
from sampler.native.registers import RSP
from sampler.native.registers import Registers
from sampler.native.registers import from_user_regs

#: Functions where a thread's stack begins: unwinding ends after them, complete. gdb,
#: too, stops at main (the executable's: a library may have a function of that name).
OUTERMOST = frozenset({"main", "_start", "__clone", "__clone3", "clone", "clone3", "start_thread"})
#: Bounds on what is cached per unwinder (entries; cleared when full).
_MAX_CACHED_PCS = 1 << 16
_MAX_OUTSIDE_PCS = 1 << 12
_MAX_CACHED_FRAMES = 1 << 14
_UNKNOWN_7_TO_11 = (None,) * 5
_MASK = 0xFFFFFFFFFFFFFFFF
_UNKNOWN5 = (None,) * 5


class _Step:
    """What is known about one pc: its module, symbol, and how to find its caller."""

    __slots__ = (
        "function_start",
        "module",
        "outermost",
        "problem",
        "rule",
        "symbol",
        "symbol_offset",
    )

    def __init__(
        self,
        module: Module,
        symbol: str | None,
        symbol_offset: int,
        rule: FrameRule | None,
        function_start: int | None,
        problem: str,
    ) -> None:
        self.module = module
        self.symbol = symbol
        self.symbol_offset = symbol_offset
        self.rule = rule
        #: The start (ELF address) of the FDE that covers the pc, None without one.
        self.function_start = function_start
        #: Why the rule is unusable ("" when it is fine or absent).
        self.problem = problem
        #: Whether the thread's stack begins in this function.
        self.outermost = symbol in OUTERMOST and (symbol != "main" or module.is_executable)


class _NoCfa(Exception):
    """No rule finds this frame's CFA or its caller; the message says why."""


def _why(err: Exception, frame: NativeFrame) -> str:
    """The reason a stack ends at `frame` because of `err`."""
    if isinstance(err, StackEnds):
        return f"stack copy ends at {err.address:#x}"
    if isinstance(err, ExpressionError):
        return f"in {frame.label()}: {err}"
    return str(err)


class _Stop(Exception):
    """Unwinding ends here: `complete` and the reason."""

    def __init__(self, complete: bool, reason: str) -> None:
        super().__init__(reason)
        self.complete = complete
        self.reason = reason


def check_platform(machine: str | None = None) -> None:
    """Raise UsageError unless native unwinding works on this machine (x86-64 only)."""
    machine = machine or os.uname().machine
    if machine != "x86_64":
        raise UsageError(
            f"native frames can be unwound on x86-64 only, not on {machine}",
            "Profile without --native on this machine.",
        )


class NativeUnwinder:
    """Unwinds the native stacks of process `pid` (x86-64), one sample at a time.

    Not thread-safe: one unwinder per sampling thread. Call `close()` when done.
    """

    def __init__(self, pid: int, *, max_frames: int = 512) -> None:
        """Read the target's memory map; raise UsageError off x86-64, or the errors of
        `sampler.symbols.read_maps` (no such process, no permission)."""
        check_platform()
        self.pid = pid
        self.max_frames = max_frames
        self.modules = ModuleMap(pid)
        self._steps: dict[int, _Step] = {}
        #: Frames made, and their labels, by (pc, cfa, the address its step was found at).
        self._frames: dict[tuple[int, int, int], tuple[NativeFrame, str]] = {}
        #: pcs found in no mapped file since the map last changed.
        self._outside: set[int] = set()
        #: Whether this unwind has read the map again already.
        self._refreshed = False
        #: The stack the last unwind read, in the order read: (start, end, frames), where
        #: `frames` is how many of its frames stand if those bytes were not the stack's
        #: (the frame whose caller they gave, and the inner ones).
        self.reads: list[tuple[int, int, int]] = []
        #: The labels (`NativeFrame.label`) of the frames the last unwind found, in order.
        self.labels: list[str] = []
        self._derefs: list[int] = []

    def close(self) -> None:
        """Close every file the unwinder opened."""
        self.modules.close()

    def unwind(self, regs: bytes, stack: StackBytes, stack_address: int) -> NativeStack:
        """The native stack of a stopped thread, from copies of its registers and stack.

        `regs`: `struct user_regs_struct` as PTRACE_GETREGS returns it (Tracer.registers());
        `stack`: the thread's stack from `stack_address` (at most sp; sp - 128 takes the
        red zone too) up to wherever the copy ends. Never raises for what it finds in the
        copy: where unwinding gives up, the stack says why.
        """
        registers = from_user_regs(regs)
        frames: list[NativeFrame] = []
        self._refreshed = False
        self.reads = []
        self.labels = []
        try:
            self._walk(registers, stack, stack_address, frames)
        except _Stop as stop:
            return NativeStack(tuple(frames), stop.complete, stop.reason)
        raise AssertionError("the walk ends with _Stop")  # pragma: no cover

    def _walk(
        self, registers: Registers, stack: StackBytes, base: int, frames: list[NativeFrame]
    ) -> None:
        """Append frames (their labels to `labels`) until a _Stop says why no more follow.

        A frame of a plain rule (`FrameRule.plain`: most frames) is unwound here, written
        out: this loop runs for each of a sample's 40-140 native frames; others by
        `_general`.
        """
        exact = True  # the innermost pc is the instruction itself, not a return address
        steps, known, reads, labels = self._steps, self._frames, self.reads, self.labels
        size, max_frames = len(stack), self.max_frames
        while True:
            pc = registers[RIP]
            if not pc:
                raise _Stop(True, "outermost frame (return address 0)")
            if len(frames) >= max_frames:
                raise _Stop(False, f"more than {max_frames} frames")
            address = pc if exact else pc - 1  # a return address may follow a noreturn call
            step = steps.get(address) or self._step(address)
            if step is None:
                frames.append(NativeFrame(pc, 0, "", None, pc))
                labels.append(frames[-1].label())
                raise _Stop(False, f"pc {pc:#x} is in no mapped file")
            rule = step.rule
            value = registers[rule.cfa_register] if rule is not None and rule.plain else None
            if rule is None or value is None:
                registers = self._general(step, pc, address, registers, stack, base, frames)
                exact = rule is not None and rule.signal_frame
                continue
            cfa = (value + rule.cfa_offset) & _MASK
            frame, label = known.get((pc, cfa, address)) or self._frame(step, pc, address, cfa)
            frames.append(frame)
            labels.append(label)
            if step.outermost:
                raise _Stop(True, f"outermost frame ({step.symbol})")
            words = rule.load_words
            at = cfa + rule.load_from - base
            reads.append((base + at, base + at + words.size, len(frames)))
            if at < 0 or at + words.size > size:
                ends = StackEnds(base + (at if at < 0 else max(at, size)))
                raise _Stop(False, _why(ends, frame))
            caller = rule.pick((*registers, None, cfa, *words.unpack_from(stack, at)))
            sp = registers[RSP]
            if sp is not None and cfa <= sp:
                raise _Stop(False, f"stack does not grow at {label} (a loop?)")
            exact = rule.signal_frame
            registers = caller

    def _general(
        self,
        step: _Step,
        pc: int,
        address: int,
        registers: Registers,
        stack: StackBytes,
        base: int,
        frames: list[NativeFrame],
    ) -> Registers:
        """Append the frame at `pc` found by any rule, or by the frame pointer; return its
        caller's registers, or raise _Stop where unwinding ends."""
        try:
            cfa = self._cfa(step, registers, stack, base, len(frames))
        except (StackEnds, ExpressionError, _NoCfa) as err:
            frame, label = self._frame(step, pc, address, 0)
            frames.append(frame)
            self.labels.append(label)
            raise _Stop(False, _why(err, frame)) from None
        frame, label = self._frame(step, pc, address, cfa)
        frames.append(frame)
        self.labels.append(label)
        if step.outermost:
            raise _Stop(True, f"outermost frame ({step.symbol})")
        try:
            caller = self._caller(step, registers, cfa, stack, base, len(frames))
        except (StackEnds, ExpressionError, _NoCfa) as err:
            raise _Stop(False, _why(err, frame)) from None
        if caller is None:
            raise _Stop(True, f"outermost frame ({label}: return address undefined)")
        sp = registers[RSP]
        if sp is not None and cfa <= sp:
            raise _Stop(False, f"stack does not grow at {label} (a loop?)")
        return caller

    def _frame(self, step: _Step, pc: int, address: int, cfa: int) -> tuple[NativeFrame, str]:
        """The frame at `pc`, whose step was looked up at `address`, and its label (frames
        are immutable: the outer ones of a stack recur sample after sample, made once)."""
        key = (pc, cfa, address)
        known = self._frames.get(key)
        if known is not None:
            return known
        module = step.module
        if step.symbol is not None:
            offset = step.symbol_offset + pc - address
            frame = NativeFrame(pc, cfa, module.path, step.symbol, offset)
        elif step.function_start is not None:  # all pcs of an unnamed function: one label
            frame = NativeFrame(pc, cfa, module.path, None, step.function_start)
        else:
            frame = NativeFrame(pc, cfa, module.path, None, module.elf_address(pc))
        if len(self._frames) >= _MAX_CACHED_FRAMES:
            self._frames.clear()
        known = self._frames[key] = (frame, frame.label())
        return known

    def _step(self, address: int) -> _Step | None:
        """What is known about `address` (cached); None when it is in no mapped file."""
        step = self._steps.get(address)
        if step is not None:
            return step
        module = self._module(address)
        if module is None:
            return None
        elf_address = module.elf_address(address)
        problem = module.problem
        fde = None
        if not problem:
            try:
                fde = module.fde_at(elf_address)
            except CfiError as err:
                problem = f"unreadable CFI in {module.name}: {err}"
        rule = fde.rule_at(elf_address) if fde is not None else None
        found = module.symbols.lookup(elf_address)
        if rule is not None and rule.signal_frame:
            # A signal trampoline is entered by a "return" to its first byte: pc - 1 is the
            # padding its CFI covers (for that reason), but its name starts at pc.
            found = module.symbols.lookup(elf_address + 1) or found
        symbol, offset = (found[0], elf_address - found[1]) if found else (None, 0)
        step = _Step(module, symbol, offset, rule, fde.start if fde is not None else None, problem)
        if len(self._steps) >= _MAX_CACHED_PCS:
            self._steps.clear()
        self._steps[address] = step
        return step

    def _module(self, address: int) -> Module | None:
        """The module holding `address`; for an address in none, the map is read again
        (a library loaded since), at most once per unwind and once per such address."""
        module = self.modules.find(address)
        if module is not None or address in self._outside or self._refreshed:
            return module
        self._refreshed = True
        try:
            changed = self.modules.refresh()
        except XrtopError:
            return None
        if changed:
            self._steps.clear()
            self._frames.clear()
            self._outside.clear()
        module = self.modules.find(address)
        if module is None:
            if len(self._outside) >= _MAX_OUTSIDE_PCS:
                self._outside.clear()
            self._outside.add(address)
        return module

    def _cfa(
        self, step: _Step, registers: Registers, stack: StackBytes, base: int, frames: int
    ) -> int:
        """This frame's CFA: by its CFI rule, else by the frame pointer (rbp + 16). Stack
        words an expression reads go to `reads`, with `frames` (the frames found so far).

        Raise _NoCfa when neither applies, StackEnds or ExpressionError from an expression.
        """
        rule = step.rule
        if rule is None:
            rbp, sp = registers[RBP], registers[RSP]
            if rbp is None or sp is None or rbp < sp or rbp & 7:
                why = f" ({step.problem})" if step.problem else ""
                name = step.symbol or step.module.name
                raise _NoCfa(f"no CFI for {name}{why} and no frame pointer to follow")
            return rbp + 16
        if rule.cfa_expression is not None:
            return self._evaluate(rule.cfa_expression, registers, stack, base, (), frames)
        value = registers[rule.cfa_register] if 0 <= rule.cfa_register <= RIP else None
        if value is None:
            name = DWARF_NAMES[rule.cfa_register] if 0 <= rule.cfa_register <= RIP else "?"
            raise _NoCfa(f"the CFA register {name} is not known at {step.module.name}")
        return (value + rule.cfa_offset) & 0xFFFFFFFFFFFFFFFF

    def _caller(
        self, step: _Step, registers: Registers, cfa: int, stack: StackBytes, base: int, frames: int
    ) -> Registers | None:
        """The caller's registers (None: this is the outermost frame, by its CFI). The stack
        it reads goes to `reads`, with `frames` (the frames found so far, this one too).

        Raise StackEnds for a read outside the copy, ExpressionError, _NoCfa.
        """
        caller = _callee_saved(registers)
        rule = step.rule
        if rule is None:  # the frame pointer: [rbp] is the caller's rbp, then its pc
            self.reads.append((cfa - 16, cfa, frames))
            caller[RBP] = read_word(stack, base, cfa - 16)
            caller[RIP] = read_word(stack, base, cfa - 8)
            caller[RSP] = cfa
            return caller
        if rule.loads:
            at = cfa + rule.load_from - base
            words = rule.load_words
            self.reads.append((at + base, at + base + words.size, frames))
            if at < 0:
                raise StackEnds(cfa + rule.load_from)
            if at + words.size > len(stack):
                raise StackEnds(base + max(at, len(stack)))
            values = words.unpack_from(stack, at)
            for number, index in rule.loads:
                caller[number] = values[index]
        for number, (kind, arg) in rule.others:
            if kind == IS_CFA:
                caller[number] = cfa + arg  # type: ignore[operator]
            elif kind == SAME:
                caller[number] = registers[number]
            elif kind == IN_REGISTER:
                caller[number] = registers[arg] if isinstance(arg, int) and arg <= RIP else None
            elif kind == UNDEFINED:
                caller[number] = None
                if number == RIP:
                    return None
            elif isinstance(arg, bytes):
                value = self._evaluate(arg, registers, stack, base, (cfa,), frames)
                if kind == AT_EXPRESSION:
                    self.reads.append((value, value + 8, frames))
                    value = read_word(stack, base, value)
                caller[number] = value
                assert kind in (AT_EXPRESSION, IS_EXPRESSION)
        if caller[RIP] is None:
            raise _NoCfa(f"no rule for the return address at {step.module.name}")
        caller[RSP] = cfa
        return caller

    def _evaluate(
        self,
        code: bytes,
        registers: Registers,
        stack: StackBytes,
        base: int,
        initial: tuple[int, ...],
        frames: int,
    ) -> int:
        """`evaluate`, the words it reads noted in `reads` with `frames`."""
        derefs = self._derefs
        derefs.clear()
        try:
            return evaluate(code, registers, stack, base, initial, derefs)
        finally:
            self.reads += [(address, address + 8, frames) for address in derefs]


def _callee_saved(r: Registers) -> list[int | None]:
    """The caller's registers as far as the callee leaves them: the callee-saved ones
    (rbx, rbp, r12-r15) kept, the rest unknown until a rule says otherwise."""
    return [None, None, None, r[3], None, None, r[6], *_UNKNOWN_7_TO_11, *r[12:16], None]
