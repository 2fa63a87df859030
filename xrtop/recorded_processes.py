"""The processes of a `record --subprocesses` recording, for `xrtop view F.out`: the
target's samples in `F.out`, each R child's in `F.<PID>.out` beside it.

A recording keeps no role and no PID for the target (each file is a plain Rprof.out): the
target shows as "target" with PID unknown (0), each child as "R child" with the PID its
file is named after, all "recorded".
"""

from __future__ import annotations

import glob
from pathlib import Path

from sampler.model import ProcessRow
from sampler.model import SampleLog
from sampler.processes import TARGET_ROLE
from xrtop.children import child_output_path

#: A child's role in a recording (what it was is not recorded).
CHILD_ROLE = "R child"
#: The state of every process of a recording.
RECORDED = "recorded"


def child_files(path: Path) -> dict[int, Path]:
    """The children's files beside the target's `path`, by PID: those `record
    --subprocesses` names with `child_output_path` (`F.<PID>.out` for `F.out`)."""
    stem, suffix = (path.stem, path.suffix) if path.suffix else (path.name, "")
    found: dict[int, Path] = {}
    for candidate in path.parent.glob(f"{glob.escape(stem)}.*{glob.escape(suffix)}"):
        pid = candidate.name[len(stem) + 1 : len(candidate.name) - len(suffix)]
        if (
            pid.isdigit()
            and int(pid) > 0
            and child_output_path(str(path), int(pid)) == str(candidate)
            and candidate.is_file()
        ):
            found[int(pid)] = candidate
    return dict(sorted(found.items()))


class RecordedProcesses:
    """The target's log and its children's, read from a recording (a `SampledProcesses`)."""

    def __init__(
        self, target: SampleLog, children: dict[int, SampleLog], target_pid: int = 0
    ) -> None:
        """The target's samples `target` (its PID `target_pid`, 0: not known) and each
        child's, by PID."""
        self.target_pid = target_pid
        self._logs = {target_pid: target, **children}

    def rows(self) -> list[ProcessRow]:
        """The target, then each child."""
        target = self.target_pid
        return [
            ProcessRow(
                pid,
                0 if pid == target else target,
                TARGET_ROLE if pid == target else CHILD_ROLE,
                RECORDED,
                len(log),
                0.0,
            )
            for pid, log in self._logs.items()
        ]

    def logs(self) -> dict[int, SampleLog]:
        """Each process's samples, by PID."""
        return dict(self._logs)
