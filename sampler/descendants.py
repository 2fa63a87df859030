"""Finding the R processes descended from a target, and what each one is (its role).

`Descendants.poll()` looks at /proc for processes that appeared since its last look (a
listing of /proc, ~30 us; only new PIDs are read) and follows every descendant of the
target: R processes are reported, others (a shell, `ssh`, Rscript's front end) are passed
through, their children followed and themselves looked at again each poll, since they may
exec R. A new process is reported one poll after it appeared, so that a fork about to exec
(R's `system()`) is seen as what it execs, not as a copy of R.

PSOCK and future workers are started through `sh -c 'Rscript ... &'`, whose shell exits at
once: a worker found without the shell is an orphan. One is taken when it names its master
in its command line: `parallelly.parent=PID` (future), or `PORT=N` where a followed R
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
_PARALLELLY_PARENT = re.compile(r"parallelly\.parent=(\d+)")
_TCP_LISTEN = "0A"


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


def runs_r(pid: int) -> bool:
    """Whether `pid` maps libR.so, or runs a static R binary with libc mapped (right after
    an exec the loader has not mapped libR.so yet: see `xrtop.session.find_r_descendant`)."""
    try:
        maps = read_maps(pid)
    except Exception:  # gone, or not ours to read: not an R we can follow
        return False
    if find_libr_mapping(maps) is not None:
        return True
    return os.path.basename(_exe(pid)) == "R" and any(
        os.path.basename(m.path).startswith(("libc.so", "libc-")) for m in maps
    )


def role_of(cmdline: str, forked: bool, parent_stack: tuple[str, ...] = ()) -> str:
    """The role label of an R process found below the target (see `ProcessRow.role`).

    A `forked` one is named by what its parent R was running when it was found
    (`parent_stack`, the parent's last sampled stack); a started one by its `cmdline`.
    """
    if forked:
        names = set(parent_stack)
        if names & {"mclapply", "pvec", "mcmapply", "mcMap"}:
            return "mclapply worker"
        if "future" in names or any(n.startswith("run.Multicore") for n in names):
            return "future worker"
        if names & {"mcparallel", "mcfork"}:
            return "mcparallel"
        return "R child"
    if "parallelly" in cmdline:
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

    def follows(self, pid: int) -> bool:
        """Whether `pid` is an R process followed now."""
        return pid in self._r

    def poll(self) -> list[Found]:
        """The R processes that appeared below the target since the last poll (on the first
        poll: every R descendant running now)."""
        listed = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        new = listed - self._listed if not self._first else listed
        self._listed = listed
        first, self._first = self._first, False
        found: list[Found] = []
        ready = [] if first else self._take_pending(listed)
        self._watch(new, settle=not first, now=time.monotonic())
        if first:
            ready = self._take_pending(listed)
        for pid, (start, parent) in ready:
            item = self._classify(pid, start, parent)
            if item is not None:
                found.append(item)
        found.extend(self._recheck_others(listed))
        return found

    def add_r(self, pid: int, start: int, session: int) -> None:
        """Follow R process `pid` from now on (its children become descendants)."""
        self._r[pid] = start
        self._others.pop(pid, None)
        self._sessions.add(session)

    # -- one poll's steps ----------------------------------------------------------------

    def _watch(self, new: set[int], *, settle: bool, now: float) -> None:
        """Take the new processes that descend from a followed one (or may be orphaned
        workers) as pending; with `settle` they are reported at the next poll."""
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
                elif parent is not None and settle:
                    # Below a possible orphan: one too, held to the same proof.
                    others[pid] = _Followed(stat.start, _exe(pid), now + _ORPHAN_PATIENCE)
                else:
                    continue
                del stats[pid]
                changed = True
        if not settle:
            return
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
        return Found(pid, parent, start, read_cmdline(pid), parent in self._r)

    def _recheck_others(self, listed: set[int]) -> list[Found]:
        """Pass-through processes that exec'd R since the last poll; drop the ended ones."""
        found = []
        now = time.monotonic()
        for pid, other in list(self._others.items()):
            if pid not in listed:
                del self._others[pid]
                continue
            exe = _exe(pid)
            if exe == other.exe and not (other.orphan_until and runs_r(pid)):
                if other.orphan_until and now > other.orphan_until:
                    del self._others[pid]
                continue
            other.exe = exe
            if not runs_r(pid):
                continue
            del self._others[pid]
            cmdline = read_cmdline(pid)
            try:
                stat = read_stat(pid)
            except OSError:
                continue
            if stat is None:
                continue
            parent = stat.ppid
            if other.orphan_until:
                master = self._master_of(cmdline)
                if master is None:
                    continue  # an R of the same session, not ours
                parent = master
            found.append(Found(pid, parent, other.start, cmdline, parent in self._r))
        return found

    def _master_of(self, cmdline: str) -> int | None:
        """The followed R an orphaned worker names as its master (module doc), or None."""
        m = _PARALLELLY_PARENT.search(cmdline)
        if m and int(m[1]) in self._r:
            return int(m[1])
        m = _PORT.search(cmdline)
        if not m:
            return None
        inodes = _listening_inodes(int(m[1]))
        for pid in self._r:
            if inodes and _holds_socket(pid, inodes):
                return pid
        return None


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the TCP sockets listening on `port` (IPv4 and IPv6)."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name, encoding="ascii", errors="replace") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            listening = len(fields) > 9 and fields[3] == _TCP_LISTEN
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
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
