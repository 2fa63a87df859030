"""Stopping one thread of another process for the few microseconds a sample takes.

`Tracer` seizes R's main thread once (PTRACE_SEIZE, which neither stops it nor changes its
signals), then per sample interrupts it, waits for the stop, lets the caller read memory, and
continues it. Signals that arrive meanwhile are delivered to the target unchanged. The kernel
itself detaches and resumes the target if xrtop dies, so even `kill -9` of xrtop leaves it
running.

All calls must come from the one thread that seized the target: Linux ties a tracee to
its tracer thread.

Between samples the tracer must notice the target's signal-delivery stops at once (a
stopped R waits for it). The kernel announces every stop of a tracee to its tracer with
SIGCHLD; a program that blocks SIGCHLD in all its threads (`queue_child_signals()`, from
the main thread before it starts any) lets the sampler thread sleep until either its next
sample or such a stop (`Tracer.sleep()`), instead of waking every 2 ms to look, and lets
`Tracer.stop()` sleep until the stop it asked for without giving up the GIL.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import struct
import time
from collections.abc import Iterator

from sampler.doctor import permission_error
from sampler.errors import PermissionDeniedError
from sampler.errors import ReadPermissionError
from sampler.errors import TargetGoneError

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
_CHILD_SIGNALS = {signal.SIGCHLD}
#: waitpid's options for a look that does not sleep, at any kind of child (a thread, too).
_LOOK = os.WNOHANG | _WALL
#: The wait status of the stop our own interrupt causes (PTRACE_EVENT_STOP, SIGTRAP); a
#: group stop (the user's SIGSTOP) reports its stopping signal instead.
_INTERRUPT_STOP = (PTRACE_EVENT_STOP << 16) | (signal.SIGTRAP << 8) | 0x7F

# x86_64 `struct user_regs_struct`: 27 unsigned longs; rax is #10, orig_rax #15.
_X86_REGS = struct.Struct("<27Q")
_RAX, _ORIG_RAX = 10, 15
_U64 = struct.Struct("<Q")
# Kernel-internal restart codes a syscall returns when a stop interrupts it while it blocks.
_RESTART_CODES = frozenset({512, 513, 514, 516, errno.EINTR})

#: The kernel's CPU-latency request file (PM QoS): while a process holds it open with a
#: value written, no CPU picks an idle state slower than that many microseconds to leave;
#: 0 makes idle CPUs poll. The request dies with the file descriptor, however xrtop ends.
CPU_LATENCY_DEVICE = "/dev/cpu_dma_latency"
_POLL = struct.pack("=i", 0)
_NO_REQUEST = struct.pack("=i", 2_000_000_000)  # the kernel's default: any idle state

# PyDLL: these calls keep the GIL. Each takes microseconds, and most run while the target
# is stopped, where handing the GIL over costs time the target waits: another thread that
# took it (xrtop's main thread streams samples) could hold it for milliseconds.
_libc = ctypes.PyDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
_waitpid = _libc.waitpid
_waitpid.restype = ctypes.c_int
_waitpid.argtypes = (ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int)
# Also `IdlePolling`'s writes, right before and after a stop: os.write would let another
# thread take the GIL there, delaying the stop with idle CPUs already polling.
_write = _libc.write
_write.restype = ctypes.c_ssize_t
_write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
# And `Tracer.running()`'s read, right before a stop.
_pread = _libc.pread
_pread.restype = ctypes.c_ssize_t
_pread.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long)
#: What /proc/TID/syscall holds for a thread that runs or waits for a CPU.
_RUNNING = b"running\n"


def queue_child_signals() -> None:
    """Block SIGCHLD in the calling thread and so in every thread it starts afterwards.

    Call from the main thread before any other thread starts. The signals then wait in the
    process's queue, where `Tracer.sleep()` picks them up; nothing in xrtop needs SIGCHLD's
    default action (which is to ignore it). Start children in `child_signals_unblocked()`.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, _CHILD_SIGNALS)


def child_signals_queued() -> bool:
    """Whether the calling thread has SIGCHLD blocked (see `queue_child_signals()`)."""
    return signal.SIGCHLD in signal.pthread_sigmask(signal.SIG_BLOCK, ())


@contextlib.contextmanager
def child_signals_unblocked() -> Iterator[None]:
    """Unblock SIGCHLD in this thread meanwhile: a child started here inherits the mask,
    and a launched program must get the signal mask it would have without xrtop."""
    was_blocked = child_signals_queued()
    if was_blocked:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _CHILD_SIGNALS)
    try:
        yield
    finally:
        if was_blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, _CHILD_SIGNALS)


_sigtimedwait = _libc.sigtimedwait
_sigtimedwait.restype = ctypes.c_int
_sigtimedwait.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


def _signal_set(signals: set[signal.Signals]) -> ctypes.Array[ctypes.c_char]:
    mask = ctypes.create_string_buffer(128)  # sigset_t: 1024 bits in glibc and musl
    for signum in signals:
        _libc.sigaddset(mask, int(signum))
    return mask


_CHILD_SIGNAL_SET = _signal_set(_CHILD_SIGNALS)


_NO_WAIT = ctypes.byref(_Timespec(0, 0))


def _wait_child_signal(seconds: float) -> None:
    """Sleep until SIGCHLD (blocked in the calling thread) or `seconds` (< 1) pass, keeping
    the GIL (`signal.sigtimedwait` would let the other threads take it). Zero seconds: take
    a pending SIGCHLD, if any, without sleeping."""
    timeout = _NO_WAIT if seconds <= 0 else ctypes.byref(_Timespec(0, int(seconds * 1e9)))
    _sigtimedwait(_CHILD_SIGNAL_SET, None, timeout)


def bound_to_one_shared_cpu(tid: int) -> bool:
    """Whether the calling thread and thread `tid` may both run on one and the same CPU
    only (False when their affinities cannot be read)."""
    try:
        ours = os.sched_getaffinity(0)
        return len(ours) == 1 and os.sched_getaffinity(tid) == ours
    except OSError:
        return False


def _call(request: int, pid: int, data: int = 0, addr: int = 0) -> int:
    result: int = _ptrace(request, pid, addr, data)
    if result == -1:
        code = ctypes.get_errno()
        if code:
            raise OSError(code, os.strerror(code))
    return result


class IdlePolling:
    """Makes idle CPUs poll instead of halting between `on()` and `off()`.

    A stopped R leaves its CPU with nothing to run. Where that CPU halts at once (virtual
    machines whose guest halt polling is off), continuing R costs a wake-up of the CPU,
    and R runs slower for a while after it: measured on a 2-core KVM guest, 13 frames at
    1000 Hz, R lost 62 us of work per sample stopped 44 us, and 34 us with polling. The
    request exists only between `on()` and `off()` and dies with the file descriptor, so
    nothing outlives xrtop. Opening the file needs root; without it this does nothing.
    The cost: each `on()` wakes the idle CPUs once, and they poll until `off()`.
    """

    def __init__(self, path: str | None = CPU_LATENCY_DEVICE) -> None:
        """Open the request file (None: never poll); `active` says whether that worked."""
        self._fd: int | None = None
        if path is not None:
            with contextlib.suppress(OSError):
                self._fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)

    @property
    def active(self) -> bool:
        """Whether on()/off() reach the kernel."""
        return self._fd is not None

    def on(self) -> None:
        """Ask idle CPUs to poll (before stopping R)."""
        self._write(_POLL)

    def off(self) -> None:
        """Let idle CPUs halt again (after R runs on)."""
        self._write(_NO_REQUEST)

    def _write(self, value: bytes) -> None:
        if self._fd is not None and _write(self._fd, value, len(value)) != len(value):
            self.close()  # refused: sample without it rather than fail

    def close(self) -> None:
        """Drop the request for good."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
        if options & os.WNOHANG:  # keeps the GIL (see _libc): the stop's polling loop
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
                    _wait_child_signal(keep_gil_until - now)
                now = time.perf_counter()
                continue
            if not os.WIFSTOPPED(status):
                status = None
                continue
            sig, event = os.WSTOPSIG(status), status >> 16
            status = None
            if event == PTRACE_EVENT_STOP:
                # Our interrupt (SIGTRAP), or a group stop from SIGSTOP and friends: the user
                # stopped the target, so it must stay stopped after we read it.
                self.user_stopped = sig in _GROUP_STOP_SIGNALS
                self._own_signal_queued = self.signals_queued
                return
            # A signal-delivery stop: hand the signal on untouched. Our interrupt stays
            # pending in the kernel and is reported next.
            try:
                _call(PTRACE_CONT, self.tid, sig)
            except OSError as err:
                if err.errno == errno.ESRCH:
                    continue  # died meanwhile; waitpid reports how
                raise

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
            _wait_child_signal(0.0)
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
            signal.sigtimedwait(_CHILD_SIGNALS, seconds)
        else:
            time.sleep(min(seconds, _POLL_EVERY))

    def stop(self) -> None:
        """Stop the thread; raise TargetGoneError if it is gone."""
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
            _call(PTRACE_INTERRUPT, self.tid)
            self._wait_stop()
            _call(PTRACE_DETACH, self.tid)
        except (OSError, TargetGoneError):
            pass
        self.attached = False
        if self._syscall_fd is not None:
            os.close(self._syscall_fd)
            self._syscall_fd = None
