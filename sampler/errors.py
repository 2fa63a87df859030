"""Errors raised by the sampler. Each carries a user-facing message and an exit code.

Attach-time problems are raised once, before any UI owns the terminal. Per-sample problems
are never raised into a sampling loop: they are counted by kind (`SampleError.kind`).
"""

from __future__ import annotations

# Exit codes, documented in docs/troubleshooting.md ("Exit codes").
EXIT_USAGE = 2
EXIT_NO_PROCESS = 3
EXIT_NOT_R = 4
EXIT_PERMISSION = 5
EXIT_UNSUPPORTED = 6
EXIT_FILE = 7
EXIT_INTERNAL = 70


class XrtopError(Exception):
    """An error with a message meant for the user and the exit code it maps to."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str = "") -> None:
        """`message` says what happened; `hint` what to do about it."""
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class UsageError(XrtopError):
    """A bad flag or argument value."""

    exit_code = EXIT_USAGE


class NoSuchProcessError(XrtopError):
    """The PID does not name a live process (or names a thread, or a kernel thread)."""

    exit_code = EXIT_NO_PROCESS


class NotRProcessError(XrtopError):
    """The process runs no R interpreter that xrtop can find."""

    exit_code = EXIT_NOT_R


class PermissionDeniedError(XrtopError):
    """The kernel refused to let xrtop read or stop the process."""

    exit_code = EXIT_PERMISSION


class UnsupportedRError(XrtopError):
    """The target's R version or memory layout is not one xrtop can read safely."""

    exit_code = EXIT_UNSUPPORTED


class RprofFormatError(XrtopError):
    """A file is not a readable Rprof.out; names the file and the first bad line."""

    exit_code = EXIT_FILE

    def __init__(self, path: str, line: int, problem: str) -> None:
        """Record where and what the problem is."""
        super().__init__(
            f"{path}:{line}: not a valid Rprof.out file: {problem}",
            "Give xrtop a file written by R's Rprof() or by xrtop.",
        )
        self.path = path
        self.line = line


class SampleError(Exception):
    """A per-sample failure; `kind` is the counter it goes to."""

    kind = "read"


class TargetGoneError(SampleError):
    """The target exited (or became a zombie) during sampling."""

    kind = "exited"


class BadAddressError(SampleError):
    """A read hit unmapped memory (a torn or stale pointer)."""

    kind = "bad-address"


class TornSampleError(SampleError):
    """The context chain changed or failed validation while being read."""

    kind = "torn"


class ReadPermissionError(SampleError):
    """The kernel refused a read that worked before."""

    kind = "permission"
