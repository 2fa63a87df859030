"""`/proc/PID/stat`, parsed in one place: the fields xrtop reads from it.

The command name (field 2) is in parentheses and may itself hold spaces and parentheses,
so every field after it is found from the last `)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: The flag of a kernel thread (`PF_KTHREAD`).
PF_KTHREAD = 0x00200000
#: The states of a process that has exited (a zombie, or one being reaped).
EXITED_STATES = ("Z", "X")
#: The states of a thread that sleeps (interruptibly, or in uninterruptible I/O).
SLEEPING_STATES = (b"S", b"D")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat that xrtop uses."""

    comm: str
    state: str
    flags: int
    cpu_ticks: int  # utime + stime
    start: int  # start time after boot, in clock ticks
    ppid: int = 0  # the parent's PID
    session: int = 0  # the session ID


def state_letter(data: bytes) -> bytes:
    """The state field (e.g. b"R", b"S") of stat text `data`; the cheap look for a
    sampler that asks per sample whether R's thread sleeps."""
    return data.rsplit(b")", 1)[1].split()[0]


def parse_stat(data: bytes) -> ProcStat | None:
    """The fields of stat text `data`; None when it is not whole."""
    left, right = data.find(b"("), data.rfind(b")")
    fields = data[right + 2 :].split()
    if left < 0 or right < 0 or len(fields) < 20:
        return None
    return ProcStat(
        comm=data[left + 1 : right].decode(errors="replace"),
        state=fields[0].decode(),
        flags=int(fields[6]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        start=int(fields[19]),
        ppid=int(fields[1]),
        session=int(fields[3]),
    )


def read_stat(pid: int, proc: str = "/proc") -> ProcStat | None:
    """The stat fields of process `pid`; None when it is gone or its entry not whole.

    Raises PermissionError when its entry may not be read.
    """
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            data = f.read()
    except PermissionError:
        raise
    except OSError:
        return None
    return parse_stat(data)


class SleepProbe:
    """Tells whether a process's main thread sleeps now, from /proc (the idle flag of a
    sample taken without stopping R). Keeps the stat file open; `close()` it."""

    def __init__(self, pid: int) -> None:
        """Probe process `pid`'s main thread (opened at the first look)."""
        self.pid = pid
        self._fd: int | None = None

    def sleeping(self) -> bool:
        """Whether the thread sleeps (False when /proc cannot tell)."""
        try:
            if self._fd is None:
                self._fd = os.open(f"/proc/{self.pid}/task/{self.pid}/stat", os.O_RDONLY)
            return state_letter(os.pread(self._fd, 512, 0)) in SLEEPING_STATES
        except OSError:
            return False

    def close(self) -> None:
        """Close the stat file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
