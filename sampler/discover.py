"""Finding the R processes on the machine, cheaply enough to refresh every second.

An R process is one whose executable is R's own binary or that maps `libR.so` (embedded
R: littler's `r`, rpy2 inside python, rsession). Only thread-group leaders are listed:
/proc lists processes, never their threads.

Cost per scan: one read of /proc/PID/stat and one readlink of /proc/PID/exe per process.
/proc/PID/maps is read once per process identity (PID, start time, executable); a process
found not to be R is checked again only after `recheck_after` seconds *and* only if it has
used CPU since (a process that loads R later, such as python importing rpy2, must run to do
it; an exec changes the executable and is noticed at once). Facts that cannot change while a
process lives (its R version, whether it runs in a container) are cached per identity.
"""

from __future__ import annotations

import contextlib
import os
import platform
import pwd
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from sampler.doctor import has_ptrace_capability
from sampler.doctor import permission_error
from sampler.errors import SampleError
from sampler.errors import UnsupportedRError
from sampler.errors import XrtopError
from sampler.layouts import layout_for
from sampler.model import RProcessInfo
from sampler.procmem import LiveMemory
from sampler.procstat import EXITED_STATES
from sampler.procstat import PF_KTHREAD
from sampler.procstat import ProcStat
from sampler.procstat import read_stat
from sampler.symbols import RBinary
from sampler.symbols import find_libr_mapping
from sampler.symbols import load_r_binary
from sampler.symbols import read_maps
from sampler.target import ProcessInfo
from sampler.target import detect_version
from sampler.target import parse_version

#: Names of R's processes, trusted only when xrtop may not read a process's maps.
_R_NAMES = frozenset({"R", "r", "rsession"})
_ELF_MACHINE = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64", "arm64": "EM_AARCH64"}


def _read_stat(proc: str, pid: int) -> ProcStat | None:
    """The stat fields of `pid` (sampler.procstat); None when gone or not readable."""
    try:
        return read_stat(pid, proc)
    except PermissionError:
        return None


def command_label(pid: int, name: str, cmdline: list[str]) -> str:
    """The R script and its arguments (`Rscript f.R a` runs `R --file=f.R --args a`), or
    the command line with the program's directory dropped, or the process name."""
    script = ProcessInfo(pid, name, tuple(cmdline), 0, 0, False).script
    args = cmdline[cmdline.index("--args") + 1 :] if "--args" in cmdline else []
    if any(arg.startswith("--file=") for arg in cmdline):
        return " ".join([script, *args])
    if "-f" in cmdline[:-1] and name == "R":  # R -f file.R, as R CMD BATCH runs it
        return " ".join([cmdline[cmdline.index("-f") + 1], *args])
    if cmdline:
        return " ".join([os.path.basename(cmdline[0]), *cmdline[1:]])
    return script


@dataclass(frozen=True)
class Problem:
    """Why xrtop may not profile a process, and what would fix it."""

    blocker: str  # a short label for a table column
    reason: str
    fix: str


@dataclass
class _NotR:
    """A process found not to be R (a negative cache entry)."""

    start: int
    identity: str
    cpu_ticks: int
    checked: float


@dataclass
class _RProc:
    """A process found to be R, with the facts that do not change while it lives."""

    start: int
    identity: str
    process: psutil.Process
    name: str
    command: str
    uid: int
    embedded: bool
    readable: bool
    container: bool
    container_name: str
    version: tuple[int, int, int] | None
    version_problem: Problem | None
    cpu_primed: bool = False


class Discovery:
    """Lists R processes; keep one instance and call `scan()` repeatedly (caches persist).

    Not thread-safe: one scan at a time (the picker runs scans in one worker).
    """

    def __init__(
        self,
        *,
        force_version: str | None = None,
        recheck_after: float = 10.0,
        proc: str = "/proc",
    ) -> None:
        """`force_version` (X.Y) is what attaching will use; it replaces version checks."""
        self.force_version = force_version
        self.forced = parse_version(force_version) if force_version else None
        self.recheck_after = recheck_after
        self.proc = proc
        self.self_pid = os.getpid()
        self._r: dict[int, _RProc] = {}
        self._not_r: dict[int, _NotR] = {}
        self._users: dict[int, str] = {}
        #: How many times /proc/PID/maps was read (for tests and the benchmark).
        self.maps_reads = 0
        try:
            self._own_mnt = os.stat(f"{proc}/self/ns/mnt").st_ino
        except OSError:
            self._own_mnt = 0

    def scan(self) -> list[RProcessInfo]:
        """Every R process now, ordered by PID."""
        now = time.monotonic()
        seen: set[int] = set()
        rows: list[RProcessInfo] = []
        try:
            entries = os.listdir(self.proc)
        except OSError:
            entries = []
        for entry in entries:
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid == self.self_pid:
                continue
            st = _read_stat(self.proc, pid)
            if st is None or st.flags & PF_KTHREAD or st.state in EXITED_STATES:
                continue
            seen.add(pid)
            try:
                row = self._look_at(pid, st, now)
            except OSError:
                continue  # it exited while we looked (ESRCH from a /proc read)
            if row is not None:
                rows.append(row)
        for cache in (self._r, self._not_r):
            for pid in [p for p in cache if p not in seen]:
                del cache[pid]
        rows.sort(key=lambda r: r.pid)
        return rows

    def _look_at(self, pid: int, st: ProcStat, now: float) -> RProcessInfo | None:
        identity = self._identity(pid, st.comm)
        known = self._r.get(pid)
        if known is not None and (known.start, known.identity) != (st.start, identity):
            del self._r[pid]
            known = None
        if known is None:
            known = self._classify(pid, st, identity, now)
            if known is None:
                return None
            self._r[pid] = known
        return self._row(pid, known)

    def _identity(self, pid: int, comm: str) -> str:
        # The executable changes on exec (Rscript -> sh -> R keep PID and start time).
        try:
            return os.readlink(f"{self.proc}/{pid}/exe")
        except OSError:
            return "comm:" + comm

    def _classify(self, pid: int, st: ProcStat, identity: str, now: float) -> _RProc | None:
        """Find out whether `pid` runs R (reading its maps); None when it does not."""
        old = self._not_r.get(pid)
        if (
            old is not None
            and (old.start, old.identity) == (st.start, identity)
            and (now - old.checked < self.recheck_after or old.cpu_ticks == st.cpu_ticks)
        ):
            return None
        exe_is_r = os.path.basename(identity.removesuffix(" (deleted)")) == "R"
        libr_path: str | None = None
        readable = True
        try:
            self.maps_reads += 1
            with open(f"{self.proc}/{pid}/maps", "rb") as f:
                raw = f.read()
        except PermissionError:
            readable = False
            raw = b""
        except OSError:
            return None  # gone
        if b"libR.so" in raw:
            # OSError: the process may exit between the two reads (ESRCH).
            with contextlib.suppress(XrtopError, OSError):
                mapping = find_libr_mapping(read_maps(pid))
                libr_path = mapping.path if mapping is not None else None
        is_r = libr_path is not None or exe_is_r or (not readable and st.comm in _R_NAMES)
        if not is_r:
            self._not_r[pid] = _NotR(st.start, identity, st.cpu_ticks, now)
            return None
        self._not_r.pop(pid, None)
        try:
            process = psutil.Process(pid)
            cmdline = process.cmdline()
            uid = process.uids().effective
        except psutil.Error:
            return None
        container = self._other_mount_ns(pid)
        version, problem = (None, None)
        if readable:
            version, problem = self._version(pid, libr_path or identity)
        return _RProc(
            start=st.start,
            identity=identity,
            process=process,
            name=st.comm,
            command=command_label(pid, st.comm, cmdline),
            uid=uid,
            embedded=not exe_is_r and st.comm != "R",
            readable=readable,
            container=container,
            container_name=container_name(pid) if container else "",
            version=version,
            version_problem=problem,
        )

    def _version(self, pid: int, r_path: str) -> tuple[tuple[int, int, int] | None, Problem | None]:
        """R's version, cheaply: R_HOME from the environment or the libR.so path first (no
        ELF parsing); the full symbol load (R_Home in memory) only when those fail."""
        stub = RBinary(path=r_path, opened_as="", bias=0, symbols={}, machine="", code={})
        version: tuple[int, int, int] | None = None
        try:
            version = detect_version(pid, LiveMemory(pid, 4096), stub)[0]
        except XrtopError:
            try:
                version = detect_version(pid, LiveMemory(pid, 4096), load_r_binary(pid))[0]
            except UnsupportedRError as err:
                problem = Problem("version?", err.message, err.hint)
                return None, (None if self.forced else problem)
            except (XrtopError, SampleError, OSError) as err:
                return None, Problem("not R?", str(err).split("\n")[0], "")
        checked = self.forced or version
        try:
            machine = _ELF_MACHINE.get(platform.machine(), "EM_" + platform.machine().upper())
            layout_for(checked[:2], machine)
        except UnsupportedRError as err:
            label = f"R {checked[0]}.{checked[1]}?"
            return version, Problem(label, err.message, err.hint)
        return version, None

    def _other_mount_ns(self, pid: int) -> bool:
        try:
            return os.stat(f"{self.proc}/{pid}/ns/mnt").st_ino != self._own_mnt
        except OSError:
            return False

    def _user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._users[uid] = name
        return name

    def _row(self, pid: int, r: _RProc) -> RProcessInfo | None:
        proc = r.process
        try:
            with proc.oneshot():
                created = proc.create_time()
                elapsed = max(0.0, time.time() - created)
                cpu = proc.cpu_percent(None)
                if not r.cpu_primed:
                    # psutil needs two looks for a rate; until then show the lifetime average
                    # so that the busiest R sorts first from the very first screen.
                    times = proc.cpu_times()
                    cpu = 100.0 * (times.user + times.system) / elapsed if elapsed > 0 else 0.0
                    r.cpu_primed = True
                rss = proc.memory_info().rss
        except psutil.Error:
            return None
        problem = self.problem(pid, r)
        version = r.version or self.forced
        return RProcessInfo(
            pid=pid,
            user=self._user(r.uid),
            cpu_percent=cpu,
            rss=rss,
            elapsed=elapsed,
            name=r.name,
            command=r.command,
            r_version=".".join(map(str, version)) if version else None,
            container=r.container,
            container_name=r.container_name,
            embedded=r.embedded,
            profilable=problem is None,
            blocker=problem.blocker if problem else "",
            reason=problem.reason if problem else "",
            fix=problem.fix if problem else "",
        )

    def problem(self, pid: int, r: _RProc) -> Problem | None:
        """Why xrtop may not attach to `pid` now (None: it may). Checked on every scan, as
        tracers come and go; version facts come from the cache."""
        denied = not r.readable
        if not denied:
            # Opening /proc/PID/mem passes the kernel's ptrace attach check (owner,
            # capabilities, Yama, dumpable) without touching the target.
            try:
                os.close(os.open(f"{self.proc}/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC))
            except PermissionError:
                denied = True
            except OSError:
                pass
        if denied:
            err = permission_error(pid, "may not trace")
            other_user = r.uid != os.geteuid() and not has_ptrace_capability()
            return Problem("other user" if other_user else "no permission", err.message, err.hint)
        tracer = _tracer_of(self.proc, pid)
        if tracer and tracer != self.self_pid:
            who = _name_of(self.proc, tracer)
            return Problem(
                "traced",
                f"process {pid} is already traced by {who} (PID {tracer}); a process can "
                "have only one tracer",
                f"Detach or quit {who} (PID {tracer}), then pick process {pid} again.",
            )
        return r.version_problem


#: A container's ID in its cgroup path: podman's libpod-ID, docker's docker-ID.scope or
#: /docker/ID, containerd's cri-containerd-ID.
_CGROUP_ID = re.compile(r"(?:libpod-|docker[-/]|cri-containerd-|crio-)([0-9a-f]{64})")


def container_name(pid: int) -> str:
    """The name the container engine gave the container `pid` runs in; else its short ID
    (12 hex digits, as `podman ps` and `docker ps` show it); "" when no engine says.

    Podman names it in the container's /run/.containerenv (privileged containers only) and
    on the command line of conmon, the monitor it starts above every container (`-n NAME`).
    Docker and containerd leave only the ID, in the process's cgroup path.
    """
    with contextlib.suppress(OSError):
        env = Path(f"/proc/{pid}/root/run/.containerenv").read_text(errors="replace")
        found = re.search(r'^name="([^"]+)"', env, re.M)
        if found:
            return found[1]
    with contextlib.suppress(psutil.Error):
        for ancestor in psutil.Process(pid).parents():
            if ancestor.name() == "conmon":
                argv = ancestor.cmdline()
                for flag in ("-n", "--name"):
                    if flag in argv[:-1]:
                        return argv[argv.index(flag) + 1]
                break
    with contextlib.suppress(OSError):
        found = _CGROUP_ID.search(Path(f"/proc/{pid}/cgroup").read_text())
        if found:
            return found[1][:12]
    return ""


def _tracer_of(proc: str, pid: int) -> int:
    try:
        text = Path(f"{proc}/{pid}/status").read_text()
    except OSError:
        return 0
    _, _, rest = text.partition("TracerPid:")
    field = rest.split(None, 1)[0] if rest.strip() else "0"
    return int(field) if field.isdigit() else 0


def _name_of(proc: str, pid: int) -> str:
    st = _read_stat(proc, pid)
    return st.comm if st is not None else "another process"
