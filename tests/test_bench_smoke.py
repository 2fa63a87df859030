"""The benchmarks still run (tiny sizes; their numbers are judged in bench/, not here)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sampler.idlepoll import IdlePolling

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
    assert "Top view" in out.stdout and "Tree view" in out.stdout and "Flame view" in out.stdout


def test_ui_big_bench_runs_on_a_tiny_profile() -> None:
    args = ["--functions", "40", "--stacks", "200", "--samples", "2000", "--rounds", "1"]
    out = subprocess.run(
        [sys.executable, str(BENCH / "ui_big.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    keys = ("switch view", "sort the Top view", "filter, per key typed", "window")
    for key in (*keys, "a key right after l or i"):
        assert re.search(rf"^{key}.* \d+\.\d +\d+\.\d", out.stdout, re.MULTILINE), out.stdout
    assert "Goal of issue #27" in out.stdout


@pytest.mark.live
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_big_files_bench_measures_r_view_and_convert() -> None:
    args = ["--samples", "3000", "--stacks", "300", "--repeats", "1"]
    out = subprocess.run(
        [sys.executable, str(BENCH / "big_files.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for row in (
        "R summaryRprof(FILE)",
        "xrtop view FILE, until the table shows",
        "xrtop convert --format collapsed",
        "xrtop convert --format speedscope",
    ):
        assert re.search(rf"^{re.escape(row)} +\d+\.\d\d +\d+\.\d\d", out.stdout, re.M), row
    assert "3000 samples, 300 distinct stacks" in out.stdout


@pytest.mark.live
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_the_profiling_bench_measures_every_configuration(tmp_path: Path) -> None:
    # One profiled window of each configuration, on the loop at 7 frames and on random
    # call trees: every loop row gets a slowdown from its unprofiled windows, a rate, and
    # a share from the profiler's own samples.
    report = tmp_path / "bench.json"
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--depths",
            "7",
            "--varied",
            "trees",
            "--windows",
            "1",
            "--seconds",
            "0.6",
            "--no-perf",
            "--dump-repeats",
            "1",
            "--json",
            str(report),
            # a profiler whose profile is its standard output (xrprof is not installed here)
            "--other",
            f"{sys.executable} {Path(__file__).parent / 'fake_stdout_profiler.py'} {{hz}}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    every_row = json.loads(report.read_text())["rows"]
    rows = [r for r in every_row if r["depth"] == 7]
    kinds = sorted(
        (r["kind"], r["requested_hz"], r["nonblocking"], r["cpu_poll"], r["one_cpu"]) for r in rows
    )
    # --no-cpu-poll runs where the default makes idle CPUs poll (root), for comparison
    no_poll = [("xrtop", 1000.0, False, False, False)] if IdlePolling().active else []
    assert kinds == [
        ("live", 100.0, False, True, False),
        ("live", 100.0, False, True, True),
        ("other", 100.0, False, True, False),
        ("other", 1000.0, False, True, False),
        ("rprof", 100.0, False, True, False),
        ("rprof", 1000.0, False, True, False),
        ("xrtop", 100.0, False, True, False),
        ("xrtop", 100.0, False, True, True),
        ("xrtop", 100.0, True, True, False),
        *no_poll,
        ("xrtop", 1000.0, False, True, False),
        ("xrtop", 1000.0, False, True, True),
        ("xrtop", 1000.0, True, True, False),
    ]
    for row in rows:
        assert not row["note"], row
        assert 0.5 < row["slowdown"] < 2.0, row
        assert row["samples"] > 0 and 50 < row["true_share_pct"] < 90, row
        if row["kind"] != "live":
            assert row["achieved_hz"] > 0.5 * min(row["requested_hz"], 250.0), row
        if row["kind"] == "xrtop" and not row["nonblocking"]:
            assert math.isfinite(row["stop_median_us"]), row
    # AND random call trees (stacks that rarely repeat) run under the sampling profilers
    # only, each row with a slowdown from the workload's own count, samples and no share
    trees = [r for r in every_row if r["depth"] == "trees"]
    assert sorted((r["kind"], r["requested_hz"], r["nonblocking"]) for r in trees) == [
        ("other", 100.0, False),
        ("other", 1000.0, False),
        ("xrtop", 100.0, False),
        ("xrtop", 100.0, True),
        ("xrtop", 1000.0, False),
        ("xrtop", 1000.0, True),
    ]
    for row in trees:
        assert not row["note"], row
        assert 0.5 < row["slowdown"] < 2.0, row
        assert row["all_samples"] > 0 and math.isnan(row["true_share_pct"]), row
        if row["kind"] == "xrtop" and not row["nonblocking"]:
            assert math.isfinite(row["stop_median_us"]), row
    assert "stop median on trees" in out.stdout
