"""The processes of a `record --subprocesses` recording, for `xrtop view F.out`: the
target's samples in `F.out`, each R child's in `F.<PID>.out` beside it.

A recording keeps no role and no PID for the target (each file is a plain Rprof.out): the
target shows as "target" with PID unknown (0), each child as "R child" with the PID its
file is named after, all "recorded".
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from sampler.model import ProcessRow
from sampler.model import SampleLog
from xrtop.processes_view import TARGET_ROLE

#: A child's role in a recording (what it was is not recorded).
CHILD_ROLE = "R child"
#: The state of every process of a recording.
RECORDED = "recorded"


def child_files(path: Path) -> dict[int, Path]:
    """The children's files beside the target's `path`, by PID: `F.<PID>.out` for `F.out`
    (`F.<PID>` for `F`)."""
    stem, suffix = (path.stem, path.suffix) if path.suffix else (path.name, "")
    pattern = re.compile(re.escape(stem) + r"\.([1-9][0-9]*)" + re.escape(suffix))
    found: dict[int, Path] = {}
    for candidate in path.parent.glob(f"{glob.escape(stem)}.*{glob.escape(suffix)}"):
        match = pattern.fullmatch(candidate.name)
        if match is not None and candidate.is_file():
            found[int(match.group(1))] = candidate
    return dict(sorted(found.items()))


class RecordedProcesses:
    """The target's log and its children's, read from a recording (a `SampledProcesses`)."""

    def __init__(self, target: SampleLog, children: dict[int, SampleLog]) -> None:
        """The target's samples `target` and each child's, by PID."""
        self._logs = {0: target, **children}

    def rows(self) -> list[ProcessRow]:
        """The target (PID unknown: 0), then each child."""
        return [
            ProcessRow(pid, 0, CHILD_ROLE if pid else TARGET_ROLE, RECORDED, len(log), 0.0)
            for pid, log in self._logs.items()
        ]

    def logs(self) -> dict[int, SampleLog]:
        """Each process's samples, by PID (the target's: 0)."""
        return dict(self._logs)
