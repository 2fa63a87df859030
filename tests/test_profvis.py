"""profvis, R's interactive profile viewer, reads what xrtop records (plain, and with line
and GC profiling), with the same samples summaryRprof counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI
from conftest import RLauncher
from conftest import rscript

XRTOP = [sys.executable, "-m", "xrtop"]


def need_profvis() -> None:
    check = subprocess.run(
        ["Rscript", "-e", "quit(status = !requireNamespace('profvis', quietly = TRUE))"],
        capture_output=True,
        check=False,
    )
    if check.returncode != 0:
        if IN_CI:
            pytest.fail("profvis is not installed: make tools installs r-cran-profvis")
        pytest.skip("profvis is not installed (apt-get install r-cran-profvis)")


@pytest.mark.parametrize(
    ("script", "flags"),
    [("busy.R", []), ("lines.R", ["--lines", "--gc"])],
    ids=["plain", "lines-gc"],
)
def test_profvis_reads_xrtop_files(
    r_launcher: RLauncher, tmp_path: Path, script: str, flags: list[str]
) -> None:
    need_profvis()
    # GIVEN a recording of a real R process
    run = r_launcher.start(script, "60")
    out = tmp_path / "x.out"
    subprocess.run(
        [*XRTOP, "record", "-p", str(run.pid), "-d", "1.5", "-o", str(out), *flags],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # WHEN profvis parses it
    result = rscript(
        f'p <- profvis:::parse_rprof("{out}"); s <- summaryRprof("{out}"); '
        "cat(length(unique(p$prof$time)), nrow(p$prof), p$interval, "
        "round(s$sampling.time / (p$interval / 1000)), "
        "mean(!is.na(p$prof$linenum[p$prof$label %in% c('inner', 'middle')])), "
        "sep = '\\n'); "
        "cat(unique(p$prof$label), sep = '\\n')"
    )
    times, rows, interval, summary_samples, with_lines, *labels = result.split("\n")
    # THEN it sees every sample summaryRprof counts, at xrtop's interval, with R's names
    assert int(times) == int(summary_samples) > 50
    assert int(rows) >= int(times)
    assert float(interval) == 10.0
    wanted = {"fib", "middle", "outer"} if script == "busy.R" else {"inner", "middle"}
    assert wanted <= set(labels)
    # AND with --lines the script's own frames carry their source lines
    if "--lines" in flags:
        assert float(with_lines) > 0.9
    else:
        assert float(with_lines) == 0.0  # no --lines: no line tokens anywhere
