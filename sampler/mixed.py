"""Mixed stacks: R's frames and native frames in one stack, in call order (`--native`).

Pure logic, no I/O: how native frames are spelled in a `Stack` (and so in every file), which
of them are R's evaluator, and where each R frame goes among the native frames.

Spelling. A native frame is the name `<Native:LABEL>`, LABEL being the function's symbol
(`Rf_eval`, `my_c_fun`) or, without one, `library+0xOFFSET` (`libR.so+0x15a330`: the
address in the file's own ELF address space, never a bare address). R's summaryRprof and
profvis read such names as any other function's. `<Native:[unwinding stopped]>` marks where
the unwinder gave up: the R frames after it ran in native frames it could not find.

Interleaving. An R frame's context (RCNTXT) is a local variable of the C function that runs
the call (`applyClosure`, `R_execClosure`, `do_eval`...), so when it lies on the C stack its
address falls in exactly one native frame's slice of the stack, [its callee's CFA, its own
CFA): that native frame opened the R frame, and every native frame inside it runs on the R
frame's behalf. From R 4.4 closures called from byte code keep their contexts on R's node
stack instead; such a frame is run by the byte-code interpreter's activation (`bcEval`)
between the neighbouring C-stack contexts (the outermost one there, where the names say;
else beside the outer neighbour).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from sampler.model import NATIVE_PREFIX
from sampler.model import Stack

#: Where files that name a native frame's library (speedscope, pprof) put a frame whose
#: label is a symbol, of a library not known.
NATIVE_MAPPING = "[native]"
#: Where unwinding gave up: the outer R frames follow native frames that are not shown.
UNWIND_STOPPED = "<Native:[unwinding stopped]>"

#: R's evaluator and its start-up: the C functions that run R code rather than do the work
#: (eval.c, context.c, main.c, objects.c of R 4.0-4.6; the static ones are named only where
#: libR keeps its symbol table or a debug file is installed). Hidden unless asked for.
EVALUATOR_FUNCTIONS = frozenset(
    {
        # eval.c: evaluation, closures, promises, byte code
        "Rf_eval",
        "eval",
        "bcEval",
        "bcEval_loop",
        "R_execClosure",
        "applyClosure",
        "Rf_applyClosure",
        "R_execMethod",
        "forcePromise",
        "R_forcePromise",
        "R_forceAndCall",
        "evalList",
        "Rf_evalList",
        "evalListKeepMissing",
        "Rf_evalListKeepMissing",
        "promiseArgs",
        "Rf_promiseArgs",
        "do_begin",
        "do_if",
        "do_for",
        "do_while",
        "do_repeat",
        "do_return",
        "do_internal",
        "do_eval",
        "do_withVisible",
        "do_recall",
        "Rf_DispatchOrEval",
        "DispatchOrEval",
        "Rf_DispatchAnyOrEval",
        "DispatchAnyOrEval",
        "Rf_DispatchGroup",
        "DispatchGroup",
        "R_possible_dispatch",
        # objects.c: S3 and S4 dispatch
        "dispatchMethod",
        "usemethod",
        "Rf_usemethod",
        "do_usemethod",
        "do_nextmethod",
        "do_standardGeneric",
        "R_dispatchGeneric",
        # context.c, errors.c: top-level and protected evaluation
        "R_ToplevelExec",
        "R_tryEval",
        "R_tryEvalSilent",
        "R_tryCatch",
        "R_withCallingErrorHandler",
        "R_ExecWithCleanup",
        "R_UnwindProtect",
        # main.c and the process's start
        "Rf_ReplIteration",
        "R_ReplDLLdo1",
        "R_ReplConsole",
        "R_ReplFile",
        "run_Rmainloop",
        "Rf_mainloop",
        "main",
        "__libc_start_call_main",
        "__libc_start_main",
        "__libc_start_main_impl",
        "_start",
    }
)
#: How R's own library's frames without a symbol are labelled.
_R_LIBRARY = "libR.so+"
#: The byte-code interpreter's activations, which run node-stack contexts (R >= 4.4).
_BYTECODE_LOOPS = frozenset({"bcEval", "bcEval_loop"})


def native_name(label: str) -> str:
    """The frame name of a native function labelled `label` (a symbol or `lib+0xOFF`)."""
    return f"{NATIVE_PREFIX}{label}>"


def is_native(name: str) -> bool:
    """Whether the frame name `name` is a native frame's (`native_name`)."""
    return name.startswith(NATIVE_PREFIX) and name.endswith(">")


def native_label(name: str) -> str:
    """The label of a native frame's name (`native_name(label)` -> `label`)."""
    return name[len(NATIVE_PREFIX) : -1]


def native_library(label: str) -> str:
    """The library a native frame's label names (`libR.so+0x1a2b` -> `libR.so`); "" for a
    label that is a symbol."""
    library, plus, offset = label.rpartition("+0x")
    return library if plus and offset and all(c in "0123456789abcdef" for c in offset) else ""


def is_evaluator(name: str) -> bool:
    """Whether `name` is a native frame of R's evaluator (EVALUATOR_FUNCTIONS)."""
    return is_native(name) and native_label(name) in EVALUATOR_FUNCTIONS


def shown(names: Sequence[str], *, native: bool, evaluator: bool) -> list[int]:
    """The indices of `names` (innermost first) to show: native frames only with
    `native`, and the evaluator's only with `evaluator` too.

    Besides EVALUATOR_FUNCTIONS, the evaluator's are: frames in R's own library without a
    symbol (a stripped libR names only its API: its static evaluator functions are
    `libR.so+0x...`) outside the innermost R frame, where they can only be R running R
    code; and the unwinding marker when it is outermost (only R's start-up is missing).
    """
    if native and evaluator:
        return list(range(len(names)))
    kinds = [_KINDS.get(name) or _kind(name) for name in names]
    if not native:
        return [i for i, kind in enumerate(kinds) if kind == _R_FRAME]
    first_r = kinds.index(_R_FRAME) if _R_FRAME in kinds else len(names)
    last = len(names) - 1
    return [
        i
        for i, kind in enumerate(kinds)
        if kind <= _OTHER_NATIVE
        or (kind == _R_UNNAMED and i < first_r)
        or (kind == _STOPPED and i != last)
    ]


#: What `shown` needs to know of a frame name (never 0: `_KINDS.get(name) or ...`).
_R_FRAME, _OTHER_NATIVE, _EVALUATOR, _R_UNNAMED, _STOPPED = range(1, 6)
#: Each name's kind, as `_kind` found it (the names of a session recur in every sample).
_KINDS: dict[str, int] = {}
_MAX_KINDS = 1 << 16


def _kind(name: str) -> int:
    """The kind of frame `name` is, for `shown` (remembered in `_KINDS`)."""
    if not is_native(name):
        kind = _R_FRAME
    elif native_label(name) in EVALUATOR_FUNCTIONS:
        kind = _EVALUATOR
    elif name == UNWIND_STOPPED:
        kind = _STOPPED
    elif native_label(name).startswith(_R_LIBRARY):
        kind = _R_UNNAMED
    else:
        kind = _OTHER_NATIVE
    if len(_KINDS) >= _MAX_KINDS:
        _KINDS.clear()
    _KINDS[name] = kind
    return kind


@dataclass(frozen=True)
class FrameChoice:
    """Which frames of a mixed stack to count (`Aggregate`'s `frames`): native frames with
    `native`, the evaluator's with `evaluator` too (`shown`)."""

    native: bool = True
    evaluator: bool = False

    def __call__(self, stack: Stack) -> Stack:
        """`stack` with only the chosen frames (itself when it has no native frame)."""
        names = stack.names
        keep = shown(names, native=self.native, evaluator=self.evaluator)
        if len(keep) == len(names):
            return stack
        sites = stack.sites
        return Stack(
            tuple(names[i] for i in keep),
            (*(sites[i] for i in keep), sites[-1]) if sites else (),
            gc=stack.gc,
            idle=stack.idle,
        )


#: One entry of an interleaved stack: (True, i) is native frame i, (False, k) R frame k;
#: (True, -1) is the marker where unwinding stopped.
Slot = tuple[bool, int]


def interleave(
    r_contexts: Sequence[int],
    native_cfas: Sequence[int],
    native_names: Sequence[str],
    c_stack: tuple[int, int],
    *,
    complete: bool,
) -> list[Slot]:
    """R frames and native frames in call order, innermost first.

    `r_contexts`: each R frame's context address, innermost first (0: unknown). Native
    frame i (innermost first) has canonical frame address `native_cfas[i]` (ascending) and
    name `native_names[i]` (`native_name`). `c_stack`: the C stack's [low, high) (a context
    elsewhere is on R's node stack). `complete`: whether unwinding reached the outermost
    native frame; if not, the marker follows the last native frame found.
    """
    count = len(native_cfas)
    low, high = c_stack
    # The native frame that runs each R frame (count: one beyond the frames found), for
    # contexts on the C stack; None for the others, placed between their neighbours.
    owner: list[int | None] = [
        bisect.bisect_right(native_cfas, address) if low <= address < high else None
        for address in r_contexts
    ]
    placed: list[int] = []
    inner = -1  # the owner of the nearest inner R frame
    k = 0
    while k < len(owner):
        found = owner[k]
        if found is not None:
            inner = max(inner, found)  # an outer frame never runs inside an inner one
            placed.append(inner)
            k += 1
            continue
        end = k
        while end < len(owner) and owner[end] is None:
            end += 1
        next_owner = owner[end] if end < len(owner) else None
        outer = max(inner, count if next_owner is None else next_owner)
        loops = [
            i
            for i in range(inner + 1, min(outer, count))
            if native_label(native_names[i]) in _BYTECODE_LOOPS
        ]
        inner = loops[-1] if loops else outer
        placed.extend([inner] * (end - k))
        k = end
    # Each R frame goes just inside the native frame that runs it (`placed` ascends); the
    # native frames between, by slices of `_native_slots`: a stack has ~40-140 of them.
    natives = _native_slots(count)
    slots: list[Slot] = []
    done = 0
    marked = complete
    for k, runs_it in enumerate(placed):
        if runs_it > done:
            slots += natives[done:runs_it]
            done = runs_it
        if done == count and not marked:
            slots.append(_MARKER)
            marked = True
        slots.append((False, k))
    slots += natives[done:]
    if not marked:
        slots.append(_MARKER)
    return slots


_MARKER: Slot = (True, -1)
#: `(True, i)` for each native frame i seen so far (as many as the deepest stack has).
_NATIVE_SLOTS: list[Slot] = []


def _native_slots(count: int) -> list[Slot]:
    """`[(True, 0), ..., (True, count - 1)]`."""
    if len(_NATIVE_SLOTS) < count:
        _NATIVE_SLOTS.extend((True, i) for i in range(len(_NATIVE_SLOTS), count))
    return _NATIVE_SLOTS[:count]
