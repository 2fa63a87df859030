"""The R processes of one `--subprocesses` session: what the live view and `record` read.

`ProcessSet` holds one `TracedProcess` per R process found: the target first, then every R
descendant in the order it was found. Contract (as `SampleLog`'s):

- The sampler thread (`sampler.group.GroupSampler`) is the only writer. It appends
  processes and never removes one: an ended process keeps its log and its samples.
- Any other thread reads without a lock: `rows()`, `logs()`, `processes()` and each
  process's `log` (read `len(log)` first, then index below it). `generation` grows by one
  whenever a process is added or changes state, so a view can tell when to redraw its list.
"""

from __future__ import annotations

import os
import time

from sampler.model import ProcessRow
from sampler.model import SampleLog
from sampler.model import SamplerStats
from sampler.model import process_label
from sampler.procstat import EXITED_STATES
from sampler.procstat import SLEEPING_STATES
from sampler.procstat import read_stat

TARGET_ROLE = "target"
#: `TracedProcess.state` values (the process list's State column).
RUNNING = "running"
SLEEPING = "sleeping"
ENDED = "ended"
NOT_TRACED = "not traced"
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


class TracedProcess:
    """One R process of a session: its identity, role, samples and counters.

    Written by the sampler thread only; `log` is shared with the readers (see the module's
    contract). `parent_pid` is 0 for the target.
    """

    def __init__(
        self, pid: int, parent_pid: int, role: str, start_ticks: int, log: SampleLog
    ) -> None:
        """A process found just now, not sampled yet, whose samples go to `log`."""
        self.pid = pid
        self.parent_pid = parent_pid
        self.role = role
        #: Its start time (clock ticks after boot): with the PID, it names the process even
        #: once the PID is reused.
        self.start_ticks = start_ticks
        self.log = log
        self.stats = SamplerStats()
        #: RUNNING (being sampled), ENDED, or NOT_TRACED (then `note` says why).
        self.state = RUNNING
        self.note = ""

    @property
    def label(self) -> str:
        """How the process is named as a frame or a profile: "PID 1234 (mclapply worker)"."""
        return process_label(self.pid, self.role)


class ProcessSet:
    """Every R process of a session, the target first (see the module's contract)."""

    def __init__(self, interval_us: int) -> None:
        """An empty set; the sampler adds the target first."""
        self.interval_us = interval_us
        self._processes: list[TracedProcess] = []
        self.generation = 0
        # The reader's last look at each process's CPU time: (cpu ticks, monotonic time).
        self._cpu_seen: dict[tuple[int, int], tuple[int, float]] = {}

    # -- the writer (the sampler thread) -------------------------------------------------

    def add(self, process: TracedProcess) -> None:
        """Append a process found just now."""
        self._processes.append(process)
        self.generation += 1

    def set_state(self, process: TracedProcess, state: str, note: str = "") -> None:
        """Change `process`'s state (and the note that says why)."""
        if note:
            process.note = note
        process.state = state
        self.generation += 1

    # -- readers (any thread) ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._processes)

    def processes(self) -> list[TracedProcess]:
        """Every process found so far, the target first, then in the order found."""
        return self._processes[: len(self._processes)]

    @property
    def target(self) -> TracedProcess | None:
        """The target's entry (None before the sampler added it)."""
        return self._processes[0] if self._processes else None

    def logs(self) -> dict[int, SampleLog]:
        """Each process's sample log, by PID (the target's is `Session.log`). A PID the
        system reused for a later R child names the later one; `processes()` has both."""
        return {p.pid: p.log for p in self.processes()}

    def log(self, pid: int) -> SampleLog | None:
        """The sample log of process `pid` (the latest one with that PID), or None."""
        for process in reversed(self.processes()):
            if process.pid == pid:
                return process.log
        return None

    def sampled(self) -> list[TracedProcess]:
        """The processes that were sampled (all but those not traced), the target first."""
        return [p for p in self.processes() if p.state != NOT_TRACED]

    def summary(self) -> str:
        """A line on the children: how many were sampled, and which could not be traced."""
        children = self.processes()[1:]
        sampled = [p for p in children if p.state != NOT_TRACED]
        text = (
            f"{len(sampled)} R child processes sampled ({sum(len(p.log) for p in sampled)} samples)"
        )
        refused = [p for p in children if p.state == NOT_TRACED]
        if refused:
            text += "; not traced: " + ", ".join(f"PID {p.pid} ({p.note})" for p in refused)
        return text

    def rows(self) -> list[ProcessRow]:
        """One row per process for the process list, the target first.

        A running process's state ("running" or "sleeping") and CPU share are read from
        /proc now; the CPU share is over the time since the previous `rows()` call (0 on
        the first). Call it from one thread (the view's).
        """
        rows = []
        now = time.monotonic()
        for process in self.processes():
            state, cpu = process.state, 0.0
            if state == RUNNING:
                state, cpu = self._running_state(process, now)
            else:
                self._cpu_seen.pop((process.pid, process.start_ticks), None)
            rows.append(
                ProcessRow(
                    process.pid,
                    process.parent_pid,
                    process.role,
                    state,
                    len(process.log),
                    cpu,
                    process.note,
                )
            )
        return rows

    def _running_state(self, process: TracedProcess, now: float) -> tuple[str, float]:
        """("running" or "sleeping", CPU percent) of a sampled process, from /proc."""
        try:
            stat = read_stat(process.pid)
        except OSError:
            stat = None
        if stat is None or stat.start != process.start_ticks or stat.state in EXITED_STATES:
            return ENDED, 0.0
        key = (process.pid, process.start_ticks)
        seen = self._cpu_seen.get(key)
        self._cpu_seen[key] = (stat.cpu_ticks, now)
        cpu = 0.0
        if seen is not None and now > seen[1]:
            cpu = 100.0 * (stat.cpu_ticks - seen[0]) / _TICKS_PER_SECOND / (now - seen[1])
        state = SLEEPING if stat.state.encode() in SLEEPING_STATES else RUNNING
        return state, cpu
