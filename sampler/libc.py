"""The C library, loaded once: every libc function the sampler calls through ctypes.

`PyDLL`: these calls keep the GIL. Each takes microseconds, and most run while the target is
stopped, where handing the GIL over costs time the target waits: another thread that took it
(xrtop's main thread streams samples) could hold it for milliseconds.
"""

from __future__ import annotations

import ctypes


class IoVec(ctypes.Structure):
    """`struct iovec`: one region of a scatter read."""

    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


class Timespec(ctypes.Structure):
    """`struct timespec`."""

    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


_libc = ctypes.PyDLL(None, use_errno=True)

ptrace = _libc.ptrace
ptrace.restype = ctypes.c_long
ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)

waitpid = _libc.waitpid
waitpid.restype = ctypes.c_int
waitpid.argtypes = (ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int)

# `IdlePolling`'s writes, right before and after a stop: os.write would let another thread
# take the GIL there, delaying the stop with idle CPUs already polling.
write = _libc.write
write.restype = ctypes.c_ssize_t
write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)

# `Tracer.running()`'s read, right before a stop.
pread = _libc.pread
pread.restype = ctypes.c_ssize_t
pread.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long)

sigtimedwait = _libc.sigtimedwait
sigtimedwait.restype = ctypes.c_int
sigtimedwait.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)

sigaddset = _libc.sigaddset
sigaddset.restype = ctypes.c_int
sigaddset.argtypes = (ctypes.c_void_p, ctypes.c_int)

process_vm_readv = _libc.process_vm_readv
process_vm_readv.restype = ctypes.c_ssize_t
process_vm_readv.argtypes = (
    ctypes.c_int,
    ctypes.POINTER(IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
)

prctl = _libc.prctl
prctl.restype = ctypes.c_int
prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
