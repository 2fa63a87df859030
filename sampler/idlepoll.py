"""Keeping idle CPUs polling while R is stopped, so R runs again at once when continued."""

from __future__ import annotations

import contextlib
import os
import struct

from sampler import libc

#: The kernel's CPU-latency request file (PM QoS): while a process holds it open with a
#: value written, no CPU picks an idle state slower than that many microseconds to leave;
#: 0 makes idle CPUs poll. The request dies with the file descriptor, however xrtop ends.
CPU_LATENCY_DEVICE = "/dev/cpu_dma_latency"
_POLL = struct.pack("=i", 0)
_NO_REQUEST = struct.pack("=i", 2_000_000_000)  # the kernel's default: any idle state


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
        if self._fd is not None and libc.write(self._fd, value, len(value)) != len(value):
            self.close()  # refused: sample without it rather than fail

    def close(self) -> None:
        """Drop the request for good."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
