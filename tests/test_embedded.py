"""Embedded R: R running inside another program that loads libR.so (littler's `r`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import IN_CI
from conftest import sample
from conftest import wait_for

from sampler.target import attach

pytestmark = pytest.mark.live

CODE = (
    "fib <- function(n) if (n < 2) n else fib(n - 1) + fib(n - 2); "
    "embedded_work <- function() fib(14); "
    'writeLines(as.character(Sys.getpid()), Sys.getenv("XRTOP_READY")); '
    "repeat embedded_work()"
)


def test_littler_embedded_r_is_profiled(tmp_path: Path) -> None:
    if shutil.which("r") is None:
        if IN_CI:
            pytest.fail("littler (r-cran-littler) is not installed: make tools installs it")
        pytest.skip("littler (r-cran-littler) is not installed")
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        ["r", "-e", CODE],
        env={**os.environ, "XRTOP_READY": str(ready)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(ready.exists, 30, "littler to start")
        # GIVEN a process whose executable is not R's, but which maps libR.so
        assert Path(f"/proc/{proc.pid}/exe").resolve().name == "r"
        log = sample(attach(proc.pid), 1)
        stacks = [s.names for s in log.iter_stacks() if s.names]
        assert len(stacks) > 50
        assert sum(s[-1] == "embedded_work" for s in stacks) > 0.9 * len(stacks)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
