"""`xrtop record` against real R: by PID and by launching, every way a recording ends, and
the recorded profiles checked by R's own summaryRprof (and against R's own Rprof)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import LAB_SUITES
from conftest import R_SCRIPTS
from conftest import REnv
from conftest import RLauncher
from conftest import RRun
from conftest import need
from conftest import rscript
from conftest import wait_for

from sampler.rprof import parse_rprof
from sampler.rprof import read_rprof
from xrtop.session import Wakeup

XRTOP = [sys.executable, "-m", "xrtop"]


def xrtop(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the xrtop command line to its end."""
    return subprocess.run(
        [*XRTOP, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )


@dataclass
class RSummary:
    """What utils::summaryRprof makes of a file: seconds per function, and the total."""

    total: dict[str, float]
    self: dict[str, float]
    sampling_time: float

    def share(self, name: str, *among: str) -> float:
        """`name`'s total time as a percentage of the total time of `among`."""
        return 100 * self.total.get(name, 0.0) / sum(self.total.get(n, 0.0) for n in among)


def summary_rprof(path: Path, lines: str = "hide") -> RSummary:
    """Run R's summaryRprof on `path` (fails the test if R cannot read the file)."""
    out = rscript(
        f"s <- summaryRprof({json.dumps(str(path))}, lines = {json.dumps(lines)}); "
        "bt <- s$by.total; "
        'cat(sprintf("%s\\t%.6f\\t%.6f\\n", rownames(bt), bt$total.time, bt$self.time), '
        'sep = ""); cat(sprintf("#sampling.time\\t%.6f\\n", s$sampling.time))'
    )
    total: dict[str, float] = {}
    own: dict[str, float] = {}
    sampling_time = -1.0
    for line in out.splitlines():
        name, *values = line.split("\t")
        if name == "#sampling.time":
            sampling_time = float(values[0])
        else:
            total[name.strip('"')] = float(values[0])
            own[name.strip('"')] = float(values[1])
    assert sampling_time >= 0, out
    return RSummary(total, own, sampling_time)


def sample_lines(path: Path) -> list[str]:
    """The sample lines of an Rprof.out file (no header, no #File lines)."""
    lines = path.read_text().split("\n")
    assert lines[-1] == "", "the file ends in the middle of a line"
    return [line for line in lines[1:-1] if not line.startswith("#File ")]


def summary_numbers(stderr: str) -> dict[str, float]:
    """The numbers of xrtop's closing summary paragraph."""
    found = {
        "samples": r"xrtop: (\d+) samples of R",
        "wall": r" in ([\d.]+) s;",
        "requested": r"requested ([\d.]+) Hz",
        "achieved": r"achieved ([\d.]+) Hz",
        "idle": r"; (\d+) idle",
        "written": r"(\d+) samples written",
        "mean_stop_us": r"stopped (\d+) us per sample on average",
        "p99_stop_us": r"p99 (\d+) us",
    }
    numbers = {}
    for key, pattern in found.items():
        match = re.search(pattern, stderr)
        if match:
            numbers[key] = float(match[1])
    return numbers


def assert_left_alone(run: RRun) -> None:
    """The target runs on, untraced and not stopped."""
    assert run.alive()
    assert run.tracer() == 0
    wait_for(lambda: run.state() in ("R", "S"), 5, "the target to run")


# ---------------------------------------------------------------------------------------------
# Recording a running R by PID


def test_record_by_pid_gives_a_file_summaryrprof_reads(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN R busy in fib() under middle() under outer()
    run = r_launcher.start("busy.R", "60")
    out = tmp_path / "busy.out"
    # WHEN xrtop records it for a while
    done = xrtop("record", "-p", str(run.pid), "-F", "200", "-d", "1.5", "-o", str(out))
    # THEN it succeeds and says what it did on stderr only
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    numbers = summary_numbers(done.stderr)
    for key in ("samples", "wall", "requested", "achieved", "mean_stop_us", "p99_stop_us"):
        assert key in numbers, (key, done.stderr)
    assert numbers["requested"] == 200
    # a busy R read while stopped gives no torn or unreadable sample, and every sample not
    # idle is written
    assert "; no errors; " in done.stderr, done.stderr
    assert numbers["written"] == numbers["samples"] - numbers["idle"], done.stderr
    # AND the file is R's format, with every sample the summary counted
    assert out.read_text().startswith("sample.interval=5000\n")
    lines = sample_lines(out)
    assert len(lines) == numbers["written"]
    assert all(line.endswith(" ") and line.startswith('"') for line in lines)
    # AND R's summaryRprof reads it and finds the workload's real call chain
    summary = summary_rprof(out)
    assert summary.sampling_time == pytest.approx(len(lines) * 0.005, abs=1e-6)
    assert summary.total["fib"] > 0.8 * summary.sampling_time
    assert summary.total["outer"] >= summary.total["middle"] >= summary.total["fib"]
    # AND the target runs on, untraced
    assert_left_alone(run)


def test_record_without_o_writes_the_profile_to_stdout(r_launcher: RLauncher) -> None:
    run = r_launcher.start("busy.R", "60")
    done = xrtop("record", "-p", str(run.pid), "-d", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sample.interval=10000\n")
    assert "samples of R" in done.stderr and "samples of R" not in done.stdout
    profile = parse_rprof(done.stdout)
    assert sum("fib" in s.names for s in profile.stacks) > 0.8 * len(profile.stacks)


def test_duration_bounds_the_recording(r_launcher: RLauncher, tmp_path: Path) -> None:
    # GIVEN an R that runs far longer than we record
    run = r_launcher.start("busy.R", "60")
    out = tmp_path / "d.out"
    started = time.monotonic()
    done = xrtop("record", "-p", str(run.pid), "-F", "100", "-d", "2", "-o", str(out))
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    # THEN xrtop stopped by itself (R would run for a minute) ...
    assert took < 30 and run.alive()
    # ... after about duration x rate samples (loose: the machine is shared and loaded)
    numbers = summary_numbers(done.stderr)
    assert numbers["wall"] >= 1.95
    lines = sample_lines(out)
    assert 0.75 * 200 <= len(lines) <= 1.05 * 200 + 2, len(lines)
    assert summary_rprof(out).sampling_time == pytest.approx(len(lines) * 0.01, abs=1e-6)


def test_nonblocking_never_stops_the_target(r_launcher: RLauncher, tmp_path: Path) -> None:
    run = r_launcher.start("busy.R", "60")
    out = tmp_path / "nb.out"
    done = xrtop("record", "-p", str(run.pid), "--nonblocking", "-d", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "target never stopped" in done.stderr
    summary = summary_rprof(out)
    assert summary.total["fib"] > 0.5 * summary.sampling_time
    assert_left_alone(run)


@pytest.mark.parametrize("suite", ["sid", "bullseye"])  # the newest and oldest R layouts
def test_record_in_a_container_like_namespace(
    suite: str, r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN R running in its own mount namespace and root (the lab's --ns mode)
    env = REnv(suite, "ns")
    run = r_launcher.start("busy.R", "60", env=env)
    out = tmp_path / "ns.out"
    done = xrtop("record", "-p", str(run.pid), "-F", "200", "-d", "1.5", "-o", str(out), "-v")
    assert done.returncode == 0, done.stderr
    major, minor = LAB_SUITES[suite]
    assert f"sampling R {major}.{minor}." in done.stderr
    # THEN the host's R reads the profile and sees the same call chain
    summary = summary_rprof(out)
    assert summary.total["fib"] > 0.8 * summary.sampling_time
    assert summary.total["outer"] >= summary.total["middle"] >= summary.total["fib"]
    assert_left_alone(run)


OPTIONS_WORKLOAD = """
src <- file.path(tempdir(), "work.R")
writeLines(c(
  "work <- function() {",
  "  x <- 0",
  "  for (i in 1:2e5) x <- x + i",
  "  x",
  "}",
  "nap <- function() Sys.sleep(0.05)",
  "churn <- function() lapply(1:2000, function(i) rnorm(10))",
  "loop <- function() repeat { work(); nap(); churn() }"), src)
options(keep.source = TRUE)
source(src)
path <- Sys.getenv("XRTOP_READY")
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
loop()
"""


@pytest.mark.parametrize(
    "flags", [[], ["--gc"], ["--lines"], ["--idle"], ["--gc", "--lines", "--idle"]]
)
def test_every_rprof_variant_xrtop_writes_is_read_by_summaryrprof(
    flags: list[str], r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN R with source references, computing, sleeping and allocating in turn
    script = tmp_path / "options.R"
    script.write_text(OPTIONS_WORKLOAD)
    run = r_launcher.start(str(script))
    out = tmp_path / "variant.out"
    done = xrtop("record", "-p", str(run.pid), "-d", "1.5", "-o", str(out), *flags)
    assert done.returncode == 0, done.stderr
    # THEN the header names what the file holds, as R's Rprof would
    header = out.read_text().split("\n", 1)[0]
    prefix = ("GC profiling: " if "--gc" in flags else "") + (
        "line profiling: " if "--lines" in flags else ""
    )
    assert header == prefix + "sample.interval=10000"
    # AND R reads it, with the locations when there are any
    summary = summary_rprof(out, lines="both" if "--lines" in flags else "hide")
    assert summary.total["work"] > 0 and summary.total["churn"] > 0
    if "--lines" in flags:
        assert "#File 1: " in out.read_text()
        assert any(name.startswith("work.R#") for name in summary.total)
    # AND time spent asleep is there only when asked for (R's own Rprof never has it)
    nap = summary.total.get("nap", 0.0) / summary.sampling_time
    assert nap > 0.15 if "--idle" in flags else nap < 0.1


# ---------------------------------------------------------------------------------------------
# Ending a recording from outside


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_interrupted_recording_leaves_a_readable_file(
    how: str, r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN xrtop recording a busy R with no end in sight
    run = r_launcher.start("busy.R", "60")
    out = tmp_path / "cut.out"
    proc = subprocess.Popen(
        [*XRTOP, "record", "-p", str(run.pid), "-F", "200", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # WHEN samples have reached the file while it runs (streaming, flushed as it goes)
        wait_for(lambda: out.exists() and out.read_text().count("\n") > 100, 60, "streamed samples")
        before = len(sample_lines_so_far(out))
        # AND xrtop is stopped by the signal
        proc.send_signal(getattr(signal, how))
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # THEN the file is complete: whole lines, at least what was there before, and R reads it
    lines = sample_lines(out)
    assert len(lines) >= before
    summary = summary_rprof(out)
    assert summary.sampling_time == pytest.approx(len(lines) * 0.005, abs=1e-6)
    assert summary.total["fib"] > 0.8 * summary.sampling_time
    if how != "SIGKILL":
        # AND a clean stop says what it got, and the file holds all of it
        assert proc.returncode == 0, stderr
        assert summary_numbers(stderr)["written"] == len(lines)
    # AND the target runs on untraced, whatever happened to xrtop
    assert_left_alone(run)


def sample_lines_so_far(path: Path) -> list[str]:
    """Complete sample lines of a file still being written."""
    text = path.read_text()
    return [line for line in text[: text.rfind("\n")].split("\n")[1:] if line]


# ---------------------------------------------------------------------------------------------
# Launching the program to record


EXIT_SCRIPT = """
first <- function() { t <- proc.time()[[3]]; while (proc.time()[[3]] - t < 0.5) NULL }
first()
cat("to stdout\\n"); message("to stderr")
second <- function() { t <- proc.time()[[3]]; while (proc.time()[[3]] - t < 0.3) NULL }
second()
cat("done\\n")
quit(status = 3)
"""


@pytest.mark.live
def test_launch_records_from_the_first_statement_and_passes_the_exit_code(
    tmp_path: Path,
) -> None:
    need(REnv("host"))
    script = tmp_path / "exit3.R"
    script.write_text(EXIT_SCRIPT)
    out = tmp_path / "launched.out"
    # GIVEN the program's own behaviour without xrtop
    plain = subprocess.run(
        ["Rscript", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert plain.returncode == 3
    # WHEN xrtop launches and records it
    done = xrtop("record", "-F", "200", "-o", str(out), "--", "Rscript", str(script))
    # THEN its exit code comes through, and its output is untouched: the same stdout, and
    # its stderr with only xrtop's own "xrtop:" lines added
    assert done.returncode == 3, done.stderr
    assert done.stdout == plain.stdout
    theirs = [line for line in done.stderr.splitlines() if not line.startswith("xrtop: ")]
    assert theirs == plain.stderr.splitlines()
    assert "profile written to" in done.stderr
    # AND the profile covers the program from its first statement to its end: sampling
    # began during R's startup (R is held while xrtop attaches), before first() ran
    stacks = read_rprof(out).stacks
    starts = next(i for i, s in enumerate(stacks) if "first" in s.names)
    assert starts > 0 and ".First.sys" in {n for s in stacks[:starts] for n in s.names}
    first = sum(s.names[-1:] == ("first",) for s in stacks)
    second = sum(s.names[-1:] == ("second",) for s in stacks)
    assert first >= 0.6 * 0.5 * 200, first
    assert second >= 0.6 * 0.3 * 200, second
    summary = summary_rprof(out)
    assert summary.total["first"] > summary.total["second"] > 0


@pytest.mark.live
def test_launch_without_o_writes_a_new_file_and_keeps_stdout_clean(tmp_path: Path) -> None:
    need(REnv("host"))
    script = tmp_path / "quick.R"
    script.write_text('f <- function() for (i in 1:3e6) NULL\nf()\ncat("only this\\n")\n')
    done = xrtop("record", "--", "Rscript", str(script), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "only this\n"
    made = list(tmp_path.glob("xrtop-*.out"))
    assert len(made) == 1
    assert str(made[0].name) in done.stderr
    summary_rprof(made[0])  # R reads it (possibly few samples: the script is short)
    assert made[0].read_text().startswith("sample.interval=10000\n")


@pytest.mark.live
def test_a_signal_to_xrtop_goes_on_to_the_launched_program(tmp_path: Path) -> None:
    # GIVEN xrtop recording a program it launched, which would run for a minute
    need(REnv("host"))
    out = tmp_path / "launched.out"
    proc = subprocess.Popen(
        [*XRTOP, "record", "-F", "200", "-o", str(out), "--", "Rscript",
         str(R_SCRIPTS / "busy.R"), "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: out.exists() and out.read_text().count("\n") > 50, 60, "samples")
        # WHEN only xrtop is sent SIGTERM (as a job scheduler would)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # THEN the program got it too and xrtop reports how it ended, as a shell would
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    # AND the profile is complete (R's startup included: launching records from the start)
    summary = summary_rprof(out)
    assert summary.total["fib"] > 0.8 * summary.total["outer"] > 0
    assert summary_numbers(stderr)["written"] == len(sample_lines(out))


def test_launch_of_a_program_that_is_not_r_is_refused(tmp_path: Path) -> None:
    done = xrtop("record", "-o", str(tmp_path / "x.out"), "--", "false")
    assert done.returncode == 4
    assert done.stderr.startswith("xrtop: ") and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------------
# Against R's own profiler


def split_shares(path: Path) -> float:
    """alpha's share (percent) of alpha + beta in summaryRprof's totals of `path`."""
    return summary_rprof(path).share("alpha", "alpha", "beta")


@pytest.mark.live
def test_split_matches_rs_own_rprof(tmp_path: Path) -> None:
    # GIVEN a workload whose time splits 70/30 between alpha() and beta(), measured in R
    need(REnv("host"))
    seconds = "10"  # of CPU time: >= 1000 samples at R's 10 ms however loaded the machine is
    script = str(R_SCRIPTS / "split.R")
    truth = tmp_path / "truth.txt"
    # WHEN R's own Rprof profiles it (interval 0.01: R >= 4.3 bumps anything smaller)
    theirs = tmp_path / "R.out"
    rprof_run = subprocess.Popen(
        ["Rscript", script, seconds, f"--rprof={theirs}", f"--report={truth}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    # AND, separately, xrtop records it: another R process, at the same time (split.R and
    # Rprof count CPU time, and R preempted is sampled in alpha or beta alike: sharing the
    # CPUs changes neither split)
    ours = tmp_path / "xrtop.out"
    try:
        done = xrtop("record", "-F", "200", "-o", str(ours), "--", "Rscript", script, seconds)
    finally:
        _, rprof_err = rprof_run.communicate(timeout=120)
    assert done.returncode == 0, done.stderr
    assert rprof_run.returncode == 0, rprof_err
    alpha, beta = (float(x) for x in truth.read_text().split())
    assert 100 * alpha / (alpha + beta) == pytest.approx(70, abs=3), (alpha, beta)  # sane
    # THEN summaryRprof finds the same split in both files
    assert summary_rprof(theirs).sampling_time > 8  # enough samples for 2 points
    measured = (split_shares(ours), split_shares(theirs), 100 * alpha / (alpha + beta))
    assert measured[0] == pytest.approx(measured[1], abs=2), measured


# ---------------------------------------------------------------------------------------------
# User mistakes: one line, a documented exit code, no file left behind


def test_wrong_pid_fails_cleanly_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "never.out"
    done = xrtop("record", "-p", "999999999", "-o", str(out))
    assert done.returncode == 3
    assert "Traceback" not in done.stderr and done.stderr.startswith("xrtop: ")
    assert not out.exists()


def test_a_process_that_is_not_r_is_refused(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        done = xrtop("record", "-p", str(sleeper.pid), "-o", str(tmp_path / "x.out"))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert done.returncode == 4, done.stderr
    assert not (tmp_path / "x.out").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["record"],
        ["record", "-p", "1", "--", "Rscript", "x.R"],
        ["record", "-p", "1", "-F", "0"],
        ["record", "-p", "1", "-d", "-1"],
        ["record", "-p", "1", "--format", "perf"],
        ["record", "-p", "one"],
        ["record", "-m", "--nonblocking", "-p", "1"],
        ["record", "--evaluator-frames", "-p", "1"],
        ["dump", "--native", "--nonblocking", "1"],
    ],
    ids=[
        "nothing",
        "pid-and-command",
        "rate-0",
        "negative-duration",
        "format",
        "pid-text",
        "native-nonblocking",
        "evaluator-frames-alone",
        "dump-native-nonblocking",
    ],
)
def test_usage_mistakes_are_one_message_and_exit_2(args: list[str]) -> None:
    done = xrtop(*args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("xrtop: ") and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) <= 2


def test_rates_up_to_1000_hz_are_accepted(r_launcher: RLauncher, tmp_path: Path) -> None:
    run = r_launcher.start("busy.R", "60")
    out = tmp_path / "fast.out"
    done = xrtop("record", "-p", str(run.pid), "-F", "1000", "-d", "1", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("sample.interval=1000\n")
    assert summary_rprof(out).total["fib"] > 0
    assert_left_alone(run)


# ---------------------------------------------------------------------------------------------
# The recording's main thread sleeps between flushes, and wakes at once when it must


def test_a_signal_handler_wakes_the_recordings_main_thread_at_once() -> None:
    # GIVEN the main thread asleep for up to 20 s, as `record` sleeps between flushes
    wakeup = Wakeup()
    previous = signal.signal(signal.SIGALRM, lambda _signum, _frame: wakeup.wake())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        started = time.monotonic()
        # WHEN a signal arrives meanwhile, whose handler wakes it
        wakeup.wait(20)
        # THEN it wakes then, not when its sleep would have ended
        assert time.monotonic() - started < 10
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_end_of_sampling_wakes_the_recordings_main_thread_at_once() -> None:
    # GIVEN the main thread asleep for up to 20 s
    wakeup = Wakeup()

    # WHEN another thread (the sampler, ending) wakes it, even twice
    def wake_twice() -> None:
        wakeup.wake()
        wakeup.wake()

    waker = threading.Timer(0.05, wake_twice)
    waker.start()
    started = time.monotonic()
    wakeup.wait(20)
    # THEN it wakes then
    assert time.monotonic() - started < 10
    waker.join()
    # AND a wake-up before a sleep ends that sleep at once, and only that one
    wakeup.wake()
    started = time.monotonic()
    wakeup.wait(20)
    assert time.monotonic() - started < 10
    started = time.monotonic()
    wakeup.wait(0.2)
    assert time.monotonic() - started >= 0.15
