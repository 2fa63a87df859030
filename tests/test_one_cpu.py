"""R and xrtop's sampler on one CPU (a one-CPU machine or container, or the scheduler's
choice): a stop must not wait for a CPU the sampler itself holds, and the time xrtop says R
was stopped must not include time R ran."""

from __future__ import annotations

import bisect
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psutil
from conftest import REnv
from conftest import RLauncher
from test_record import xrtop

from sampler.capture import StoppedCapture
from sampler.childsignals import queue_child_signals
from sampler.model import SampleLog
from sampler.ptrace import Tracer
from sampler.target import attach
from sampler.thread import SamplerThread
from sampler.thread import State


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """Bind the calling thread, and the threads it starts meanwhile, to `cpus`."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def child_signals_queued_meanwhile() -> Iterator[None]:
    """`queue_child_signals()` for a while: threads started meanwhile keep SIGCHLD blocked.
    The calling thread's signal mask is as before afterwards."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    queue_child_signals()
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def spin_of_a_tracer_on(pid: int, cpus: set[int]) -> float:
    """`Tracer.spin_for` of a tracer seized by a thread bound to `cpus`."""
    spins: list[float] = []

    def seize() -> None:
        with pinned(cpus):
            tracer = Tracer(pid)
            try:
                spins.append(tracer.spin_for)
            finally:
                tracer.detach()

    thread = threading.Thread(target=seize)
    thread.start()
    thread.join(30)
    return spins[0]


def test_the_stop_is_awaited_asleep_only_where_r_can_only_run_on_the_samplers_cpu(
    r_launcher: RLauncher,
) -> None:
    # GIVEN an R bound to one CPU (as `taskset -c` or a one-CPU cpuset bind it)
    run = r_launcher.start("split.R", "60")
    cpus = os.sched_getaffinity(0)
    cpu = min(cpus)
    os.sched_setaffinity(run.pid, {cpu})
    # THEN a tracer bound to that CPU sleeps at once: R cannot stop while it polls
    assert spin_of_a_tracer_on(run.pid, {cpu}) == 0
    # AND one that may run elsewhere polls first
    assert spin_of_a_tracer_on(run.pid, cpus) > 0
    for other in cpus - {cpu}:
        assert spin_of_a_tracer_on(run.pid, {other}) > 0
    assert run.alive() and run.tracer() == 0


def test_on_one_cpu_r_is_never_counted_stopped_while_it_runs(
    r_env: REnv, r_launcher: RLauncher
) -> None:
    # GIVEN R and the sampler bound to one and the same CPU
    run = r_launcher.start("split.R", "60", env=r_env)
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(run.pid, {cpu})
    target = attach(run.pid)
    r_process = psutil.Process(run.pid)
    log = SampleLog(10_000)
    thread = SamplerThread(target, log, rate_hz=100)
    # WHEN it samples at 100 Hz for 3 s
    with pinned({cpu}):
        thread.start()
    thread.wait_ready()
    r_cpu_before, began = sum(r_process.cpu_times()[:2]), time.monotonic()
    stops_before = len(thread.stop_times)
    time.sleep(3)
    stopped = sum(thread.stop_times[stops_before:])
    r_cpu, wall = sum(r_process.cpu_times()[:2]) - r_cpu_before, time.monotonic() - began
    thread.stop()
    assert thread.state is State.DETACHED
    # THEN R's CPU time and its stopped time fit in the wall-clock time: one CPU cannot run R
    # while R is stopped (this failed when a resume that lost the CPU to R counted R's run)
    assert r_cpu + stopped <= wall + 0.05, (r_cpu, stopped, wall)
    # AND the samples name R's functions as anywhere else
    stacks = list(log.iter_stacks())
    assert len(stacks) > 150
    named = sum(1 for s in stacks if {"alpha", "beta"} & set(s.names))
    assert named > 0.9 * len(stacks)


class _CPUTakingTracer:
    """A tracer whose resume loses the CPU to the target for 50 ms, as on one CPU."""

    def stop(self) -> None:
        pass

    def save_registers(self) -> bool:
        return True

    def resume(self) -> None:
        time.sleep(0.05)


def test_a_resume_that_loses_the_cpu_is_not_counted_as_stopped() -> None:
    tracer: Any = _CPUTakingTracer()
    capture = StoppedCapture(tracer, SimpleNamespace())  # type: ignore[arg-type]
    result, have_regs, stopped = capture.while_stopped(lambda: 42)
    assert (result, have_regs) == (42, True)
    assert stopped < 0.02


def test_while_r_is_stopped_no_other_python_thread_runs(r_launcher: RLauncher) -> None:
    # GIVEN R and a tracing thread bound to one CPU, so that each stop is awaited asleep
    run = r_launcher.start("split.R", "60")
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(run.pid, {cpu})
    stops: list[tuple[float, float]] = []
    done = threading.Event()

    def stop_and_resume() -> None:
        with pinned({cpu}):
            tracer = Tracer(run.pid)
            try:
                assert tracer.spin_for == 0
                for _ in range(50):
                    began = time.perf_counter()
                    tracer.stop()
                    stops.append((began, time.perf_counter()))
                    tracer.resume()
                    time.sleep(0.005)
            finally:
                tracer.detach()
                done.set()

    # WHEN this thread runs Python all along (as the live view's drawing does), with SIGCHLD
    # queued for the tracer as xrtop's commands queue it
    stamps: list[float] = []
    with child_signals_queued_meanwhile():
        thread = threading.Thread(target=stop_and_resume)
        thread.start()
        while not done.is_set():
            stamps.append(time.perf_counter())
        thread.join()
    # THEN it never ran while R was stopped: a stop that let it take the GIL could leave R
    # stopped for Python's whole switch interval (5 ms)
    assert len(stops) == 50
    inside = sum(
        bisect.bisect_left(stamps, ended) - bisect.bisect_right(stamps, began)
        for began, ended in stops
    )
    assert inside == 0, f"{inside} steps of another thread ran during stops"


def test_record_says_when_r_and_xrtop_share_one_cpu(r_launcher: RLauncher) -> None:
    run = r_launcher.start("split.R", "60")
    cpus = os.sched_getaffinity(0)
    cpu = min(cpus)
    os.sched_setaffinity(run.pid, {cpu})
    note = "R and xrtop share one CPU"
    for mode in ([], ["--nonblocking"]):
        with pinned({cpu}):
            shared = xrtop("record", "-p", str(run.pid), "-d", "0.3", "-o", os.devnull, "-v", *mode)
        assert shared.returncode == 0, shared.stderr
        assert note in shared.stderr
        if len(cpus) > 1:
            apart = xrtop("record", "-p", str(run.pid), "-d", "0.3", "-o", os.devnull, "-v", *mode)
            assert apart.returncode == 0, apart.stderr
            assert "sampling R" in apart.stderr and note not in apart.stderr
