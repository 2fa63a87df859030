"""Stopping one thread of another process for the few microseconds a sample takes.

`Tracer` seizes R's main thread once (PTRACE_SEIZE, which neither stops it nor changes its
signals), then per sample interrupts it, waits for the stop, lets the caller read memory, and
continues it. Signals that arrive meanwhile are delivered to the target unchanged. The kernel
itself detaches and resumes the target if xrtop dies, so even `kill -9` of xrtop leaves it
running.

All calls must come from the one thread that seized the target: Linux ties a tracee to
its tracer thread.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct

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

# x86_64 `struct user_regs_struct`: 27 unsigned longs; rax is #10, orig_rax #15.
_X86_REGS = struct.Struct("<27Q")
_RAX, _ORIG_RAX = 10, 15
_U64 = struct.Struct("<Q")
# Kernel-internal restart codes a syscall returns when a stop interrupts it while it blocks.
_RESTART_CODES = frozenset({512, 513, 514, 516, errno.EINTR})

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)


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
        self._can_read_regs = os.uname().machine == "x86_64"
        self._group_stopped = False
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

    def _wait(self, options: int) -> int | None:
        """One waitpid on the target: its status (None: nothing to report with WNOHANG).

        Raises TargetGoneError, keeping the exit status, when the target has exited.
        """
        try:
            pid, status = os.waitpid(self.tid, options | _WALL)
        except ChildProcessError:
            self.attached = False
            raise TargetGoneError(f"process {self.tid} has exited") from None
        if pid == 0:
            return None
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self.attached = False
            self.exit_status = status
            raise TargetGoneError(f"process {self.tid} has exited")
        return status

    def _wait_stop(self) -> None:
        """Wait for our interrupt's stop, passing every signal through to the target."""
        while True:
            status = self._wait(0)
            if status is None or not os.WIFSTOPPED(status):
                continue
            sig = os.WSTOPSIG(status)
            if status >> 16 == PTRACE_EVENT_STOP:
                # Our interrupt (SIGTRAP), or a group stop from SIGSTOP and friends: the user
                # stopped the target, so it must stay stopped after we read it.
                self._group_stopped = sig in _GROUP_STOP_SIGNALS
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
        while self.attached:
            status = self._wait(os.WNOHANG)
            if status is None:
                return
            if not os.WIFSTOPPED(status):
                continue
            sig = os.WSTOPSIG(status)
            try:
                if status >> 16 == PTRACE_EVENT_STOP:
                    # A group stop (the user's SIGSTOP) stays in effect; anything else here
                    # is the trap that ends one (SIGCONT): let the target run.
                    self._group_stopped = sig in _GROUP_STOP_SIGNALS
                    _call(PTRACE_LISTEN if self._group_stopped else PTRACE_CONT, self.tid)
                else:
                    _call(PTRACE_CONT, self.tid, sig)
            except OSError as err:
                if err.errno != errno.ESRCH:
                    raise

    def stop(self) -> None:
        """Stop the thread; raise TargetGoneError if it is gone."""
        try:
            _call(PTRACE_INTERRUPT, self.tid)
        except OSError as err:
            if err.errno != errno.ESRCH:
                raise ReadPermissionError(f"cannot interrupt {self.tid}: {err.strerror}") from None
        self._wait_stop()

    def resume(self) -> None:
        """Continue the thread (or leave it in the group stop the user asked for)."""
        try:
            if self._group_stopped:
                _call(PTRACE_LISTEN, self.tid)
            else:
                _call(PTRACE_CONT, self.tid)
        except OSError as err:
            if err.errno == errno.ESRCH:
                raise TargetGoneError(f"process {self.tid} has exited") from None
            raise

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
