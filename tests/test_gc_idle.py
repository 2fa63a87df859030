"""The garbage-collector marker and idle samples, on real R processes of every version."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import IN_CI
from conftest import REnv
from conftest import RLauncher
from conftest import sample
from conftest import wait_for
from test_one_cpu import child_signals_queued_meanwhile

from sampler.decode import find_hidden_globals
from sampler.model import Aggregate
from sampler.ptrace import Tracer
from sampler.rprof import RprofOptions
from sampler.rprof import RprofWriter
from sampler.rprof import parse_rprof
from sampler.target import attach
from sampler.target import decode_gc_flag


def test_gc_flag_is_found_on_every_build(r_env: REnv, r_launcher: RLauncher) -> None:
    run = r_launcher.start("gc.R", "quiet", "60", env=r_env)
    target = attach(run.pid)
    # Every Debian build of R 4.0 to 4.6 gives the flag: exported R_gc_running up to 4.4,
    # R_gc's code from 4.5 on.
    assert target.gc_available
    exported = decode_gc_flag(target.binary)
    assert (exported is None) == (target.version[:2] >= (4, 5))
    # Where both ways work they must agree: the R_gc heuristic finds the same flag.
    memory = target.memory

    def read_pointer(address: int) -> int:
        return int.from_bytes(memory.read(address, 8), "little")

    layout = target.layout
    decoded = find_hidden_globals(target.binary, layout.bcbody, layout.bcpc, read_pointer)
    assert decoded.gc_flag is not None
    assert decoded.gc_flag == (exported if exported is not None else target.reader.gc_flag)


def test_allocating_loop_shows_gc_and_quiet_loop_none(r_env: REnv, r_launcher: RLauncher) -> None:
    # GIVEN a loop that allocates all the time
    busy = r_launcher.start("gc.R", "alloc", "60", env=r_env)
    log = sample(attach(busy.pid), 1.5)
    stacks = list(log.iter_stacks())
    gc = [s for s in stacks if s.gc]
    # THEN some samples are in GC (R collects many times a second here), not all
    assert 0 < len(gc) < len(stacks)
    # AND the GC marker sits on top of the R stack that allocated
    assert all("churn" in s.names for s in gc if s.names)
    # AND a file with --gc writes them as R does: "<GC>" first, GC header
    out = io.StringIO()
    writer = RprofWriter(out, log.interval_us, RprofOptions(gc=True))
    writer.add_all(stacks)
    text = out.getvalue()
    assert text.startswith("GC profiling: sample.interval=")
    assert parse_rprof(text).options.gc
    assert sum(line.startswith('"<GC>" ') for line in text.splitlines()) == len(gc)
    r_launcher.stop(busy)
    # GIVEN a byte-compiled loop that allocates nothing
    quiet = r_launcher.start("gc.R", "quiet", "60", env=r_env)
    log = sample(attach(quiet.pid), 1.5)
    stacks = list(log.iter_stacks())
    assert len(stacks) > 100
    # THEN no sample is in GC
    assert not any(s.gc for s in stacks)
    assert sum("count" in s.names for s in stacks) > 0.9 * len(stacks)


@pytest.mark.parametrize("blocking", [True, False], ids=["ptrace", "nonblocking"])
def test_sleeping_r_is_idle(r_env: REnv, r_launcher: RLauncher, blocking: bool) -> None:
    # GIVEN an R in Sys.sleep
    run = r_launcher.start("sleep.R", "60", env=r_env)
    log = sample(attach(run.pid), 1.0, rate=100, blocking=blocking)
    stacks = list(log.iter_stacks())
    assert len(stacks) > 50
    # THEN (nearly) every sample is idle, and its stack is where R sleeps
    idle = [s for s in stacks if s.idle]
    assert len(idle) > 0.9 * len(stacks)
    assert all(s.names[-1] == "nap" for s in idle if s.names)
    # AND idle samples stay out of percentages and files unless asked for
    agg = Aggregate(log)
    agg.update()
    assert agg.samples == len(stacks) - len(idle) and agg.idle == len(idle)
    with_idle = Aggregate(log, include_idle=True)
    with_idle.update()
    assert with_idle.samples == len(stacks)
    for keep in (False, True):
        out = io.StringIO()
        RprofWriter(out, log.interval_us, RprofOptions(idle=keep)).add_all(stacks)
        written = out.getvalue().splitlines()[1:]
        # R writes no line for a sample without frames (top level between two naps)
        expected = [s for s in stacks if (keep or not s.idle) and (s.names or s.gc)]
        assert len(written) == len(expected)


def test_registers_are_read_in_a_stop_only_when_r_was_not_running(
    r_env: REnv, r_launcher: RLauncher, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    save_registers = Tracer.save_registers

    def counted(tracer: Tracer) -> bool:
        reads.append(tracer.tid)
        return save_registers(tracer)

    monkeypatch.setattr(Tracer, "save_registers", counted)
    # GIVEN an R that computes and an R that sleeps
    busy = r_launcher.start("gc.R", "quiet", "60", env=r_env)
    asleep = r_launcher.start("sleep.R", "60", env=r_env)
    for run, runs in ((busy, True), (asleep, False)):
        # THEN /proc tells them apart, right before a stop, with the target still running
        tracer = Tracer(run.pid)
        try:
            seen = []
            for _ in range(100):
                seen.append(tracer.running())
                time.sleep(0.002)
        finally:
            tracer.detach()
        assert sum(seen) > 90 if runs else sum(seen) < 10, seen
        # AND a sample reads the registers of the sleeping R only (whether it waited in a
        # system call), not those of the one that computes (it did not)
        log = sample(attach(run.pid), 1.0, rate=100)
        stacks = list(log.iter_stacks())
        assert len(stacks) > 50
        read = reads.count(run.pid)
        assert read < 0.1 * len(stacks) if runs else read >= 0.9 * len(stacks), (read, len(stacks))
        idle = sum(s.idle for s in stacks)
        assert idle < 0.05 * len(stacks) if runs else idle > 0.9 * len(stacks), idle


def test_a_sleep_after_a_sample_is_not_cut_short_by_the_samples_own_stop(
    r_launcher: RLauncher,
) -> None:
    # GIVEN a sample's stop and resume (its stop queues a SIGCHLD for the tracer)
    run = r_launcher.start("gc.R", "quiet", "60")
    with child_signals_queued_meanwhile():
        tracer = Tracer(run.pid)
        try:
            tracer.stop()
            tracer.resume()
            # WHEN the sampler hands on signals, then sleeps until its next sample
            tracer.pass_signals()
            began = time.monotonic()
            tracer.sleep(0.2)
            slept = time.monotonic() - began
        finally:
            tracer.detach()
    # THEN it sleeps the whole time: nothing is left to wake it
    assert slept > 0.15, slept


def test_busy_r_is_not_idle(r_launcher: RLauncher) -> None:
    run = r_launcher.start("gc.R", "quiet", "60")
    stacks = list(sample(attach(run.pid), 1.0).iter_stacks())
    assert len(stacks) > 100
    assert sum(s.idle for s in stacks) < 0.05 * len(stacks)


@pytest.mark.live
def test_r_waiting_for_input_is_idle(tmp_path: Path) -> None:
    # GIVEN an R at its top level, waiting for the next line on standard input
    if not shutil.which("R"):
        if IN_CI:
            pytest.fail("R is not installed")
        pytest.skip("R is not installed")
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        ["R", "--no-echo", "--vanilla"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(f"writeLines(as.character(Sys.getpid()), '{ready}')\n".encode())
        proc.stdin.flush()
        wait_for(ready.exists, 30, "R to read its first line")
        pid = int(wait_for(lambda: ready.read_text().strip(), 10, "the PID"))
        time.sleep(0.2)
        for blocking in (True, False):
            stacks = list(sample(attach(pid), 0.5, rate=100, blocking=blocking).iter_stacks())
            # THEN every sample is idle with an empty stack
            assert len(stacks) > 20
            assert all(s.idle and not s.names for s in stacks), blocking
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
