"""The benchmarks still run (tiny sizes; their numbers are judged in bench/, not here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench"


def test_ui_bench_runs_on_a_tiny_profile() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH / "ui_bench.py"),
            "--functions",
            "40",
            "--stacks",
            "200",
            "--samples",
            "2000",
            "--per-refresh",
            "10",
            "--rounds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Top view" in out.stdout and "Tree view" in out.stdout
