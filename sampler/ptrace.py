"""Stopping one thread of another process for the few microseconds a sample takes.

`Tracer` seizes R's main thread once (PTRACE_SEIZE, which neither stops it nor changes its
signals), then per sample interrupts it, waits for the stop, lets the caller read memory, and
continues it. Signals that arrive meanwhile are delivered to the target unchanged. The kernel
itself detaches and resumes the target if xrtop dies, so even `kill -9` of xrtop leaves it
running.

All calls must come from the one thread that seized the target: Linux ties a tracee to
its tracer thread.

Between samples the tracer must notice the target's signal-delivery stops at once (a
stopped R waits for it): with SIGCHLD queued (sampler.childsignals) it sleeps until one
comes. Idle polling (sampler.idlepoll) and CPU affinity (sampler.affinity) live apart; the
libc calls are bound in sampler.libc.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import struct
import time

from sampler.affinity import bound_to_one_shared_cpu
from sampler.childsignals import CHILD_SIGNALS
from sampler.childsignals import child_signals_queued
from sampler.childsignals import wait_child_signal
from sampler.doctor import permission_error
from sampler.errors import PermissionDeniedError
from sampler.errors import ReadPermissionError
from sampler.errors import TargetGoneError
from sampler.libc import pread as _pread
from sampler.libc import ptrace as _ptrace
from sampler.libc import waitpid as _waitpid

PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_EVENT_STOP = 128
_WALL = 0x40000000
_GROUP_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
#: How long `stop()` polls for the stop before it sleeps in waitpid. A thread running on
#: another CPU stops within microseconds of the interrupt (one inter-processor interrupt:
#: 15-45 us on a 2-core virtual machine, 99th percentile), sooner than a sleeping waitpid
#: would wake again (a wake-up costs ~13 us there, all of it time the target stays
#: stopped). Polling longer only delays a thread that cannot run now: one in
#: uninterruptible sleep (disk I/O), or one waiting for the very CPU this poll occupies.
#: The scheduler sometimes puts R and xrtop's sampler on one CPU even where others idle;
#: with a 500 us bound every such stop lasted 0.5 ms, with this one ~85 us.
_SPIN_FOR = 0.00006
#: After polling, `stop()` sleeps until SIGCHLD announces the stop, keeping the GIL, for
#: up to this long; only then does it sleep in waitpid and let xrtop's other threads run.
#: Had it let them run at once, a busy main thread (the live view drawing) would keep the
#: GIL for up to 5 ms (Python's switch interval) while R stayed stopped: with R, the
#: sampler and a busy main thread on one CPU, stops took 4.4 ms on average.
_KEEP_GIL_FOR = 0.002
#: Without queued SIGCHLD, `sleep()` looks for stops this often (each look is a wake-up,
#: ~1 % of a core at this rate).
_POLL_EVERY = 0.002
#: waitpid's options for a look that does not sleep, at any kind of child (a thread, too).
_LOOK = os.WNOHANG | _WALL
#: The wait status of the stop our own interrupt causes (PTRACE_EVENT_STOP, SIGTRAP); a
#: group stop (the user's SIGSTOP) reports its stopping signal instead.
_INTERRUPT_STOP = (PTRACE_EVENT_STOP << 16) | (signal.SIGTRAP << 8) | 0x7F

# x86_64 `struct user_regs_struct`: 27 unsigned longs; rax is #10, orig_rax #15.
_X86_REGS = struct.Struct("<27Q")
_RAX, _ORIG_RAX, _RSP = 10, 15, 19
_U64 = struct.Struct("<Q")
# Kernel-internal restart codes a syscall returns when a stop interrupts it while it blocks.
_RESTART_CODES = frozenset({512, 513, 514, 516, errno.EINTR})

#: What /proc/TID/syscall holds for a thread that runs or waits for a CPU.
_RUNNING = b"running\n"


def _call(request: int, pid: int, data: int = 0, addr: int = 0) -> int:
    result: int = _ptrace(request, pid, addr, data)
    if result == -1:
        code = ctypes.get_errno()
        if code:
            raise OSError(code, os.strerror(code))
    return result


class Tracer:
    """Stops and resumes one thread (`tid`) of a process."""

    def __init__(self, tid: int) -> None:
        """Seize `tid`; raise PermissionDeniedError or TargetGoneError if that fails."""
        self.tid = tid
        self.attached = False
        self.exit_status: int | None = None
        self._regs = ctypes.create_string_buffer(_X86_REGS.size)
        self._status = ctypes.c_int()
        self._status_ref = ctypes.byref(self._status)
        self._can_read_regs = os.uname().machine == "x86_64"
        #: Whether the target is in a stop someone else asked for (SIGSTOP, Ctrl-Z).
        self.user_stopped = False
        #: Whether `sleep()` can wait for SIGCHLD (blocked in this thread) or must poll.
        self.signals_queued = child_signals_queued()
        #: Seconds `stop()` polls for the stop before it sleeps (see _SPIN_FOR); none where
        #: the target can only run on the one CPU the calling thread is bound to (a one-CPU
        #: machine or container): there it reaches its stop only once we sleep.
        self.spin_for = 0.0 if bound_to_one_shared_cpu(tid) else _SPIN_FOR
        #: Whether a SIGCHLD announcing a stop we waited for is queued (only ever with
        #: `signals_queued`).
        self._own_signal_queued = False
        #: Whether the thread is in the stop an `interrupt()` asked for, seen by
        #: `poll_stop()`: the next `stop()` returns at once.
        self._held = False
        try:
            _call(PTRACE_SEIZE, tid)
        except OSError as err:
            if err.errno == errno.ESRCH:
                raise TargetGoneError(f"process {tid} has exited") from None
            if err.errno == errno.EPERM:
                # Another tracer, Yama, another user...: the doctor says which, and the fix.
                raise permission_error(tid, "may not trace") from None
            raise PermissionDeniedError(f"cannot trace process {tid}: {err.strerror}") from None
        self.attached = True
        # Read by `running()`; None where /proc cannot tell (then it always says no).
        self._syscall_fd: int | None = None
        self._syscall_text = ctypes.create_string_buffer(16)
        with contextlib.suppress(OSError):
            path = f"/proc/{tid}/task/{tid}/syscall"
            self._syscall_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def _wait(self, options: int) -> int | None:
        """One waitpid on the target: its status (None: nothing to report with WNOHANG).

        Raises TargetGoneError, keeping the exit status, when the target has exited.
        """
        if options & os.WNOHANG:  # keeps the GIL (see sampler.libc): the stop's polling loop
            return self._reaped(_waitpid(self.tid, self._status_ref, options | _WALL))
        try:  # sleeps: let the other threads run meanwhile
            _, status = os.waitpid(self.tid, options | _WALL)
        except ChildProcessError:
            self.attached = False
            raise TargetGoneError(f"process {self.tid} has exited") from None
        return self._reported(status)

    def _reaped(self, pid: int) -> int | None:
        """The status a ctypes waitpid that returned `pid` left (None: nothing to report).

        Raises TargetGoneError, keeping the exit status, when the target has exited.
        """
        if pid == 0:
            return None
        if pid < 0:
            code = ctypes.get_errno()
            if code == errno.ECHILD:
                self.attached = False
                raise TargetGoneError(f"process {self.tid} has exited")
            raise OSError(code, os.strerror(code))
        return self._reported(self._status.value)

    def _reported(self, status: int) -> int:
        """`status`, unless it says the target has exited: then TargetGoneError."""
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self.attached = False
            self.exit_status = status
            raise TargetGoneError(f"process {self.tid} has exited")
        return status

    def _wait_stop(self, spin_for: float = 0.0, status: int | None = None) -> None:
        """Wait for our interrupt's stop, passing every signal through to the target.

        `status`: one already reaped, handled first. Polls for up to `spin_for` seconds
        (see _SPIN_FOR), then, with SIGCHLD queued, sleeps until it comes keeping the GIL
        for up to _KEEP_GIL_FOR, then sleeps in waitpid.
        """
        now = time.perf_counter()
        spin_until = now + spin_for
        keep_gil_until = now + _KEEP_GIL_FOR if self.signals_queued else 0.0
        while True:
            if status is None:
                status = self._wait(os.WNOHANG if now < spin_until or now < keep_gil_until else 0)
            if status is None:
                if now >= spin_until:
                    # A SIGCHLD left from an earlier stop only makes this return early: the
                    # loop looks again.
                    wait_child_signal(keep_gil_until - now)
                now = time.perf_counter()
                continue
            if self._took_stop(status):
                return
            status = None

    def _took_stop(self, status: int) -> bool:
        """Whether wait status `status` is the stop an interrupt asked for; a signal-delivery
        stop is passed on (the interrupt stays pending in the kernel, reported next)."""
        if not os.WIFSTOPPED(status):
            return False
        sig, event = os.WSTOPSIG(status), status >> 16
        if event == PTRACE_EVENT_STOP:
            # Our interrupt (SIGTRAP), or a group stop from SIGSTOP and friends: the user
            # stopped the target, so it must stay stopped after we read it.
            self.user_stopped = sig in _GROUP_STOP_SIGNALS
            self._own_signal_queued = self.signals_queued
            return True
        # A signal-delivery stop: hand the signal on untouched.
        try:
            _call(PTRACE_CONT, self.tid, sig)
        except OSError as err:
            if err.errno != errno.ESRCH:  # died meanwhile: waitpid reports how
                raise
        return False

    def interrupt(self) -> None:
        """Ask the thread to stop, without waiting for it: `poll_stop()` tells when it has
        (sampling several processes, each is asked first and read as it stops)."""
        if _ptrace(PTRACE_INTERRUPT, self.tid, None, None) == -1:
            code = ctypes.get_errno()
            if code != errno.ESRCH:  # gone: `poll_stop()` says so
                raise ReadPermissionError(f"cannot interrupt {self.tid}: {os.strerror(code)}")

    @property
    def held(self) -> bool:
        """Whether the thread is stopped already for the next `stop()` (`poll_stop`)."""
        return self._held

    def poll_stop(self) -> bool:
        """After `interrupt()`: whether the thread is in its stop now (then the next
        `stop()` returns at once), handing on the signals it got meanwhile; never blocks.
        Raise TargetGoneError when it has exited."""
        while True:
            status = self._reaped(_waitpid(self.tid, self._status_ref, _LOOK))
            if status is None:
                return False
            if self._took_stop(status):
                self._held = True
                return True

    def pass_signals(self) -> None:
        """Hand on every signal the target received since the last call, without blocking.

        A traced thread that gets a signal stops (signal-delivery stop) until its tracer
        lets it go on; between samples nobody waits for it, so without this a `system()`
        call's SIGCHLD would hold R stopped until the next sample. Call it often between
        samples. Raise TargetGoneError when the target has exited.
        """
        if self._own_signal_queued:
            # The stop of the last sample announced itself with a SIGCHLD that would end
            # the next `sleep()` at once, for another round of this: take it now. The
            # SIGCHLD of any other stop is taken with it (they merge), which the waitpid
            # below makes up for.
            self._own_signal_queued = False
            wait_child_signal(0.0)
        if not self.attached:
            return
        # The first look written out: this runs after every sample, and mostly finds nothing.
        status = self._reaped(_waitpid(self.tid, self._status_ref, _LOOK))
        while status is not None:
            if os.WIFSTOPPED(status):
                self._pass_on(status)
            status = self._wait(os.WNOHANG) if self.attached else None

    def _pass_on(self, status: int) -> None:
        """Let the target go on from the stop `status` reports (see `pass_signals`)."""
        sig = os.WSTOPSIG(status)
        try:
            if status >> 16 == PTRACE_EVENT_STOP:
                # A group stop (the user's SIGSTOP) stays in effect; anything else here is
                # the trap that ends one (SIGCONT): let the target run.
                self.user_stopped = sig in _GROUP_STOP_SIGNALS
                _call(PTRACE_LISTEN if self.user_stopped else PTRACE_CONT, self.tid)
            else:
                _call(PTRACE_CONT, self.tid, sig)
        except OSError as err:
            if err.errno != errno.ESRCH:
                raise

    def sleep(self, seconds: float) -> None:
        """Wait up to `seconds`, less if the target may have stopped meanwhile.

        Call `pass_signals()` before and after. With SIGCHLD queued this wakes at the
        target's first stop, else within _POLL_EVERY.
        """
        if self.signals_queued:
            signal.sigtimedwait(CHILD_SIGNALS, seconds)
        else:
            time.sleep(min(seconds, _POLL_EVERY))

    def stop(self) -> None:
        """Stop the thread; raise TargetGoneError if it is gone."""
        if self._held:  # stopped already (`poll_stop`)
            self._held = False
            return
        tid = self.tid
        if _ptrace(PTRACE_INTERRUPT, tid, None, None) == -1:
            code = ctypes.get_errno()
            if code != errno.ESRCH:  # gone: the wait below says how
                raise ReadPermissionError(f"cannot interrupt {tid}: {os.strerror(code)}")
        # The common case written out, as this runs in every sample while R is on its way
        # to the stop: poll until our interrupt's stop is reported. Anything else, or
        # nothing within `spin_for`, is for `_wait_stop`.
        until = time.perf_counter() + self.spin_for
        while (pid := _waitpid(tid, self._status_ref, _LOOK)) == 0:
            if time.perf_counter() >= until:
                self._wait_stop()
                return
        if pid == tid and self._status.value == _INTERRUPT_STOP:
            self.user_stopped = False
            self._own_signal_queued = self.signals_queued
            return
        self._wait_stop(self.spin_for, self._reaped(pid))

    def resume(self) -> None:
        """Continue the thread (or leave it in the group stop the user asked for)."""
        request = PTRACE_LISTEN if self.user_stopped else PTRACE_CONT
        if _ptrace(request, self.tid, None, None) == -1:
            code = ctypes.get_errno()
            if code == errno.ESRCH:
                raise TargetGoneError(f"process {self.tid} has exited")
            raise OSError(code, os.strerror(code))

    def running(self) -> bool:
        """Whether the thread runs, or waits for a CPU, right now; False when it sleeps or
        /proc cannot tell. One read of /proc/TID/syscall, ~1 us, made while it runs.

        A thread that runs is not waiting in a system call at a stop that follows within
        microseconds (unless it blocks in between: that sample counts as busy), so the
        stop need not read its registers (`save_registers()`).
        """
        fd = self._syscall_fd
        if fd is None:
            return False
        got = _pread(fd, self._syscall_text, len(self._syscall_text), 0)
        return got == len(_RUNNING) and self._syscall_text.raw[:got] == _RUNNING

    def save_registers(self) -> bool:
        """Copy the stopped thread's registers (one system call); False if impossible.

        Decode them with `was_in_syscall()` after resuming: the copy is ours.
        """
        if not self._can_read_regs:
            return False
        try:
            _call(PTRACE_GETREGS, self.tid, ctypes.addressof(self._regs))
        except OSError:
            return False
        return True

    def registers(self) -> bytes:
        """A copy of the last saved registers (x86-64 `struct user_regs_struct`)."""
        return self._regs.raw

    def stack_pointer(self) -> int:
        """The stack pointer in the last saved registers."""
        return int(_U64.unpack_from(self._regs, _RSP * 8)[0])

    def was_in_syscall(self) -> bool:
        """Whether the thread was waiting in a system call, by the last saved registers."""
        orig = _U64.unpack_from(self._regs, _ORIG_RAX * 8)[0]
        if orig == 0xFFFFFFFFFFFFFFFF:
            return False
        ret = _U64.unpack_from(self._regs, _RAX * 8)[0]
        return (-ret) & 0xFFFFFFFFFFFFFFFF in _RESTART_CODES

    def blocked_in_syscall(self) -> bool | None:
        """Whether the stopped thread was waiting in a system call (None: cannot tell)."""
        if not self.save_registers():
            return None
        return self.was_in_syscall()

    def detach(self) -> None:
        """Stop tracing: the target runs on as if xrtop had never been there."""
        if not self.attached:
            return
        try:
            # A seized tracee must be stopped to be detached.
            if not self._held:
                _call(PTRACE_INTERRUPT, self.tid)
                self._wait_stop()
            self._held = False
            _call(PTRACE_DETACH, self.tid)
        except (OSError, TargetGoneError):
            pass
        self.attached = False
        if self._syscall_fd is not None:
            os.close(self._syscall_fd)
            self._syscall_fd = None
