"""The sampler's life: a target that exits mid-run, a PID that is not R, a thread, a zombie."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from conftest import REnv
from conftest import RLauncher
from conftest import sample
from conftest import wait_for

from sampler.chain import RawSample
from sampler.errors import NoSuchProcessError
from sampler.errors import NotRProcessError
from sampler.model import SampleLog
from sampler.target import attach
from sampler.thread import SamplerThread
from sampler.thread import State


@pytest.mark.parametrize("blocking", [True, False], ids=["ptrace", "nonblocking"])
def test_target_exit_mid_run_is_noticed_and_samples_kept(
    r_launcher: RLauncher, blocking: bool
) -> None:
    run = r_launcher.start("busy.R", "60")
    target = attach(run.pid)
    log = SampleLog(5000)
    ended = threading.Event()
    thread = SamplerThread(
        target, log, rate_hz=200, blocking=blocking, on_end=lambda _s: ended.set()
    )
    thread.start()
    thread.wait_ready()
    time.sleep(0.5)
    before = len(log)
    os.kill(run.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert ended.wait(5)
    assert time.monotonic() - killed_at < 1.5
    assert thread.state is State.EXITED
    assert before > 20 and len(log) >= before
    thread.stop()


def test_zombie_target_ends_sampling_without_spinning(r_launcher: RLauncher) -> None:
    # A parent that never reaps its R child: the child becomes a zombie when killed.
    parent = subprocess.Popen(
        ["sh", "-c", "Rscript -e 'repeat sum(runif(10))' & sleep 30"], start_new_session=True
    )
    try:
        rpid = wait_for(lambda: _r_child(parent.pid), 30, "R to start")
        time.sleep(1)
        target = attach(rpid)
        log = SampleLog(5000)
        thread = SamplerThread(target, log, rate_hz=500)
        thread.start()
        thread.wait_ready()
        time.sleep(0.3)
        os.kill(rpid, signal.SIGKILL)
        wait_for(lambda: thread.state is State.EXITED, 3, "the sampler to notice")
        cpu_before = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu_before < 0.2  # no busy loop after the end
        thread.stop()
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def _r_child(pid: int) -> int | None:
    import psutil

    for child in psutil.Process(pid).children(recursive=True):
        if child.name() == "R":
            return child.pid
    return None


def test_not_r_process_is_refused() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(NotRProcessError):
            attach(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_thread_id_is_refused_naming_the_process(r_launcher: RLauncher) -> None:
    # R's main thread is the process; start a workload whose R has more threads (OpenMP or
    # not, Python gives us one for sure): use our own process's thread instead.
    ready = threading.Event()
    stop = threading.Event()

    def idle() -> None:
        ready.set()
        stop.wait(10)

    t = threading.Thread(target=idle)
    t.start()
    ready.wait()
    try:
        with pytest.raises(NoSuchProcessError, match="is a thread of process"):
            attach(t.native_id or 0)
    finally:
        stop.set()
        t.join()


@pytest.mark.parametrize(
    ("env", "wrong"),
    [(REnv("host"), "4.4"), (REnv("trixie", "ns"), "4.2")],
    ids=["4.2-read-as-4.4", "4.5-read-as-4.2"],
)
def test_wrong_layout_is_refused_while_stopped(
    r_launcher: RLauncher, env: REnv, wrong: str
) -> None:
    from sampler.errors import UnsupportedRError

    run = r_launcher.start("busy.R", "60", env=env)
    target = attach(run.pid, force_version=wrong)
    thread = SamplerThread(target, SampleLog(10000), rate_hz=100)
    thread.start()
    with pytest.raises(UnsupportedRError, match="does not check out"):
        thread.wait_ready()
    assert run.tracer() == 0


def test_a_snapshot_the_decoder_rejects_is_sampled_again_while_stopped(
    r_launcher: RLauncher,
) -> None:
    # GIVEN a reader whose decoder rejects every snapshot (what a bug in the check would do)
    run = r_launcher.start("busy.R", "60")
    target = attach(run.pid)
    reader = target.reader
    reader.decode_snapshot = lambda got: None  # type: ignore[method-assign]
    full_capture = reader.capture
    captures = []

    def counted_capture() -> RawSample:
        captures.append(1)
        return full_capture()

    reader.capture = counted_capture  # type: ignore[method-assign]
    log = sample(target, 0.5)
    # THEN the samples are taken again by a full capture, named as usual
    assert len(log) > 20
    # (samples the check sent to a decode while stopped need no second stop)
    assert len(captures) > 0.8 * len(log)
    stacks = list(log.iter_stacks())
    assert sum("fib" in stack.names for stack in stacks) > 0.8 * len(stacks)
