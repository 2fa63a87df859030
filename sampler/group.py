"""Sampling a target and every R process below it on one schedule (`--subprocesses`).

`GroupSampler` is a `SamplerThread` whose loop samples each live R process of the session
at every tick (a round): in blocking mode each process is stopped only for its own sample.
It presents the target as a `SamplerThread` does (log, counters, state), and
the whole set through a `ProcessSet` (sampler.processes), which it alone writes.

Rounds: in blocking mode each process is asked to stop first, and read (then resumed) as
its stop comes: a busy process waiting for a CPU takes its time to stop, and the others
need not wait for it. One that has not stopped by the next round is read when it does;
until then it has not run R's code (a stop request is met the moment a thread returns to
it), so its stack is the one it stops with, and that sample counts for every round it
missed meanwhile (wall-clock sampling of a process that waits for a CPU).

Every `_SCAN_EVERY` seconds it looks for new descendants (sampler.descendants); a helper
thread locates each, so that no sample waits for it: a fork of a sampled R is the same R
(`attach_clone`: nothing is looked up again, its layout is the parent's, checked already;
watched a while for an exec), an R started anew (PSOCK, callr) is located as any target,
and its layout checked unless a process of the same R binary passed the check already.
A process that may not be traced is listed once as "not traced", with the reason; it ends
nothing.

Every process is detached on every way out of `run()`, and the kernel detaches them all
should xrtop be killed.
"""

from __future__ import annotations

import signal
import time
from array import array
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from sampler.affinity import bound_to_one_shared_cpu
from sampler.affinity import tight_timer_slack
from sampler.capture import StoppedCapture
from sampler.capture import sample_running
from sampler.childsignals import CHILD_SIGNALS
from sampler.childsignals import child_signals_queued
from sampler.childsignals import wait_child_signal
from sampler.descendants import UNNAMED_FORK
from sampler.descendants import Descendants
from sampler.descendants import Found
from sampler.descendants import read_cmdline
from sampler.descendants import role_of
from sampler.descendants import runs_r
from sampler.errors import NoSuchProcessError
from sampler.errors import NotRProcessError
from sampler.errors import SampleError
from sampler.errors import TargetGoneError
from sampler.errors import XrtopError
from sampler.idlepoll import IdlePolling
from sampler.model import SampleLog
from sampler.model import SamplerStats
from sampler.model import Stack
from sampler.processes import ENDED
from sampler.processes import NOT_TRACED
from sampler.processes import TARGET_ROLE
from sampler.processes import ProcessSet
from sampler.processes import TracedProcess
from sampler.procstat import SleepProbe
from sampler.procstat import read_stat
from sampler.procstat import session_of
from sampler.ptrace import Tracer
from sampler.target import Target
from sampler.target import attach
from sampler.target import attach_clone
from sampler.target import maps_r_at
from sampler.target import verify_layout
from sampler.thread import SamplerThread
from sampler.thread import State
from sampler.thread import count_sample

#: Seconds between looks for new descendants: a child is found 1-2 looks after it starts
#: (`Descendants` reports a process at the look after the one that saw it appear).
_SCAN_EVERY = 0.05
_LIVENESS_EVERY = 0.25
#: What a new process's samples go to (its streamed file), given its entry.
ProcessHook = Callable[[TracedProcess], Optional[Callable[[Stack], None]]]
#: Seconds after it was found during which a fork is checked for an exec.
_EXEC_WATCH = 2.0
#: The longest sleep between looks for stops in a sampling round (a SIGCHLD ends it).
_COLLECT_WAIT = 0.001
#: How long a sampling round keeps the GIL while it waits for stops (see `_collect`).
_KEEP_GIL_FOR = 0.002
#: How long a started R may take to set up its globals before xrtop gives up on it.
_STARTUP_PATIENCE = 10.0


class _Member:
    """One R process being sampled: its entry, its target and (blocking) its tracer."""

    __slots__ = (
        "awaiting",
        "capture",
        "forked",
        "last_stack",
        "missed",
        "on_sample",
        "probe",
        "process",
        "target",
        "tracer",
        "unnamed_fork",
    )

    def __init__(
        self,
        process: TracedProcess,
        target: Target,
        tracer: Tracer | None,
        capture: StoppedCapture | None,
    ) -> None:
        self.process = process
        self.target = target
        self.tracer = tracer
        self.capture = capture
        self.probe = SleepProbe(target.pid) if capture is None else None
        self.on_sample: Callable[[Stack], None] | None = None
        self.last_stack: Stack | None = None
        #: A fork whose parent's stack did not tell what made it: its own first stack will.
        self.unnamed_fork = False
        #: Asked to stop (`Tracer.interrupt`), not seen stopped yet.
        self.awaiting = False
        #: Read as a fork of its parent (`attach_clone`): until it execs something.
        self.forked = False
        #: Rounds since it was asked to stop that it has not stopped for (see `_round`).
        self.missed = 0

    def sample(self) -> tuple[Stack, float]:
        """One sample, and the seconds the process was stopped for it."""
        if self.capture is not None:
            return self.capture.sample()
        assert self.probe is not None
        reader = self.target.reader
        return reader.finish(sample_running(reader, self.probe.sleeping)), 0.0

    def exec_since_fork(self, now: float) -> bool:
        """Whether this process, read as a fork lately, has exec'd something since
        (processx and `system()` fork R, then exec: under load the exec may come after the
        fork was taken for a worker). Forks older than _EXEC_WATCH are not looked at again."""
        if not self.forked or now - self.process.stats.started_at > _EXEC_WATCH:
            return False
        try:
            return not maps_r_at(self.target.pid, self.target.mapping)
        except XrtopError:
            return False  # gone: the liveness check ends it

    def close(self) -> None:
        """Detach (the process runs on untraced) and close what was opened for it."""
        if self.tracer is not None:
            self.tracer.detach()
        if self.probe is not None:
            self.probe.close()


class GroupSampler(SamplerThread):
    """Samples a target and its R descendants until stopped, all have exited, or the
    duration passes (see the module doc). `stats()`, `last_stack`, `stop_times` and
    `exit_status` are the target's; `processes` has every process."""

    def __init__(
        self,
        target: Target,
        log: SampleLog,
        *,
        processes: ProcessSet,
        on_process: ProcessHook | None = None,
        rate_hz: float,
        blocking: bool = True,
        poll_idle: bool = True,
        duration: float | None = None,
        on_sample: Callable[[Stack], None] | None = None,
        on_end: Callable[[State], None] | None = None,
    ) -> None:
        """Prepare; `start()` attaches to the target, and to its descendants as found.
        `on_process` is called (on this thread) with each descendant's entry before its
        first sample; what it returns gets each of its samples."""
        super().__init__(
            target,
            log,
            rate_hz=rate_hz,
            blocking=blocking,
            poll_idle=poll_idle,
            duration=duration,
            on_sample=on_sample,
            on_end=on_end,
        )
        self.name = f"xrtop-sampler-{target.pid}+children"
        self.processes = processes
        self.on_process = on_process
        self._members: list[_Member] = []
        self._descendants: Descendants | None = None
        self._attacher: ThreadPoolExecutor | None = None
        #: Processes the helper thread is locating: what was found, and the stack of the
        #: parent of a fork (None: an R started anew).
        self._attaching: dict[
            Future[Target], tuple[Found, tuple[str, ...] | None, TracedProcess | None]
        ] = {}
        #: Where the samples of a fork that exec'd R went, until it is read anew.
        self._hooks: dict[TracedProcess, Callable[[Stack], None] | None] = {}
        #: R binaries (device, inode) whose layout passed the check in some process.
        self._verified: set[tuple[tuple[int, int], int]] = set()
        self._signals_queued = False

    def run(self) -> None:
        """Attach to the target, sample the group until told to stop, detach every process.
        Never raises."""
        end_state = State.DETACHED
        target = self.target
        try:
            tight_timer_slack()
            self._signals_queued = child_signals_queued()
            if self.blocking and self.poll_idle:
                self._idle_polling = IdlePolling()
            entry = TracedProcess(target.pid, 0, TARGET_ROLE, target.info.start_ticks, self.log)
            entry.stats = self._stats
            try:
                self._add(entry, target, verify=True, stop_times=self.stop_times)
            except TargetGoneError:
                end_state = State.EXITED  # exited before the first sample: not an error
                return
            except XrtopError as err:
                self.attach_error = err
                self.state = State.FAILED
                return
            self._shares_one_cpu = bound_to_one_shared_cpu(target.pid)
            self._descendants = Descendants(
                target.pid, target.info.start_ticks, session_of(target.pid)
            )
            self.state = State.RUNNING
            with self._lock:
                self._stats.started_at = time.monotonic()
            self.ready.set()
            end_state = self._loop_group()
        except Exception as err:  # a bug must not leave a process stopped or traced
            with self._lock:
                self._stats.count_error("internal", f"{type(err).__name__}: {err}")
            end_state = State.FAILED
        finally:
            self._finish(end_state)

    def _finish(self, end_state: State) -> None:
        """Detach every process, and record how sampling ended."""
        for member in list(self._members):
            self._end_member(member)
        if self._attacher is not None:
            self._attacher.shutdown(wait=False, cancel_futures=True)
        self._idle_polling.close()
        with self._lock:
            if self._stats.started_at:
                self._stats.elapsed = time.monotonic() - self._stats.started_at
        if self.state is not State.FAILED or end_state is State.FAILED:
            self.state = end_state
        self.ready.set()
        if self.on_end is not None:
            self.on_end(self.state)

    def _record_exit(self, member: _Member) -> None:
        """Note what is known once `member` is no longer sampled: its sampling time, and
        the target's wait status."""
        stats = member.process.stats
        with self._lock:
            stats.elapsed = time.monotonic() - stats.started_at
        if member.process.pid == self.target.pid and member.tracer is not None:
            self.exit_status = member.tracer.exit_status

    # -- attaching -------------------------------------------------------------------------

    def _add(
        self,
        entry: TracedProcess,
        target: Target,
        *,
        verify: bool,
        stop_times: array[float] | None = None,
        listed: bool = False,
    ) -> _Member:
        """Seize `target` (blocking mode), check its layout when `verify`, and start
        sampling it as `entry` (added to the process set unless `listed` there already);
        raise XrtopError (the process is left untraced) if not."""
        tracer = Tracer(target.pid) if self.blocking else None
        try:
            target.reader.set_recheck_head(tracer is None)
            capture = None
            if tracer is not None:
                capture = StoppedCapture(tracer, target.reader, self._idle_polling, stop_times)
            if verify and capture is not None:
                capture.verify_layout(target)
            elif verify:
                verify_layout(target)
        except BaseException:
            if tracer is not None:
                tracer.detach()
            raise
        self._verified.add(target.mapping[1:])
        entry.stats.requested_hz = self.rate_hz
        entry.stats.started_at = time.monotonic()
        member = _Member(entry, target, tracer, capture)
        self._members.append(member)
        if not listed:
            self.processes.add(entry)
        return member

    def _discover(self) -> None:
        """Have the helper thread attach to the descendants found since the last look."""
        assert self._descendants is not None
        by_pid = {m.process.pid: m for m in self._members}
        for found in self._descendants.poll():
            parent = by_pid.get(found.parent_pid) if found.parent_is_r else None
            if parent is None:
                self._submit(found, None)
            else:
                self._submit(found, parent.last_stack.names if parent.last_stack else (), parent)

    def _submit(
        self,
        found: Found,
        parent_stack: tuple[str, ...] | None,
        parent: _Member | None = None,
        entry: TracedProcess | None = None,
    ) -> None:
        """Locate `found`'s R in the helper thread (reading a binary or a fork's memory
        holds up no sample): as a fork of `parent` (whose stack was `parent_stack`) when
        given, else as an R started anew (`parent_stack` None), sampled as `entry` when it
        has one already (a fork that exec'd R since)."""
        if self._attacher is None:
            self._attacher = ThreadPoolExecutor(1, thread_name_prefix="xrtop-attach")
        if parent is not None:
            job = self._attacher.submit(attach_clone, parent.target, found.pid)
        else:
            job = self._attacher.submit(_attach_started, found.pid)
        self._attaching[job] = (found, parent_stack, entry)

    def _adopt(self) -> None:
        """Start sampling the processes the helper thread has located."""
        for job in [j for j in self._attaching if j.done()]:
            found, parent_stack, entry = self._attaching.pop(job)
            forked = parent_stack is not None
            try:
                target = job.result()
            except NotRProcessError:
                if forked:  # it exec'd R anew: located like any other
                    self._submit(found, None)
                else:
                    self._refuse(found, "not an R process", entry)
                continue
            except (XrtopError, OSError) as err:
                gone = isinstance(err, NoSuchProcessError) or not _same_process(found)
                why = err.message if isinstance(err, XrtopError) else str(err)
                self._refuse(found, "" if gone else why, entry)
                continue
            if target.info.start_ticks != found.start_ticks:
                self._refuse(found, "", entry)  # the PID was reused meanwhile
                continue
            role = role_of(found.cmdline, forked, parent_stack or ())
            verify = not forked and target.mapping[1:] not in self._verified
            member = self._add_child(found, target, role, verify, entry)
            if member is not None:
                member.forked = forked
                member.unnamed_fork = forked and role == UNNAMED_FORK

    def _add_child(
        self,
        found: Found,
        target: Target,
        role: str,
        verify: bool,
        entry: TracedProcess | None = None,
    ) -> _Member | None:
        """Start sampling descendant `found` (as `target`) as a new entry, or as `entry`
        (a fork that exec'd R since: it goes on in its row, under its new role); or list it
        as not traced (then None)."""
        target.set_lines(self.target.reader.lines is not None)
        listed = entry is not None
        if entry is None:
            log = SampleLog(self.log.interval_us)
            entry = TracedProcess(found.pid, found.parent_pid, role, found.start_ticks, log)
        elif entry.role != role:
            entry.role = role
            self.processes.set_state(entry, entry.state)
        try:
            _follow_native(self.target, target)
            member = self._add(entry, target, verify=verify, stop_times=array("f"), listed=listed)
        except (TargetGoneError, NoSuchProcessError):
            self._refuse(found, "", entry if listed else None)  # ended before its sample
            return None
        except XrtopError as err:
            self._refuse(found, err.message, entry if listed else None, role)
            return None
        assert self._descendants is not None
        self._descendants.add_r(found.pid, found.start_ticks, session_of(found.pid))
        if listed:  # its samples go on where they went
            member.on_sample = self._hooks.pop(entry, None)
        elif self.on_process is not None:
            member.on_sample = self.on_process(entry)
        return member

    def _exec_seen(self, member: _Member) -> None:
        """`member`, read as a fork, has exec'd since: stop reading it as its parent's R and
        locate the R it runs now (it goes on in the same row), if it is R."""
        _close(member, self.target)
        self._members.remove(member)
        process = member.process
        cmdline = read_cmdline(process.pid)
        found = Found(process.pid, process.parent_pid, process.start_ticks, cmdline, False)
        if runs_r(process.pid):
            self._hooks[process] = member.on_sample
            self._submit(found, None, entry=process)
            return
        self.processes.set_state(process, ENDED, "exec'd a program that is not R")
        if self._descendants is not None:  # (which may exec R in turn)
            self._descendants.pass_through(process.pid, process.start_ticks)

    def _refuse(
        self, found: Found, why: str, entry: TracedProcess | None = None, role: str = ""
    ) -> None:
        """List `found` once as not traced, saying `why`; with no reason it is gone, and
        only its `entry` (a fork that exec'd, listed already) is marked ended."""
        if entry is not None:
            self._hooks.pop(entry, None)
            self.processes.set_state(entry, NOT_TRACED if why else ENDED, why)
        elif why:
            log = SampleLog(self.log.interval_us)
            role = role or role_of(found.cmdline, False)
            entry = TracedProcess(found.pid, found.parent_pid, role, found.start_ticks, log)
            entry.state, entry.note = NOT_TRACED, why
            self.processes.add(entry)

    # -- the schedule ----------------------------------------------------------------------

    def _end_member(self, member: _Member) -> None:
        """`member` has exited: stop sampling it, keep its samples."""
        _close(member, self.target)
        self._record_exit(member)
        self._members.remove(member)
        self.processes.set_state(member.process, ENDED)
        if self._descendants is not None:
            self._descendants.forget(member.process.pid)

    def _look_after(self, now: float, liveness: bool) -> None:
        """The periodic work between samples: new descendants, ended ones, lines."""
        self._discover()
        want_lines = self.target.reader.lines is not None
        for member in list(self._members):
            if liveness and not member.target.alive():
                self._end_member(member)
            elif liveness and member.exec_since_fork(now):
                self._exec_seen(member)
            elif (member.target.reader.lines is not None) != want_lines:
                member.target.set_lines(want_lines)

    def _pass_signals(self) -> Tracer | None:
        """Hand on the signals every process got (see `Tracer.pass_signals`); return a
        tracer to sleep on (None in nonblocking mode)."""
        sleeper = None
        for member in list(self._members):
            tracer = member.tracer
            if tracer is None:
                continue
            sleeper = tracer
            if member.awaiting:
                continue  # its stop is `_collect`'s, not to be passed on
            try:
                tracer.pass_signals()
            except TargetGoneError:
                self._end_member(member)
        return sleeper

    def _loop_group(self) -> State:
        stats = self._stats
        started = stats.started_at
        deadline_end = started + self.duration if self.duration else None
        next_due = self._schedule.start(started)
        # The first look comes after the first samples: a child running already is named
        # after what its parent runs (`role_of`).
        next_scan = next_liveness = started + _SCAN_EVERY
        monotonic = time.monotonic
        while not self._stop_event.is_set():
            now = monotonic()
            if deadline_end is not None and now >= deadline_end:
                return State.DETACHED
            if now >= next_scan:
                next_scan = now + _SCAN_EVERY
                liveness = now >= next_liveness
                if liveness:
                    next_liveness = now + _LIVENESS_EVERY
                self._look_after(now, liveness)
                if not self._members and not self._attaching:
                    return State.EXITED
            if self._attaching:
                self._adopt()
            sleeper = self._pass_signals()
            self._collect(now)  # stops that came after the last round gave up on them
            wait = min(next_due - now, next_scan - now)
            if wait > 0:
                if deadline_end is not None:
                    wait = min(wait, deadline_end - now)
                self._wait(wait, sleeper.sleep if sleeper is not None else None)
                continue
            next_due = self._next_due(now, next_due)
            self._round(next_due)
        return State.DETACHED

    def _round(self, until: float) -> None:
        """Sample every process once, stopping them as the module doc says (rounds);
        `until`: when to give up waiting for the stops of this round."""
        for member in list(self._members):
            tracer = member.tracer
            if tracer is None:
                self._sample(member)
            elif member.awaiting:
                member.missed += 1
            elif not tracer.user_stopped:
                # (One stopped by someone else, SIGSTOP, has a stack that cannot change.)
                try:
                    tracer.interrupt()
                except XrtopError as err:
                    with self._lock:
                        member.process.stats.count_error("permission", err.message)
                    continue
                member.awaiting = True
        self._collect(until)

    def _collect(self, until: float) -> None:
        """Sample each process asked to stop as its stop comes, until none is left or
        `until` (monotonic) passes.

        Between stops it sleeps until a SIGCHLD announces the next, keeping the GIL for the
        first _KEEP_GIL_FOR seconds (a stopped process must not wait for xrtop's other
        threads), then letting the others (the live view) run."""
        keep_gil_until = time.monotonic() + _KEEP_GIL_FOR
        while True:
            waiting = False
            for member in list(self._members):
                tracer = member.tracer
                if tracer is None or not member.awaiting:
                    continue
                try:
                    stopped = tracer.poll_stop()
                except TargetGoneError:
                    self._end_member(member)
                    continue
                if stopped:
                    member.awaiting = False
                    self._sample(member)
                else:
                    waiting = True
            now = time.monotonic()
            if not waiting or now >= until:
                return
            wait = min(_COLLECT_WAIT, until - now)
            if not self._signals_queued:
                time.sleep(wait / 4)
            elif now < keep_gil_until:
                wait_child_signal(wait)  # a stop announces itself with SIGCHLD
            else:
                signal.sigtimedwait(CHILD_SIGNALS, wait)

    def _sample(self, member: _Member) -> None:
        """One sample of `member` into its log (and its streamed file)."""
        stats = member.process.stats
        try:
            stack, stopped = member.sample()
        except TargetGoneError:
            self._end_member(member)
            return
        except SampleError as err:
            with self._lock:
                stats.count_error(err.kind, str(err))
            return
        taken = time.monotonic()
        copies, member.missed = 1 + member.missed, 0
        with self._lock:
            for copy in range(copies):
                count_sample(stats, stack, 0.0 if copy else stopped, taken)
        for _ in range(copies):
            member.process.log.add(stack, taken)
        member.last_stack = stack
        if member.unnamed_fork and stack.names:
            # A fork runs on inside the call that made it (mcparallel, mclapply...).
            member.unnamed_fork = False
            role = role_of("", True, stack.names)
            if role != member.process.role:
                member.process.role = role
                self.processes.set_state(member.process, member.process.state)
        if member.process.pid == self.target.pid:
            self.last_stack = stack
        on_sample = self.on_sample if member.process.pid == self.target.pid else member.on_sample
        if on_sample is not None:
            for _ in range(copies):
                on_sample(stack)

    def process_stats(self, process: TracedProcess) -> SamplerStats:
        """A consistent copy of one process's counters."""
        with self._lock:
            return process.stats.copy()


def _attach_started(pid: int) -> Target:
    """`attach` to an R started anew, once it has set up the globals a stack reader reads
    first (R_NilValue: found right after its exec, R may still be starting)."""
    deadline = time.monotonic() + _STARTUP_PATIENCE
    while True:
        target = attach(pid)
        if target.reader.nil or time.monotonic() > deadline:
            return target
        time.sleep(0.02)


def _same_process(found: Found) -> bool:
    """Whether the process `found` names still runs (not gone, its PID not reused)."""
    try:
        stat = read_stat(found.pid)
    except OSError:
        return True  # there, but not readable
    return stat is not None and stat.start == found.start_ticks and stat.state not in "ZX"


def _follow_native(session_target: Target, target: Target) -> None:
    """Give a descendant native frames when the session's target has them (`--native`):
    its own unwinder (a fork maps what its parent maps only until it loads or execs
    something, so the parent's module map is not shared); raise XrtopError if its map is
    unreadable."""
    native = session_target.reader.native
    if native is not None:
        target.set_native(True, evaluator=native.evaluator)


def _close(member: _Member, session_target: Target) -> None:
    """Detach `member`; close a descendant's native unwinder (the session's target's is its
    owner's to close)."""
    member.close()
    if member.target is not session_target and member.target.reader.native is not None:
        member.target.set_native(False)
