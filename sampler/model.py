"""The profile data model: interned stacks, a compact sample log, and aggregates.

Pure data, no I/O. This is the only module of `sampler` that `widgets` may import.

Contract:
- `SampleLog` has exactly one writer (the sampler thread). It is append-only, so any other
  thread may read it without a lock: read `len(log)` first, then only index below it. Under
  CPython's GIL a list or `array` append and an indexed read are atomic.
- `Aggregate` is built by a reader from a range of the log (`Aggregate.update` consumes the
  samples appended since its last call). It never mutates the log.
"""

from __future__ import annotations

import heapq
from array import array
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from itertools import islice
from types import MappingProxyType
from typing import ClassVar
from typing import Union
from typing import overload

#: A source location: (file path as R stores it, 1-based line).
SrcLoc = tuple[str, int]

GC_NAME = "<GC>"
#: How a native frame's name begins (`--native`, see sampler.mixed): `<Native:label>`.
NATIVE_PREFIX = "<Native:"
#: Stack objects `SampleLog` recognises by identity (see `SampleLog.intern`).
_RECENT_STACKS = 64


@dataclass(frozen=True)
class Stack:
    """One sampled R call stack, named exactly as R's Rprof names frames.

    `names` is innermost first. `sites` is empty when no line information was read;
    otherwise it has `len(names) + 1` entries: `sites[i]` is the line executing in frame
    `i` (for i = 0, the innermost function's current line) and the last entry is the
    location of the outermost call in top-level code. This is the order of R's
    line-profiling tokens. `gc` marks a sample taken while R collected garbage, `idle` one
    taken while R's main thread waited (top-level prompt, `Sys.sleep`, a blocking call).
    """

    names: tuple[str, ...]
    sites: tuple[SrcLoc | None, ...] = ()
    gc: bool = False
    idle: bool = False

    def site(self, index: int) -> SrcLoc | None:
        """The line executing in frame `index`, or None when unknown."""
        return self.sites[index] if index < len(self.sites) else None


EMPTY_STACK = Stack(())


class SampleLog:
    """Every sample, in order: a stack id and a time per sample (single writer, append-only).

    Stacks are interned, so an hour at 100 Hz costs 12 bytes a sample plus one `Stack` per
    distinct stack.
    """

    def __init__(self, interval_us: int) -> None:
        """Create an empty log for samples taken every `interval_us` microseconds."""
        self.interval_us = interval_us
        self.stacks: list[Stack] = []
        self._ids: dict[Stack, int] = {}
        # One copy of each function name and source location, shared by all stacks.
        self._names: dict[str, str] = {}
        self._places: dict[SrcLoc, SrcLoc] = {}
        # The ids of the stack objects added lately, by identity: the sampler hands over the
        # same object each time it recognises a stack, and this spares hashing and comparing
        # a deep stack's names per sample. An entry holds its object, so that object's id
        # cannot be reused while the entry lives.
        self._recent: dict[int, tuple[Stack, int]] = {}
        self.stack_ids = array("I")
        #: Seconds since the first sample, per sample.
        self.times = array("d")
        self._t0: float | None = None

    def __len__(self) -> int:
        return len(self.stack_ids)

    def intern(self, stack: Stack) -> int:
        """The id of `stack`, adding it to the stack table when new."""
        recent = self._recent.get(id(stack))
        if recent is not None and recent[0] is stack:
            return recent[1]
        sid = self._ids.get(stack)
        if sid is None:
            shared = self._shared(stack)
            sid = len(self.stacks)
            self.stacks.append(shared)
            self._ids[shared] = sid
        if len(self._recent) >= _RECENT_STACKS:
            self._recent.clear()
        self._recent[id(stack)] = (stack, sid)
        return sid

    def _shared(self, stack: Stack) -> Stack:
        """`stack` rebuilt from names and locations the log already holds (memory: an
        hour of deep stacks repeats the same few thousand of each in every new stack)."""
        names = tuple([self._names.setdefault(n, n) for n in stack.names])
        places = self._places
        sites = tuple([None if s is None else places.setdefault(s, s) for s in stack.sites])
        return Stack(names, sites, stack.gc, stack.idle)

    def add(self, stack: Stack, when: float) -> None:
        """Append one sample taken at monotonic time `when` (seconds)."""
        if self._t0 is None:
            self._t0 = when
        sid = self.intern(stack)
        # Append the time first: a reader bounds itself by len(stack_ids).
        self.times.append(when - self._t0)
        self.stack_ids.append(sid)

    @property
    def first_time(self) -> float | None:
        """The monotonic time (seconds) of the first sample, which `times` count from (None:
        no sample yet)."""
        return self._t0

    def stack_at(self, index: int) -> Stack:
        """The stack of sample `index`."""
        return self.stacks[self.stack_ids[index]]

    def iter_stacks(self, start: int = 0, stop: int | None = None) -> Iterator[Stack]:
        """The stacks of samples `start` to `stop` (default: all so far), in order."""
        end = len(self) if stop is None else min(stop, len(self))
        stacks, ids = self.stacks, self.stack_ids
        for i in range(start, end):
            yield stacks[ids[i]]

    def index_at_time(self, seconds: float) -> int:
        """The index of the first sample taken at or after `seconds` since the first sample."""
        times, lo, hi = self.times, 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if times[mid] < seconds:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def extend(self, stack_ids: array[int]) -> None:
        """Append samples of stacks already interned here (ids from `intern`), sample `i` of
        the log at `i` intervals: the bulk `add` of a file read back."""
        if self._t0 is None:
            self._t0 = 0.0
        step = self.interval_us / 1e6
        first = len(self)
        # Times first: a reader bounds itself by len(stack_ids).
        self.times.extend([i * step for i in range(first, first + len(stack_ids))])
        self.stack_ids.extend(stack_ids)

    def counts(self, start: int = 0, stop: int | None = None) -> Counter[int]:
        """How many of samples `start` to `stop` (default: all so far) each stack id has."""
        end = len(self) if stop is None else min(stop, len(self))
        return Counter(self.stack_ids[start:end])

    @classmethod
    def from_stacks(cls, stacks: Iterable[Stack], interval_us: int) -> SampleLog:
        """A log of `stacks` spaced `interval_us` apart (for files read back and tests)."""
        log = cls(interval_us)
        step = interval_us / 1e6
        for i, stack in enumerate(stacks):
            log.add(stack, i * step)
        return log


@dataclass
class SamplerStats:
    """Counters kept by the sampler thread; `copy()` gives readers a consistent view."""

    requested_hz: float = 0.0
    samples: int = 0
    empty: int = 0
    idle: int = 0
    gc: int = 0
    late: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    last_error: str = ""
    #: Seconds the target spent stopped for sampling, summed, and the worst single stop.
    stopped_total: float = 0.0
    stopped_max: float = 0.0
    started_at: float = 0.0
    last_sample_at: float = 0.0
    elapsed: float = 0.0

    @property
    def error_count(self) -> int:
        """All per-sample errors, of every kind."""
        return sum(self.errors.values())

    @property
    def achieved_hz(self) -> float:
        """Samples attempted per second of wall time."""
        attempts = self.samples + self.empty + self.error_count
        return attempts / self.elapsed if self.elapsed > 0 else 0.0

    def count_error(self, kind: str, message: str) -> None:
        """Count one per-sample error of `kind`."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_error = message

    def copy(self) -> SamplerStats:
        """A snapshot that later sampling does not change."""
        return replace(self, errors=dict(self.errors))


# ---------------------------------------------------------------------------------------------
# Aggregation: what the views show.

#: A function key: the name alone, or (name, file, line) when aggregating by line.
FunctionKey = Union[tuple[str, str, int], str]


@dataclass(frozen=True)
class FunctionRow:
    """One row of the flat "top" table."""

    key: FunctionKey
    name: str
    own: int
    total: int
    location: SrcLoc | None


class _OneChild(Mapping[FunctionKey, int]):
    """A read-only mapping of one key to one node, made on demand by `_Children`."""

    __slots__ = ("_key", "_node")

    def __init__(self, key: FunctionKey, node: int) -> None:
        self._key = key
        self._node = node

    def __getitem__(self, key: FunctionKey) -> int:
        if key == self._key:
            return self._node
        raise KeyError(key)

    def __iter__(self) -> Iterator[FunctionKey]:
        yield self._key

    def __len__(self) -> int:
        return 1


_NO_CHILDREN: Mapping[FunctionKey, int] = MappingProxyType({})


class _Children(Sequence[Mapping[FunctionKey, int]]):
    """`CallTree.children`: node id -> read-only mapping of child key to child node id.

    It holds the tree's storage, not the tree: no reference cycle, so a tree no longer
    shown is freed at once, also when the cyclic collector ignores it (`gc.freeze`)."""

    __slots__ = ("_key", "_many", "_only")

    def __init__(self, tree: CallTree) -> None:
        self._key = tree.key
        self._many = tree._many
        self._only = tree._only

    def __len__(self) -> int:
        return len(self._only)

    @overload
    def __getitem__(self, node: int) -> Mapping[FunctionKey, int]: ...

    @overload
    def __getitem__(self, node: slice) -> Sequence[Mapping[FunctionKey, int]]: ...

    def __getitem__(
        self, node: int | slice
    ) -> Mapping[FunctionKey, int] | Sequence[Mapping[FunctionKey, int]]:
        if isinstance(node, slice):
            return [self[i] for i in range(len(self))[node]]
        many = self._many.get(node)
        if many is not None:
            return MappingProxyType(many)
        only = self._only[node]
        if only < 0:
            return _NO_CHILDREN
        return _OneChild(self._key[only], only)


class CallTree:
    """An aggregated call tree, outermost call at the root's children.

    Node 0 is the root (all samples). Node ids are stable for the tree's life, so a view can
    keep them as row keys between refreshes. Per node: `parent`, `key`, `total`, `own` and
    `children[node]`, a read-only mapping from child key to child node id.

    Storage is flat because trees get big: an hour of deep stacks makes close to a million
    nodes, nearly all with one child or none. A node's only child lives in two arrays;
    only nodes with several children get a dict. That is about 50 bytes a node, where a
    dict per node would cost hundreds of megabytes.
    """

    ROOT = 0

    def __init__(self) -> None:
        """An empty tree with only the root."""
        # 32-bit ids and counts: 2**31 nodes or samples is far beyond any session.
        self.parent = array("i", [-1])
        self.key: list[FunctionKey] = [""]
        self.total = array("I", [0])
        self.own = array("I", [0])
        # The only child (-1: none; its key is `key[child]`), or all children in `_many`.
        self._only = array("i", [-1])
        self._many: dict[int, dict[FunctionKey, int]] = {}
        self.children = _Children(self)

    def __len__(self) -> int:
        return len(self.parent)

    def child(self, node: int, key: FunctionKey) -> int:
        """The child of `node` for `key`, created when missing."""
        many = self._many.get(node)
        if many is not None:
            found = many.get(key)
            if found is not None:
                return found
        else:
            only = self._only[node]
            if only >= 0 and self.key[only] == key:
                return only
        # The new node is complete before its parent links to it.
        found = len(self.parent)
        self.parent.append(node)
        self.key.append(key)
        self.total.append(0)
        self.own.append(0)
        self._only.append(-1)
        if many is not None:
            many[key] = found
        elif self._only[node] < 0:
            self._only[node] = found
        else:
            only = self._only[node]
            self._many[node] = {self.key[only]: only, key: found}
            self._only[node] = -1
        return found

    def add_path(self, keys_outermost_first: Iterable[FunctionKey], count: int) -> None:
        """Add `count` samples of one stack."""
        node = self.ROOT
        total, many_of, only_of, key_of = self.total, self._many, self._only, self.key
        total[node] += count
        for key in keys_outermost_first:
            # `child` inlined for a child that exists: this runs once per frame.
            many = many_of.get(node)
            only = only_of[node]
            if many is not None and key in many:
                node = many[key]
            elif only >= 0 and key_of[only] == key:
                node = only
            else:
                node = self.child(node, key)
            total[node] += count
        self.own[node] += count

    def sorted_children(self, node: int) -> list[int]:
        """The children of `node`, hottest first."""
        return sorted(self.children[node].values(), key=lambda n: -self.total[n])

    def hottest_path(self) -> list[int]:
        """Node ids from the root down along the hottest child at each level."""
        path = [self.ROOT]
        while self.children[path[-1]]:
            path.append(max(self.children[path[-1]].values(), key=self.total.__getitem__))
        return path

    def check(self) -> None:
        """Raise AssertionError unless every node's total is its own plus its children's."""
        for node in range(len(self)):
            kids = sum(self.total[c] for c in self.children[node].values())
            assert self.total[node] == self.own[node] + kids, node


def key_name(key: FunctionKey) -> str:
    """The R function name of a function key."""
    return key if isinstance(key, str) else key[0]


def frame_keys(stack: Stack, by_line: bool) -> list[FunctionKey]:
    """The function keys of `stack`'s frames, innermost first."""
    if not by_line or not stack.sites:
        return list(stack.names)
    # sites has one more entry than names (the top-level call): zip stops at the names.
    return [(name, loc[0], loc[1]) if loc else name for name, loc in zip(stack.names, stack.sites)]


class Aggregate:
    """Function totals and a call tree over a range of a `SampleLog`.

    Own counts the innermost frame; total counts each distinct function once per sample, so
    recursion never pushes a share past 100 %. `<GC>` is treated as an innermost frame, as
    R's summaryRprof does. Idle samples are left out unless `include_idle`. With
    `outermost`, the tree (only) has one more level above the outermost frames: the key
    `outermost(stack id)` (e.g. the process a sample of several processes' log came from).

    `update()` only counts samples per distinct stack; the function counts (`own`, `total`,
    `locations`, `rows()`) and the `tree` take in the stacks counted since they were last
    read when they are read. A view that shows one of them never pays for the other (with
    50,000 distinct stacks the tree alone takes most of a second).
    """

    def __init__(
        self,
        log: SampleLog,
        *,
        start: int = 0,
        by_line: bool = False,
        include_idle: bool = False,
        outermost: Callable[[int], FunctionKey] | None = None,
        frames: Callable[[Stack], Stack] | None = None,
    ) -> None:
        """Aggregate samples from index `start` on; call `update()` to take in new ones.
        `frames`: what of each stack is counted (e.g. without native frames); all of it
        when None."""
        self.log = log
        self.outermost = outermost
        self.frames = frames
        self.start = start
        self.by_line = by_line
        self.include_idle = include_idle
        self.consumed = start
        self.samples = 0
        self.idle = 0
        self.gc = 0
        self._own: Counter[FunctionKey] = Counter()
        self._total: Counter[FunctionKey] = Counter()
        self._locations: dict[FunctionKey, Counter[SrcLoc]] = {}
        self._tree = CallTree()
        #: Samples per stack id taken in, idle ones too (see `recounted`).
        self._taken: Counter[int] = Counter()
        #: Samples per stack id counted but not yet in the function counts / the tree.
        self._flat_due: Counter[int] = Counter()
        self._tree_due: Counter[int] = Counter()
        self._keys: dict[FunctionKey, FunctionKey] = {}
        self._rows: tuple[FunctionRow, ...] | None = None

    def update(self, stop: int | None = None) -> int:
        """Take in the samples appended since the last update; return how many."""
        end = len(self.log) if stop is None else min(stop, len(self.log))
        if end <= self.consumed:
            return 0
        taken = end - self.consumed
        self._count(self.log.counts(self.consumed, end))
        self.consumed = end
        return taken

    def recounted(self, *, by_line: bool, include_idle: bool) -> Aggregate:
        """The same samples counted another way (by line, idle in or out), from the counts
        per stack taken here: no sample is read again."""
        other = Aggregate(
            self.log,
            start=self.start,
            by_line=by_line,
            include_idle=include_idle,
            outermost=self.outermost,
            frames=self.frames,
        )
        other._count(self._taken)
        other.consumed = self.consumed
        return other

    def _count(self, delta: Mapping[int, int]) -> None:
        stacks = self.log.stacks
        self._taken.update(delta)
        counted: dict[int, int] = {}
        idle = samples = gc = 0
        for sid, count in delta.items():
            stack = stacks[sid]
            if stack.idle:
                idle += count
                if not self.include_idle:
                    continue
            samples += count
            if stack.gc:
                gc += count
            counted[sid] = count
        self.idle += idle
        self.samples += samples
        self.gc += gc
        # Counter.update of an empty counter is a plain dict update (the common case).
        self._flat_due.update(counted)
        self._tree_due.update(counted)

    def _counted(self, sid: int) -> Stack:
        """What of stack `sid` is counted (`frames`)."""
        stack = self.log.stacks[sid]
        return stack if self.frames is None else self.frames(stack)

    def _frame_keys(self, stack: Stack) -> list[FunctionKey]:
        """The keys a sample of `stack` (as `_counted` gives it) counts, innermost first
        (never empty)."""
        keys = frame_keys(stack, self.by_line)
        if self.by_line and stack.sites:
            # One key object per function and line, however many tree nodes hold it.
            shared = self._keys
            keys = [shared.setdefault(k, k) for k in keys]
        if stack.gc:
            keys.insert(0, GC_NAME)
        if not keys:
            keys = ["<idle>" if stack.idle else "<top level>"]
        return keys

    @staticmethod
    def _take_due(due: Counter[int], limit: int | None) -> Iterable[tuple[int, int]]:
        """Up to `limit` (None: all) of the `due` (stack id, count) pairs, removed from it."""
        if limit is None or limit >= len(due):
            items = list(due.items())
            due.clear()
            return items
        items = list(islice(due.items(), limit))
        for sid, _count in items:
            del due[sid]
        return items

    def fold_due(self, limit: int, tree: bool = True) -> bool:
        """Take up to `limit` of the stacks counted since into the function counts, then
        (unless not `tree`) into the tree, as reading them would (work done ahead, in
        slices, while nobody waits); whether some of that work remains."""
        if self._flat_due:
            self._fold_flat(limit)
        elif self._tree_due and tree:
            self._fold_tree(limit)
        return self.due if tree else bool(self._flat_due)

    @property
    def due(self) -> bool:
        """Whether stacks counted are not yet in the function counts or the tree."""
        return bool(self._flat_due or self._tree_due)

    def _fold_flat(self, limit: int | None = None) -> None:
        due = self._take_due(self._flat_due, limit)
        self._rows = None
        own, total, locations = self._own, self._total, self._locations
        for sid, count in due:
            stack = self._counted(sid)
            keys = self._frame_keys(stack)
            own[keys[0]] += count
            if count == 1:
                total.update(set(keys))  # counted in C: most stacks of a long run are rare
            else:
                for key in set(keys):
                    total[key] += count
            if not self.by_line and stack.sites:  # by line, the key holds its location
                for name, loc in zip(stack.names, stack.sites):
                    if loc is not None:
                        counter = locations.get(name)
                        if counter is None:
                            counter = locations[name] = Counter()
                        counter[loc] += count

    @property
    def own(self) -> Counter[FunctionKey]:
        """Samples per function key with that function innermost."""
        if self._flat_due:
            self._fold_flat()
        return self._own

    @property
    def total(self) -> Counter[FunctionKey]:
        """Samples per function key with that function anywhere on the stack (once)."""
        if self._flat_due:
            self._fold_flat()
        return self._total

    @property
    def locations(self) -> dict[FunctionKey, Counter[SrcLoc]]:
        """Per function name (not by line), the samples per line executing in it."""
        if self._flat_due:
            self._fold_flat()
        return self._locations

    @property
    def tree(self) -> CallTree:
        """The call tree of the samples, outermost call at the root's children."""
        if self._tree_due:
            self._fold_tree(None)
        return self._tree

    def _fold_tree(self, limit: int | None) -> None:
        tree, outermost = self._tree, self.outermost
        for sid, count in self._take_due(self._tree_due, limit):
            keys = self._frame_keys(self._counted(sid))
            if outermost is not None:
                keys.append(outermost(sid))
            tree.add_path(reversed(keys), count)

    def rows(self) -> Sequence[FunctionRow]:
        """One row per function, unsorted; the same rows until more samples are counted
        (views ask again at every key)."""
        if self._rows is not None and not self._flat_due:
            return self._rows
        own, totals, locations = self.own, self.total, self.locations
        rows = []
        for key, total in totals.items():
            locs = locations.get(key)
            loc: SrcLoc | None
            if isinstance(key, tuple):
                loc = (key[1], key[2])
            else:
                loc = locs.most_common(1)[0][0] if locs else None
            rows.append(FunctionRow(key, key_name(key), own.get(key, 0), total, loc))
        self._rows = tuple(rows)
        return self._rows

    def top(self, limit: int, by: str = "own") -> list[FunctionRow]:
        """The `limit` hottest rows by `own` or `total`, ties broken by the other count."""
        if by == "own":
            return heapq.nlargest(limit, self.rows(), key=lambda r: (r.own, r.total))
        return heapq.nlargest(limit, self.rows(), key=lambda r: (r.total, r.own))


# --- R processes on the machine (the process picker) -------------------------------------


@dataclass(frozen=True)
class RProcessInfo:
    """One R process as the picker lists it (made by `sampler.discover`).

    `profilable` says whether xrtop may attach right now; when it may not, `blocker` is a
    short label for a column, `reason` one sentence saying why and `fix` what would fix it.
    """

    pid: int
    user: str
    cpu_percent: float
    rss: int  # resident memory, bytes
    elapsed: float  # seconds since the process started
    name: str  # the executable's name (comm), e.g. "R", "r", "python3", "rsession"
    command: str  # the R script and its arguments, else the whole command line
    r_version: str | None  # e.g. "4.5.0"; None when it could not be read
    container: bool  # runs in another mount namespace than xrtop (a container)
    embedded: bool  # R embedded in another program (littler, rpy2, rsession...)
    profilable: bool
    blocker: str = ""
    reason: str = ""
    fix: str = ""
    container_name: str = ""  # the container's name (or short ID) where its engine tells it


# --- The R processes of one session (`--subprocesses`) ------------------------------------


@dataclass(frozen=True)
class ProcessRow:
    """One sampled R process of a session, as the process list shows it.

    `parent_pid` is 0 for the target itself. `role` is a short label: "target",
    "mclapply worker", "mcparallel", "PSOCK worker", "callr", "future worker" or "R child".
    `state` is "running", "sleeping", "ended", or "not traced" (then `note` says why, in one
    line).
    `cpu_percent` is the process's CPU use over the last second (100 = one core).
    """

    pid: int
    parent_pid: int
    role: str
    state: str
    samples: int
    cpu_percent: float
    note: str = ""

    @property
    def label(self) -> str:
        """How the process is named (see `process_label`)."""
        return process_label(self.pid, self.role)


def process_label(pid: int, role: str) -> str:
    """How a process is named as a frame, a profile or in the live view's header:
    "PID 1234 (mclapply worker)"; its role alone when its PID is not known (0)."""
    return f"PID {pid} ({role})" if pid > 0 else role


# --- Two profiles compared (`xrtop diff`) --------------------------------------------------


def signed_points(points: float) -> str:
    """A change in percentage points with its sign and one decimal: "+12.5", "-50.0"; "0.0"
    when it rounds to nothing."""
    text = f"{points:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


@dataclass(frozen=True)
class FunctionChange:
    """One function in two profiles: its own and total shares in percent of each profile's
    samples (0 where it does not occur). Made by `sampler.diff.function_changes`."""

    key: FunctionKey
    base_own: float
    base_total: float
    new_own: float
    new_total: float
    in_base: bool
    in_new: bool

    @property
    def delta_own(self) -> float:
        """The change in own share, in percentage points (new minus base)."""
        return self.new_own - self.base_own

    @property
    def delta_total(self) -> float:
        """The change in total share, in percentage points (new minus base)."""
        return self.new_total - self.base_total

    @property
    def only(self) -> str:
        """ "new" (only in the new profile), "gone" (only in the base) or ""."""
        if not self.in_base:
            return "new"
        return "" if self.in_new else "gone"


@dataclass(frozen=True)
class TreeChange:
    """The base profile's share of each node of the new profile's call tree, matched by
    the path of function keys from the root. Made by `sampler.diff.tree_change`.

    `base_share[node]` is in percent of the base's samples, or `ABSENT` where the base
    has no such path (the node is new).
    """

    base_share: Sequence[float]

    ABSENT: ClassVar[float] = -1.0

    def is_new(self, node: int) -> bool:
        """Whether the base has no call path like `node`'s."""
        return node < len(self.base_share) and self.base_share[node] < 0

    def delta(self, node: int, new_share: float) -> float:
        """The change of `node`'s total share (`new_share` %), in percentage points; a new
        node counts from 0."""
        if node >= len(self.base_share):
            return 0.0
        return new_share - max(0.0, self.base_share[node])
