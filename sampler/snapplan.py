"""Planning the next snapshot: which regions of R's memory one stopped read should copy.

A sample is decoded from one *snapshot*: a single process_vm_readv of every region the
previous samples suggest this one needs. The planner remembers the addresses the last
samples needed (contexts of the same call path sit at the same C-stack addresses; a call
object belongs to its function's body) and, while the stack still reaches new addresses,
guesses deeper contexts a stride away. Guessed bytes are used only where the real chain
points, and all of them come from the same stop, so a wrong guess costs a wasted read,
never a wrong frame.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from sampler.knownstacks import KnownStack
from sampler.knownstacks import KnownStacks
from sampler.knownstacks import gather
from sampler.layouts import CELL_SIZE
from sampler.procmem import Address
from sampler.procmem import ProcessMemory
from sampler.procmem import ScatterPlan
from sampler.srcref import SrcrefReader

if TYPE_CHECKING:
    from sampler.builtins import PcWords

#: The snapshot plan keeps the addresses the last this many samples needed. Each region
#: costs the kernel ~0.4 us per stop (more when cold), so the plan holds only what the
#: stack needed lately (e.g. both sides of a loop that alternates two functions).
_RECENT_SAMPLES = 64
#: ... and at most this many addresses beyond the current sample's (for contexts, or the
#: plan chain's if longer: a shallow detour must not push the loop's chain out), per kind.
_RECENT = 24
#: For how many samples after the stack reached a new address the plan guesses deeper ones.
_GUESS_FOR = 64


class SnapshotPlanner:
    """Remembers what the last samples needed and makes the plan of the next snapshot."""

    def __init__(
        self,
        memory: ProcessMemory,
        context_size: int,
        call_offset: int,
        globals_span: tuple[Address, int],
        known: KnownStacks,
        *,
        links_readable: bool,
    ) -> None:
        """Plan reads of contexts `context_size` bytes long (their call at `call_offset`),
        always starting with R's globals (`globals_span`). A new plan hands its chain to
        `known` (`KnownStacks.take_over`); with `links_readable` (the globals are one span,
        so R's head sits at a known offset) it says how to unpack the chain's links."""
        self.memory = memory
        self.size = context_size
        self.call = call_offset
        self.globals_span = globals_span
        self.known = known
        self.links_readable = links_readable
        #: Whether every snapshot reads the globals again at its end (`StackReader.snapshot_torn`).
        self.recheck_head = False
        #: The pc words the builtin reader needs (R < 4.4, `sampler.builtins`); None: none.
        self.pc_words: PcWords | None = None
        #: The plan of the next snapshot (None: make one).
        self.plan: ScatterPlan | None = None
        #: The chain whose links each plan's known stacks are recognised by (the loop's:
        #: see `make_plan`), its contexts, and the struct that unpacks those links.
        self.plan_chain: list[Address] = []
        self.plan_contexts: frozenset[Address] = frozenset()
        self.plan_links: struct.Struct | None = None
        #: The last sample's chain and cells.
        self.prev_chain: list[Address] = []
        self.prev_cells: list[Address] = []
        #: The most common distance between neighbouring contexts (0: unknown).
        self.stride = 0
        #: Samples remembered, as a clock for the known stacks and `_last_new_context`.
        self.samples = 0
        # What a decode while stopped found, for `learn()` to remember after resuming.
        self.unlearned: tuple[list[Address], list[Address]] | None = None
        # Addresses of the last samples' contexts and cells (calls, non-symbol heads), each
        # with the last sample that needed it: the regions of the next snapshot.
        self._recent_contexts: dict[Address, int] = {}
        self._recent_cells: dict[Address, int] = {}
        self._guesses = False  # whether the plan holds guessed context addresses
        self._walked_at = 0  # the clock at the last `remember` that marked addresses
        self._last_new_context = 0  # when a context address not seen recently last appeared

    def make_plan(
        self, lines: SrcrefReader | None, chain: list[Address] | None = None
    ) -> ScatterPlan:
        """The regions the next sample likely needs, read by one snapshot.

        Contexts: the last samples' chains (the outer part of a stack rarely moves, and a
        context at the same depth of the same path sits at the same C-stack address), and,
        when the stack grows by recursion, addresses a fixed stride below the innermost.
        Calls and non-symbol heads: those of the last few samples (a call object is part of
        its function's body, so every call of `f(x)` in one body is the same object).
        `lines`' regions too, when lines are read, and the builtin reader's pc words (R < 4.4,
        `pc_words`). Regions known to have been readable come first and guesses last,
        because a read stops at the first unmapped region.

        The plan recognises stacks whose contexts all lie on `chain`: by default the chain
        of the plan before, while the plan still reads all of it (a loop's chain outlives
        its detours), else the last sample's.
        """
        size = self.size
        span = self.globals_span
        # The globals are read first, at offset 0 of the buffer (and, without stops, last
        # again: `snapshot_torn`).
        leading, trailing = [span], [span] if self.recheck_head else []
        if chain is None:
            kept, recent = self.plan_chain, self._recent_contexts
            chain = kept if kept and all(a in recent for a in kept) else self.prev_chain
        self.plan_chain = chain
        self.plan_contexts = frozenset(chain)
        # Most recently seen first: a plan holds at most 1024 regions.
        by_recency = sorted(self._recent_contexts, key=self._recent_contexts.__getitem__)
        regions = [(a, size) for a in reversed(by_recency)]
        by_recency = sorted(self._recent_cells, key=self._recent_cells.__getitem__)
        regions += [(c, CELL_SIZE) for c in reversed(by_recency)]
        if lines is not None:
            regions += lines.plan_regions()  # srcref nodes, bodies, pc words (sampler.srcref)
        if self.pc_words is not None:
            self.pc_words.dirty = False
            regions += self.pc_words.regions()
        guesses = []
        prev = self.prev_chain
        # Guesses cost the kernel one iovec each (~0.4 us), so they are made only while the
        # stack is still reaching new addresses; a stack that stays within known ones (any
        # loop below a fixed call chain) gets none.
        growing = self.samples - self._last_new_context < _GUESS_FOR
        self._guesses = growing
        if prev and self.stride >= size and growing:
            head = prev[0]
            guesses += [(head - k * self.stride, size) for k in range(1, 9)]
            guesses += [(head + k * self.stride, size) for k in range(1, 9)]
        plan = self.memory.plan(regions, guesses, leading=leading, trailing=trailing)
        # A context's links: next context, flag (and padding), ..., call. (Only with the
        # globals in one span: recognition finds R's head and GC flag in it.)
        call = self.call
        self.plan_links = (
            gather(plan, self.plan_chain, f"Qi{call - 12}xQ", call + 8)
            if self.links_readable
            else None
        )
        self.known.take_over(plan, self.plan_chain, self.plan_links)
        return plan

    def remember(
        self,
        chain: list[Address],
        cells: list[Address],
        lines: SrcrefReader | None,
        *,
        live: bool = False,
    ) -> None:
        """Remember a sample's addresses to predict the next one (rebuilds the plan).

        With `live` (the target is stopped) only note them: `learn()` does the work once
        the target runs again, because rebuilding a plan takes ~0.2 ms of Python.
        """
        if live:
            self.unlearned = (chain, cells)
            return
        self.samples += 1
        if lines is not None and lines.plan_dirty:
            lines.plan_dirty = False
            self.plan = None  # made again below, with the line reader's new regions
        if self.pc_words is not None and self.pc_words.dirty:
            self.plan = None  # likewise, with the builtin reader's
        if chain == self.prev_chain and cells == self.prev_cells and self.plan is not None:
            self.remember_same(lines)
            return
        now = self.samples
        self._mark_recognised()
        self._walked_at = now
        changed = False
        # Each kind keeps this many addresses at least: the sample's own, and for contexts
        # the plan's chain if longer (a shallow detour must not push the loop's chain out).
        for recent, previous, addresses, keep in (
            (
                self._recent_contexts,
                self.prev_chain,
                chain,
                max(len(chain), len(self.plan_chain)),
            ),
            (self._recent_cells, self.prev_cells, cells, len(cells)),
        ):
            # The previous stack lasted until the last sample (identical samples return
            # early above, without touching these).
            for address in previous:
                recent[address] = now - 1
            for address in addresses:
                if address not in recent:
                    changed = True
                    if recent is self._recent_contexts:
                        self._last_new_context = now
                recent[address] = now
            stale = [a for a, seen in recent.items() if now - seen > _RECENT_SAMPLES]
            if len(recent) - len(stale) > keep + _RECENT:
                by_age = sorted(recent, key=recent.__getitem__)
                stale = by_age[: len(recent) - keep - _RECENT]
            for address in stale:
                del recent[address]
            changed = changed or bool(stale)
        self.prev_chain = chain
        self.prev_cells = cells
        deltas = [b - a for a, b in zip(chain, chain[1:]) if 0 < b - a < 1 << 20]
        if deltas:
            self.stride = max(set(deltas), key=deltas.count)
        expired = self._guesses and self.samples - self._last_new_context >= _GUESS_FOR
        if changed or expired or self.plan is None:
            self.plan = self.make_plan(lines)

    def _mark_recognised(self) -> None:
        """Mark the addresses of stacks recognised since the last walk as needed as of the
        last sample that showed them, or a decode after many recognised samples would drop
        a loop's other stacks from the plan as unused."""
        for same in self.known.all():
            seen = same.last_seen
            if seen > self._walked_at:
                for address in same.chain:
                    self._recent_contexts[address] = seen
                for address in same.cell_addresses:
                    self._recent_cells[address] = seen

    def learn(self, lines: SrcrefReader | None) -> None:
        """Remember what the last decode while stopped found (see `remember`)."""
        unlearned = self.unlearned
        if unlearned is not None:
            self.unlearned = None
            self.remember(*unlearned, lines)

    def remember_same(self, lines: SrcrefReader | None) -> None:
        """The same stack as last time (list equality runs in C): nothing to learn, but
        plan after a chain that lasted two samples without being recognised (a plan made
        after another chain knows other stacks, so a one-sample detour, such as a call to
        `Sys.time()` in a loop, keeps the plan), and stop guessing once the stack has
        stayed within known addresses for a while."""
        if self.prev_chain != self.plan_chain:
            self.plan = self.make_plan(lines, self.prev_chain)
        elif self._guesses and self.samples - self._last_new_context >= _GUESS_FOR:
            self.plan = self.make_plan(lines)

    def recognised(self, same: KnownStack, lines: SrcrefReader | None) -> None:
        """Remember a sample recognised as `same` (sampler.knownstacks): it is now the last
        stack, as if it had been walked. Nothing to learn, but stop guessing once the stack
        has stayed within known addresses for a while."""
        self.prev_chain = same.chain
        self.prev_cells = same.cell_addresses
        self.samples += 1
        same.last_seen = self.samples
        if self._guesses and self.samples - self._last_new_context >= _GUESS_FOR:
            self.plan = self.make_plan(lines)
