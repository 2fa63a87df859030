"""Reading R's call stack out of another process: the stack reader, which composes the rooms.

A sample has two halves, so the target is stopped as briefly as possible (the stopping
itself is sampler.capture's):

- While the target is stopped, everything that can change once R runs on is copied: the
  context chain (C-stack locals), the call objects of function contexts, and the heads of
  calls that are not plain symbols (`pkg::f`, `x$f`, `x[["f"]]`). The fast path does only
  `snapshot()` here: one `process_vm_readv` of the regions the last samples needed
  (sampler.snapplan), and `snapshot_complete()`, which either recognises a stack seen
  lately (sampler.knownstacks) or checks that the copy holds the whole chain.
  `capture()` is the complete version, which also reads on the spot what the copy lacks.
- After the target was resumed, `decode_snapshot()` follows the chain through the copy
  (sampler.chain), which is ours, so it still shows the stack at the stop, and gives up
  when the copy lacks a region; `finish()` turns symbol addresses into names
  (sampler.framenames). Reading names while R runs is sound because R never frees or
  changes a symbol or its name (CHARSXP); the names are cached by address for the life of
  the target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sampler.builtins import BuiltinReader
from sampler.builtins import CurrentBuiltin
from sampler.chain import Bytes
from sampler.chain import ChainDecoder
from sampler.chain import Finder
from sampler.chain import RawSample
from sampler.chain import SnapshotMiss
from sampler.framenames import FrameNamer
from sampler.framenames import RawFrame
from sampler.knownstacks import KnownStack
from sampler.knownstacks import KnownStacks
from sampler.layouts import ContextLayout
from sampler.model import SrcLoc
from sampler.model import Stack
from sampler.procmem import Address
from sampler.procmem import ProcessMemory
from sampler.procmem import ScatterPlan
from sampler.sexp import I32
from sampler.sexp import U64
from sampler.snapplan import SnapshotPlanner
from sampler.spans import SpanPlan
from sampler.srcref import SrcrefReader
from sampler.symbols import RBinary

if TYPE_CHECKING:
    from sampler.nativecapture import NativeFrames

#: Globals further apart than this are not read as one span.
_SPAN_LIMIT = 1 << 16


class StackReader:
    """Reads and names R stacks in one target process."""

    def __init__(
        self,
        memory: ProcessMemory,
        binary: RBinary,
        layout: ContextLayout,
        version: tuple[int, int],
        *,
        gc_flag: Address | None = None,
        validate: bool = False,
    ) -> None:
        """Read the constant globals (R_NilValue, the operator symbols) once."""
        self.memory = memory
        self.layout = layout
        self.version = version
        #: Check the types R guarantees for closure frames in each sample (layout checks).
        self.validate = validate
        syms = binary.symbols
        self.global_context: Address = syms["R_GlobalContext"]
        self.gc_flag = gc_flag
        self.nil, operators, bracket2 = _constant_symbols(memory, binary)
        self.namer = FrameNamer(
            memory, version, nil=self.nil, operators=operators, bracket2=bracket2
        )
        self._globals_span = _span([self.global_context, gc_flag])
        # Where R_GlobalContext and the GC flag sit in a read of the globals' span.
        span_start = self._globals_span[0] if self._globals_span else self.global_context
        self._head_at = self.global_context - span_start
        self._gc_at = gc_flag - span_start if gc_flag else -1
        self._known = KnownStacks(self._head_at)
        self._planner = SnapshotPlanner(
            memory,
            layout.size,
            layout.call,
            self._globals_span or (self.global_context, 8),
            self._known,
            links_readable=self._globals_span is not None,
        )
        self._decoder = ChainDecoder(
            memory,
            layout,
            self.namer,
            global_context=self.global_context,
            gc_flag=gc_flag,
            globals_span=self._globals_span,
            read_globals=self.read_globals,
        )
        # The last snapshot: the plan it was read with (decoding may make a new plan for
        # the next sample; the bytes stay in this one), that plan's chain and links, and
        # the known stack `snapshot_complete` found in it (checked while stopped, used after).
        self._snapped: ScatterPlan | None = None
        self._snapped_contexts: frozenset[Address] = frozenset()
        self._snapped_links = self._planner.plan_links
        self._recognised_in_snapshot: KnownStack | None = None
        #: R_GlobalContext at the last sample.
        self.last_head: Address = 0
        #: Samples decoded as a stack seen lately, without walking the chain.
        self.recognised = 0
        #: Reads made by `warm()` (while R runs, so not part of any sample's stop).
        self.warmed = 0
        #: Reads source lines when set (`sampler.target.Target.set_lines`); None: no lines.
        self.lines: SrcrefReader | None = None
        #: Copies a stopped sample as spans of R's stacks (`snapshot_at`); None: R does not
        #: say where they are (set by `sampler.target.attach`).
        self.spans: SpanPlan | None = None
        self._builtins: BuiltinReader | None = None
        self._builtin: CurrentBuiltin | None = None
        #: Copies and unwinds native frames with each stopped sample (`--native`; set by
        #: `sampler.target.Target.set_native`); None: R's frames only.
        self.native: NativeFrames | None = None

    @property
    def builtins(self) -> BuiltinReader | None:
        """Recovers the builtin byte code calls (`sampler.builtins`; set by
        `sampler.target.attach`); None: not in this R. `read_builtin` keeps its find for the
        sample decoded next."""
        return self._builtins

    @builtins.setter
    def builtins(self, reader: BuiltinReader | None) -> None:
        """Use `reader`; the snapshot plan copies the pc words it needs (R < 4.4)."""
        self._builtins = reader
        self._planner.pc_words = reader.pc_words if reader is not None else None
        self._planner.plan = None

    def globals_span(self) -> tuple[Address, int]:
        """The span of R's globals a snapshot reads first (R_GlobalContext and the GC flag)."""
        return self._globals_span or (self.global_context, 8)

    def symbol_name(self, symbol: Address) -> str:
        """The name of the symbol at `symbol` (read once, then cached)."""
        return self.namer.symbol_name(symbol)

    def read_globals(self) -> tuple[Address, bool]:
        """(R_GlobalContext, in GC) now."""
        span = self._globals_span
        memory = self.memory
        if span is not None:
            data = memory.read(span[0], span[1])
            context = U64.unpack_from(data, self._head_at)[0]
            in_gc = bool(self.gc_flag) and I32.unpack_from(data, self._gc_at)[0] != 0
            return context, in_gc
        context = U64.unpack(memory.read(self.global_context, 8))[0]
        in_gc = bool(self.gc_flag) and I32.unpack(memory.read(self.gc_flag or 0, 4))[0] != 0
        return context, in_gc

    # -- stopped half --------------------------------------------------------------------

    def snapshot(self) -> int:
        """Copy what the next sample likely needs, in one read. Call while stopped.

        Returns the byte count to pass to `decode_snapshot()` once the target runs again.
        """
        return self._read_plan()

    def snapshot_at(self, sp: Address) -> int:
        """Copy the whole stack as spans (`sampler.spans`), R stopped with stack pointer
        `sp`. Call while stopped; returns the byte count for `decode_snapshot()`."""
        spans = self.spans
        assert spans is not None
        self._snapped = spans
        self._recognised_in_snapshot = None
        return spans.copy(sp)

    def read_builtin(self) -> None:
        """Copy which builtin R's byte code calls now, for the sample decoded next (see
        `sampler.builtins`). Call while stopped, after the snapshot."""
        self._builtin = self._builtins.capture() if self._builtins is not None else None

    def _take_builtin(self, at: Finder, chain: list[Address]) -> RawFrame | None:
        """The builtin frame `read_builtin` found for this sample of `chain`, if any."""
        current, self._builtin = self._builtin, None
        if current is None or self._builtins is None:
            return None
        return self._builtins.frame(current, at, chain)

    def warm(self) -> None:
        """Run `snapshot()` and `snapshot_complete()` once while the target runs, discarding
        the result, so the stopped half that follows finds everything in the CPU's caches.

        Sound while R runs: it only reads (a torn copy is fine, it is thrown away), and the
        next `snapshot()` overwrites the buffer it used.
        """
        self.warmed += 1
        self.snapshot_complete(self._read_plan())

    def _read_plan(self) -> int:
        planner = self._planner
        if planner.unlearned is not None:
            planner.learn(self.lines)  # normally done by `finish()`, after the target resumed
        plan = planner.plan
        if plan is None:
            plan = planner.plan = planner.make_plan(self.lines)
        self._snapped = plan
        self._snapped_contexts = planner.plan_contexts
        self._snapped_links = planner.plan_links
        self._recognised_in_snapshot = None
        return plan.read()

    def snapshot_complete(self, got: int) -> bool:
        """Whether the last snapshot holds everything `decode_snapshot()` needs.

        Call while the target is still stopped: when it says no, `decode_stopped()` reads
        the rest before the target runs on, so every sample shows the stack at the moment
        of its stop (sampling again later instead would favour what runs after rare stacks
        over the rare stacks themselves).
        """
        plan = self._snapped
        if plan is None or self.validate or self.lines is not None:
            return False  # lines need reads that follow the chain: decode while stopped
        spans = self.spans
        if spans is not None and plan is spans:
            return spans.complete  # checked by the copy itself
        links = self._snapped_links  # (`_find_known` written out: once per sample, stopped)
        if links is not None:
            same = self._recognised_in_snapshot = self._known.find(plan, links, got)
            if same is not None:
                return True
        return self._decoder.complete(plan, got)

    def _find_known(self, plan: ScatterPlan, got: int) -> KnownStack | None:
        """The known stack the snapshot of `got` bytes in `plan` shows, if any."""
        links = self._snapped_links
        if links is None:
            return None
        return self._known.find(plan, links, got)

    def decode_stopped(self, got: int) -> RawSample:
        """Decode the last snapshot, reading what it lacks now. Call while stopped."""
        return self._decode(got, live=True)

    def capture(self) -> RawSample:
        """Copy the current stack's volatile parts. Call while the target is stopped."""
        return self._decode(self._read_plan(), live=True)

    def set_recheck_head(self, on: bool) -> None:
        """Make every snapshot read R_GlobalContext again at its end, for sampling without
        stopping R (see `snapshot_torn`)."""
        self._planner.recheck_head = on
        self._planner.plan = None

    def snapshot_torn(self, got: int) -> bool | None:
        """Whether R_GlobalContext changed while the last snapshot was read (with
        `recheck_head`); None when the snapshot lacks its second look at it."""
        plan = self._snapped
        span = self._globals_span
        if plan is None or span is None or not plan.trailing_offsets:
            return None
        again = plan.trailing_offsets[0]
        if again + span[1] > got:
            return None
        where = self._head_at
        buf = plan.buffer
        return bool(U64.unpack_from(buf, where)[0] != U64.unpack_from(buf, again + where)[0])

    # -- running half --------------------------------------------------------------------

    def decode_snapshot(self, got: int) -> RawSample | None:
        """Decode the last `snapshot()`; None when it lacks something (sample again).

        Safe while the target runs: it reads only the snapshot, plus symbol names, which
        never change (see `finish()`).
        """
        if self.validate or self._snapped is None:
            return None
        if self.lines is None and self._snapped is not self.spans:
            same = self._recognised_in_snapshot or self._find_known(self._snapped, got)
            if same is not None:
                return self._same_sample(same, got)
        try:
            return self._decode(got, live=False)
        except SnapshotMiss:
            return None

    def _same_sample(self, same: KnownStack, got: int) -> RawSample:
        """The sample recognised as `same` in the snapshot of `got` bytes: its frames, and
        this snapshot's GC flag and builtin."""
        plan = self._snapped
        assert plan is not None and self._globals_span is not None
        in_gc = self._gc_at >= 0 and I32.unpack_from(plan.buffer, self._gc_at)[0] != 0
        self.last_head = same.head
        self.recognised += 1
        self._planner.recognised(same, self.lines)
        builtin = None
        if self._builtin is not None:
            builtin = self._take_builtin(self._decoder.finder(plan, got, {}), same.chain)
        return RawSample(
            frames=same.frames,
            gc=in_gc,
            head=same.head,
            contexts=len(same.chain),
            known=same,
            builtin=builtin,
        )

    def _decode(self, got: int, *, live: bool) -> RawSample:
        """Decode the snapshot of `got` bytes; with `live`, read what it lacks now.

        Without `live` (the target may be running) a missing region raises SnapshotMiss.
        """
        plan = self._snapped
        assert plan is not None
        if plan is self.spans:
            return self._decode_spans(got, live)
        decoder, planner, lines = self._decoder, self._planner, self.lines
        # Bytes read in this stop beyond the snapshot (live only), by address.
        extra: dict[Address, tuple[Bytes, int]] = {}
        at = decoder.finder(plan, got, extra)
        first, in_gc = decoder.head(at, live)
        self.last_head = first
        sample = RawSample(gc=in_gc, head=first)
        if not first:
            planner.remember([], [], lines, live=live)
            sample.builtin = self._take_builtin(at, [])
            return sample
        chain, frame_contexts = decoder.walk(plan, got, first, extra, live, planner.stride)
        sample.contexts = len(chain)
        sample.builtin = self._take_builtin(at, chain)
        if not frame_contexts:
            planner.remember(chain, [], lines, live=live)
            return sample
        if self.validate:
            decoder.check_closures(frame_contexts)
        calls = [context[1] for context in frame_contexts]
        frames, cells = decoder.frames(plan, got, calls, extra, live, _addresses(frame_contexts))
        builtins = self._builtins
        if builtins is not None:
            sample.between = builtins.insert_between(frames, at, chain, True)
        sample.frames = frames
        if lines is not None:
            sample.lines = decoder.capture_lines(lines, chain, at, live)
        elif builtins is None or not builtins.missed_word:  # else frames may lack a builtin
            sample.known = self._known.keep(
                plan,
                got,
                self._snapped_links,
                self._snapped_contexts,
                (first, chain, cells, frames),
                planner.samples,
            )
        planner.remember(chain, cells, lines, live=live)
        return sample

    def _decode_spans(self, got: int, live: bool) -> RawSample:
        """`_decode` for a span copy: no plan to learn, no known stacks to keep (a span
        copy costs the same for a stack never seen before)."""
        spans = self.spans
        assert spans is not None
        decoder, lines = self._decoder, self.lines
        extra: dict[Address, tuple[Bytes, int]] = {}
        at = decoder.finder(spans, got, extra)
        first, in_gc = decoder.head(at, live)
        self.last_head = first
        sample = RawSample(gc=in_gc, head=first)
        if not first:
            sample.builtin = self._take_builtin(at, [])
            return sample
        outer = spans.outer
        # Beyond the copy, the same activation as at the last sample: its frames and all
        # outer ones are the last sample's (`sampler.spans.OuterChain`).
        until = spans.left_at if spans.outer_same and lines is None else 0
        # Else with `live` (stopped), a chain that left the copy is read on, and what lies
        # beyond is remembered for the next sample.
        remember = bool(live and spans.left_at and not until and spans.left_identity)
        split = until or (spans.left_at if remember else 0)
        chain, frame_contexts = decoder.walk(spans, got, first, extra, live, 0, split)
        sample.builtin = self._take_builtin(at, chain)
        if self.validate:
            decoder.check_closures(frame_contexts)
        calls = [context[1] for context in frame_contexts]
        addresses = _addresses(frame_contexts)
        sample.frames = decoder.frames(spans, got, calls, extra, live, addresses)[0]
        if self.builtins is not None:
            whole = not until and not split  # else the chain's outer part is not walked
            sample.between = self.builtins.insert_between(sample.frames, at, chain, whole)
        if until:
            sample.frames += outer.frames
            sample.contexts = len(chain) + outer.contexts
            return sample
        if split:
            beyond, frame_contexts = decoder.walk(spans, got, split, extra, live, 0)
            if self.validate:
                decoder.check_closures(frame_contexts)
            calls = [context[1] for context in frame_contexts]
            contexts = _addresses(frame_contexts)
            outer.frames = decoder.frames(spans, got, calls, extra, live, contexts)[0]
            outer.address, outer.identity = split, spans.left_identity
            outer.contexts = len(beyond)
            sample.frames += outer.frames
            chain += beyond
        sample.contexts = len(chain)
        spans.toplevel = chain[-1]  # the outermost context is always R_Toplevel
        if lines is not None:
            sample.lines = decoder.capture_lines(lines, chain, at, live)
        return sample

    def finish(self, raw: RawSample) -> Stack:
        """The named stack of a captured sample. Safe to call while the target runs.

        Also learns from a sample decoded while the target was stopped (`SnapshotPlanner`).
        """
        if self._planner.unlearned is not None:
            self._planner.learn(self.lines)
        known = raw.known
        if known is None or raw.lines is not None:
            return self._finish(raw)
        key = (raw.gc, raw.idle, raw.builtin.symbol if raw.builtin is not None else 0)
        stack = known.stacks.get(key)
        if stack is None:
            stack = known.stacks[key] = self._finish(raw)
        return stack

    def _finish(self, raw: RawSample) -> Stack:
        symbol_name = self.namer.symbol_name
        frames = raw.frames if raw.builtin is None else [raw.builtin, *raw.frames]
        names = tuple(
            frame.name if frame.name is not None else symbol_name(frame.symbol) for frame in frames
        )
        lines = self.lines
        if raw.lines is not None and lines is not None and names:
            sites = lines.finish(raw.lines)
            if raw.between or raw.builtin is not None:
                sites = _builtin_sites(sites, raw.between, raw.builtin is not None)
            if len(sites) == len(names) + 1:
                return Stack(names, sites, gc=raw.gc, idle=raw.idle)
        return Stack(names, gc=raw.gc, idle=raw.idle)


def _builtin_sites(
    sites: tuple[SrcLoc | None, ...], between: list[int], innermost: bool
) -> tuple[SrcLoc | None, ...]:
    """`sites` with the recovered builtin frames' (`between`, and an `innermost` one): R's
    Rprof writes no line executing in a builtin (R_Srcref is NULL there), and the frame it
    called, if any, has its own line as before."""
    placed = list(sites)
    for index in between:
        placed.insert(index, None)
    return (None, *placed) if innermost else tuple(placed)


def _addresses(
    frame_contexts: list[tuple[int, Address, Address, Address, Address]],
) -> list[Address]:
    """The addresses of the function contexts `ChainDecoder.walk` found."""
    return [context[4] for context in frame_contexts]


def _constant_symbols(
    memory: ProcessMemory, binary: RBinary
) -> tuple[Address, dict[Address, str], Address]:
    """R_NilValue, the operator symbols by address (`::`, `:::`, `$`) and `[[`'s symbol, read
    once (R never moves them); 0 for any this R does not export."""
    syms = binary.symbols
    nil, double_colon, triple_colon, dollar, bracket2 = (
        U64.unpack(memory.read(syms[name], 8))[0] if syms.get(name) else 0
        for name in (
            "R_NilValue",
            "R_DoubleColonSymbol",
            "R_TripleColonSymbol",
            "R_DollarSymbol",
            "R_Bracket2Symbol",
        )
    )
    operators = {double_colon: "::", triple_colon: ":::", dollar: "$"}
    operators.pop(0, None)
    return nil, operators, bracket2


def _span(addresses: list[Address | None]) -> tuple[Address, int] | None:
    """One read covering all global addresses when they are close (they share .bss)."""
    present = [a for a in addresses if a]
    if max(present) - min(present) > _SPAN_LIMIT:
        return None
    return min(present), max(present) - min(present) + 8


__all__ = ["RawSample", "StackReader"]
