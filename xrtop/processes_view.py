"""The processes of a `--subprocesses` session as the live view shows them, without any
widget: every process merged (functions summed over processes; in the tree, one top-level
node per process), or one process alone.

`SampledProcesses` is what a session (or a recorded file with its `F.<PID>.out` siblings)
gives: the process list and one `SampleLog` per process. `MergedLog` interleaves those logs into
one, in time order, so that everything the view model does with a log (aggregate, window,
reset, pause, the latest stack) works on all processes at once. Each refresh takes in only
the samples appended since the last one.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from itertools import accumulate
from typing import Protocol

from sampler.model import FunctionKey
from sampler.model import ProcessRow
from sampler.model import SampleLog
from sampler.processes import TARGET_ROLE


class SampledProcesses(Protocol):
    """The sampled processes of one session; safe to call from the UI thread at any time."""

    def rows(self) -> list[ProcessRow]:
        """Every process sampled so far, ended ones included (CPU shares over the time since
        the previous call)."""
        ...

    def logs(self) -> dict[int, SampleLog]:
        """Each process's samples, by PID (a reused PID: the later process's log)."""
        ...


def list_order(rows: list[ProcessRow]) -> list[ProcessRow]:
    """`rows` as the process list shows them: the target first, then by PID."""
    return sorted(rows, key=lambda r: (r.role != TARGET_ROLE, r.pid))


@dataclass(frozen=True)
class ProcessPart:
    """One process's share of what is saved: its samples from `start` on, named `label`."""

    pid: int
    label: str
    start: int


@dataclass
class _Feed:
    """How far one process's log has been taken into a `MergedLog`."""

    log: SampleLog
    upto: int = 0
    #: The process's stack ids -> the merged log's.
    ids: dict[int, int] = field(default_factory=dict)


class MergedLog(SampleLog):
    """The samples of several processes' logs in one log, in time order.

    Its stack ids stand for a (process, stack) pair, so that `process_of[sid]` says which
    process a sample came from even where two processes sampled the same stack. Times count
    from the earliest first sample; a sample that arrives later than one already merged
    but was taken a little earlier takes that one's time, so that times never decrease
    (windows search them). Only `pull` writes; readers follow `SampleLog`'s contract.
    """

    def __init__(self, interval_us: int) -> None:
        """An empty merged log."""
        super().__init__(interval_us)
        self.process_of: list[int] = []
        #: By the log's id (a feed holds its log, so that id is not reused).
        self._feeds: dict[int, _Feed] = {}
        self._origin: float | None = None

    def pull(self, logs: Mapping[int, SampleLog]) -> int:
        """Take in the samples each log gained since the last pull; return how many."""
        if self._origin is None:
            starts = [t for t in (log.first_time for log in logs.values()) if t is not None]
            if not starts:
                return 0
            self._origin = min(starts)
        times: list[float] = []
        ids: list[int] = []
        fed_from = 0
        for pid, log in logs.items():
            feed = self._feeds.get(id(log))
            if feed is None:
                feed = self._feeds[id(log)] = _Feed(log)
            end = len(log)  # first: then only samples below it are read
            start_time = log.first_time
            if end <= feed.upto or start_time is None:
                continue
            offset = start_time - self._origin
            times.extend([offset + t for t in log.times[feed.upto : end]])
            ids.extend(self._merged_ids(pid, feed, log.stack_ids[feed.upto : end]))
            feed.upto = end
            fed_from += 1
        if fed_from > 1:  # runs sorted each: Timsort merges them
            order = sorted(range(len(times)), key=times.__getitem__)
            times = [times[i] for i in order]
            ids = [ids[i] for i in order]
        if times:
            if len(self):
                times[0] = max(times[0], self.times[-1])
            # Times first: a reader bounds itself by len(stack_ids).
            self.times.fromlist(list(accumulate(times, max)))
            self.stack_ids.fromlist(ids)
        return len(times)

    def _merged_ids(self, pid: int, feed: _Feed, stack_ids: Sequence[int]) -> list[int]:
        """The merged ids of process `pid`'s `stack_ids` (new pairs get one)."""
        table = feed.ids
        for sid in set(stack_ids).difference(table):
            table[sid] = len(self.stacks)
            self.stacks.append(feed.log.stacks[sid])
            self.process_of.append(pid)
        return [table[sid] for sid in stack_ids]


class ProcessesView:
    """Which of a `SampledProcesses`'s processes the views show: all (merged) or one.

    `selected` is None for all. `sync()`, which the view model calls once per refresh,
    brings the merged log up to date and reads the process list (its CPU shares are over
    the time between two reads).
    """

    def __init__(self, processes: SampledProcesses, interval_us: int) -> None:
        """Show every process of `processes`, merged."""
        self.processes = processes
        self.selected: int | None = None
        self.merged = MergedLog(interval_us)
        self._rows: list[ProcessRow] = []
        self._label_of: dict[int, str] = {}
        #: The labels the current aggregate's tree uses, by PID (see `outermost`).
        self._labels_used: dict[int, str] = {}

    def sync(self) -> None:
        """Take the processes' new samples into the merged log, then read the process list
        (in this order, a process's role is read after its samples: the sampler names a
        fork by its first sample before adding it to the log)."""
        self.merged.pull(self.processes.logs())
        self._rows = list_order(self.processes.rows())
        self._label_of = {row.pid: row.label for row in self._rows}  # a reused PID: the later

    def rows(self) -> list[ProcessRow]:
        """The processes in list order, as of the last `sync()`."""
        return self._rows

    def log(self) -> SampleLog:
        """The log the views show: the merged one, or the selected process's."""
        if self.selected is None:
            return self.merged
        return self.processes.logs()[self.selected]

    def select(self, pid: int | None) -> bool:
        """Show process `pid` alone (None: all); False when that is already shown or `pid`
        has no samples log."""
        if pid == self.selected or (pid is not None and pid not in self.processes.logs()):
            return False
        self.selected = pid
        return True

    def lengths(self) -> dict[int | None, int]:
        """Each log's length now, by PID (None: the merged log; call `sync()` first)."""
        lengths: dict[int | None, int] = {None: len(self.merged)}
        lengths.update((pid, len(log)) for pid, log in self.processes.logs().items())
        return lengths

    def outermost(self) -> Callable[[int], FunctionKey] | None:
        """For a new aggregate of `log()`: the tree's top-level key of a stack id (the
        process label), or None when one process is shown. Labels are fixed per aggregate,
        so that one process is one node; `relabelled()` says when a role changed since."""
        labels: dict[int, str] = {}
        self._labels_used = labels
        if self.selected is not None:
            return None
        process_of = self.merged.process_of

        def label(sid: int) -> FunctionKey:
            pid = process_of[sid]
            text = labels.get(pid)
            if text is None:
                text = labels[pid] = self.label(pid)
            return text

        return label

    def label(self, pid: int) -> str:
        """How process `pid` is named ("PID 1234" when it is not listed)."""
        return self._label_of.get(pid, f"PID {pid}")

    def relabelled(self) -> bool:
        """Whether a process the current aggregate's tree names has a new label (its role
        became known after its first samples: a fork that runs another program)."""
        return any(self.label(pid) != text for pid, text in self._labels_used.items())

    def describe(self) -> str:
        """What the header says is shown: "all 5 processes" or "PID 1234 (mclapply worker)"."""
        if self.selected is not None:
            return self.label(self.selected)
        count = len(self.processes.logs())
        return f"all {count} processes" if count != 1 else "all 1 process"
