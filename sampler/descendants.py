"""Finding the R processes descended from a target, and what each one is (its role).

`Descendants.poll()` looks at /proc for processes that appeared since its last look (a
listing of /proc, ~30 us; only new PIDs are read) and follows every descendant of the
target: R processes are reported, others (a shell, `ssh`, Rscript's front end) are passed
through, their children followed and themselves looked at again each poll, since they may
exec R. A new process is reported one poll after it appeared, so that a fork about to exec
(R's `system()`) is seen as what it execs, not as a copy of R.

PSOCK and future workers are started through `sh -c 'Rscript ... &'`, whose shell exits at
once: a worker found without the shell is an orphan. One is taken when it names its master
in its command line: `parallelly.parent=PID` (future; `future.parent=PID` before
parallelly), or `PORT=N` where a followed R
listens on port N (parallel's makeCluster).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from sampler.procstat import ProcStat
from sampler.procstat import read_stat
from sampler.symbols import find_libr_mapping
from sampler.symbols import read_maps

#: Seconds a process is followed as a possible orphaned worker before it must be R.
_ORPHAN_PATIENCE = 3.0
_PORT = re.compile(r"(?:^|\s)PORT=(\d+)")
#: The role of a fork that nothing names (see `role_of`).
UNNAMED_FORK = "R child"
#: How a future worker names its master (parallelly's; future's own before parallelly).
_FUTURE_PARENT = re.compile(r"(?:parallelly|future)\.parent=(\d+)")


@dataclass(frozen=True)
class Found:
    """An R process found below the target. When `parent_is_r`, it may be a fork of its
    parent (the same R: `sampler.target.attach_clone` tells)."""

    pid: int
    parent_pid: int
    start_ticks: int
    cmdline: str
    parent_is_r: bool


def read_cmdline(pid: int) -> str:
    """The command line of `pid`, arguments joined by spaces ("" when unreadable)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    return " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a)


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _is_r_executable(exe: str) -> bool:
    """Whether `exe` is R's interpreter binary (bin/exec/R), by its name."""
    return os.path.basename(exe) == "R"


def runs_r(pid: int) -> bool:
    """Whether `pid` maps libR.so, or runs a static R binary with libc mapped (right after
    an exec the loader has not mapped libR.so yet: see `xrtop.session.find_r_descendant`)."""
    try:
        maps = read_maps(pid)
    except Exception:  # gone, or not ours to read: not an R we can follow
        return False
    if find_libr_mapping(maps) is not None:
        return True
    return _is_r_executable(_exe(pid)) and any(
        os.path.basename(m.path).startswith(("libc.so", "libc-")) for m in maps
    )


def role_of(cmdline: str, forked: bool, parent_stack: tuple[str, ...] = ()) -> str:
    """The role label of an R process found below the target (see `ProcessRow.role`).

    A `forked` one is named by the calls that made it: those its parent R was running when
    it was found (`parent_stack`, the parent's last sampled stack), or its own, which it
    runs on inside; a started one by its `cmdline`.
    """
    if forked:
        names = {name.rsplit(":", 1)[-1] for name in parent_stack}  # parallel::mclapply too
        if names & {"mclapply", "pvec", "mcmapply", "mcMap"}:
            return "mclapply worker"
        if "future" in names or any(n.startswith("run.Multicore") for n in names):
            return "future worker"
        if names & {"mcparallel", "mcfork", "mccollect"}:
            return "mcparallel"
        return UNNAMED_FORK
    if "parallelly" in cmdline or _FUTURE_PARENT.search(cmdline):
        return "future worker"
    if "workRSOCK" in cmdline or "workCommand" in cmdline or "slaveRSOCK" in cmdline:
        return "PSOCK worker"
    if "callr" in cmdline:
        return "callr"
    return "R child"


class _Followed:
    """A process under the target that is not R (yet): its children are followed too."""

    __slots__ = ("exe", "orphan_until", "start")

    def __init__(self, start: int, exe: str, orphan_until: float = 0.0) -> None:
        self.start = start
        self.exe = exe
        #: For a possible orphaned worker: when to stop waiting for it to become R.
        self.orphan_until = orphan_until


class Descendants:
    """Finds the R processes below a target, one poll at a time (see the module doc)."""

    def __init__(self, target_pid: int, target_start: int, session: int) -> None:
        """Follow `target_pid` (which started at `target_start` ticks, in `session`)."""
        self._listed: set[int] = set()
        #: R processes being sampled: pid -> start ticks (`add_r`, `forget`).
        self._r: dict[int, int] = {target_pid: target_start}
        self._sessions = {session}
        self._others: dict[int, _Followed] = {}
        #: Processes seen at the last poll, reported at this one: pid -> (start, parent).
        self._pending: dict[int, tuple[int, int]] = {}
        self._first = True

    def forget(self, pid: int) -> None:
        """Stop following R process `pid` (it ended, or may not be traced)."""
        self._r.pop(pid, None)

    def pass_through(self, pid: int, start: int) -> None:
        """Follow `pid`, reported as R, as a pass-through from now on (it exec'd something
        else): it is reported again should it exec R."""
        self._r.pop(pid, None)
        self._others[pid] = _Followed(start, _exe(pid))

    def poll(self) -> list[Found]:
        """The R processes that appeared below the target since the last poll (on the first
        poll: every R descendant running now)."""
        listed = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        new = listed - self._listed if not self._first else listed
        self._listed = listed
        # A PID that is gone may be reused by a process that is not ours.
        self._r = {pid: start for pid, start in self._r.items() if pid in listed}
        found: list[Found] = []
        if self._first:
            self._first = False
            self._watch(new, time.monotonic())
            new = set()
        # Those seen at the last poll first, so that a child of theirs new now is theirs.
        for pid, (start, parent) in self._take_pending(listed):
            item = self._classify(pid, start, parent)
            if item is not None:
                found.append(item)
        self._watch(new, time.monotonic())
        found.extend(self._recheck_others(listed))
        return found

    def add_r(self, pid: int, start: int, session: int) -> None:
        """R process `pid` is sampled: workers orphaned in its session may be its own."""
        self._r[pid] = start
        self._sessions.add(session)

    # -- one poll's steps ----------------------------------------------------------------

    def _watch(self, new: set[int], now: float) -> None:
        """Take the new processes that descend from a followed one as pending (reported by
        the next poll), and those that may be orphaned workers as such."""
        stats: dict[int, ProcStat] = {}
        for pid in new:
            try:
                stat = read_stat(pid)
            except OSError:
                stat = None
            if stat is not None and stat.state not in ("Z", "X"):
                stats[pid] = stat
        # Parents first: a new child of a new child is taken once its parent is.
        others = self._others
        changed = True
        while changed:
            changed = False
            for pid, stat in list(stats.items()):
                parent = others.get(stat.ppid)
                if (
                    stat.ppid in self._r
                    or stat.ppid in self._pending
                    or (parent is not None and not parent.orphan_until)
                ):
                    self._pending[pid] = (stat.start, stat.ppid)
                elif parent is not None:
                    # Below a possible orphan: one too, held to the same proof.
                    others[pid] = _Followed(stat.start, _exe(pid), now + _ORPHAN_PATIENCE)
                else:
                    continue
                del stats[pid]
                changed = True
        for pid, stat in stats.items():
            if stat.session in self._sessions and pid not in self._r:
                # Possibly a worker whose starting shell has exited already (module doc).
                others[pid] = _Followed(stat.start, _exe(pid), now + _ORPHAN_PATIENCE)

    def _take_pending(self, listed: set[int]) -> list[tuple[int, tuple[int, int]]]:
        ready = [(pid, v) for pid, v in self._pending.items() if pid in listed]
        self._pending.clear()
        return ready

    def _classify(self, pid: int, start: int, parent: int) -> Found | None:
        """A pending descendant: R (returned) or not (followed as a pass-through)."""
        if not runs_r(pid):
            self._others[pid] = _Followed(start, _exe(pid))
            return None
        return self._found(pid, parent, start, read_cmdline(pid))

    def _found(self, pid: int, parent: int, start: int, cmdline: str) -> Found:
        """Report R process `pid`, and follow it from now on: its children are ours too,
        whether or not it can be sampled."""
        found = Found(pid, parent, start, cmdline, parent in self._r)
        self._r[pid] = start
        return found

    def _recheck_others(self, listed: set[int]) -> list[Found]:
        """Pass-through processes that exec'd R since the last poll, and possible orphaned
        workers that proved to be ours; drop the ended ones."""
        found = []
        now = time.monotonic()
        for pid, other in list(self._others.items()):
            if pid not in listed:
                del self._others[pid]
                continue
            exe = _exe(pid)
            if other.orphan_until:
                # Only an R interpreter can be a worker (the loader may not have mapped
                # libR.so yet right after the exec: look again next poll).
                if _is_r_executable(exe) and runs_r(pid):
                    del self._others[pid]
                    cmdline = read_cmdline(pid)
                    master = self._master_of(cmdline)
                    if master is not None:
                        found.append(self._found(pid, master, other.start, cmdline))
                elif now > other.orphan_until:
                    del self._others[pid]
                continue
            if exe == other.exe:
                continue
            if not runs_r(pid):
                if not _is_r_executable(exe):  # else libR.so is on its way: look again
                    other.exe = exe
                continue
            del self._others[pid]
            try:
                stat = read_stat(pid)
            except OSError:
                continue
            if stat is not None:
                found.append(self._found(pid, stat.ppid, other.start, read_cmdline(pid)))
        return found

    def _master_of(self, cmdline: str) -> int | None:
        """The followed R an orphaned worker names as its master (module doc), or None."""
        m = _FUTURE_PARENT.search(cmdline)
        if m and int(m[1]) in self._r:
            return int(m[1])
        m = _PORT.search(cmdline)
        if not m:
            return None
        inodes = _socket_inodes(int(m[1]))
        for pid in self._r:
            if inodes and _holds_socket(pid, inodes):
                return pid
        return None


def _socket_inodes(port: int) -> set[str]:
    """The inodes of the TCP sockets whose local port is `port` (IPv4 and IPv6): the
    master's listening socket while workers start, the ones it accepted afterwards."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name, encoding="ascii", errors="replace") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _holds_socket(pid: int, inodes: set[str]) -> bool:
    """Whether process `pid` has one of the sockets `inodes` open."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") in wanted:
                return True
        except OSError:
            continue
    return False
