"""The target never suffers and no sample is lost: xrtop killed at random moments, signals
sent to a profiled R, a target that exits, dies, turns zombie or whose PID is reused, and
every way `xrtop record` can end leaving a file R's own summaryRprof reads.

Everything here runs the real CLI (or the real sampler) against real R processes.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import R_SCRIPTS
from conftest import RLauncher
from conftest import RRun
from conftest import rscript
from conftest import tracer_of
from conftest import wait_for
from test_idle_polling import latency_limit
from test_idle_polling import latency_reader

from sampler.errors import EXIT_INTERNAL
from sampler.model import SampleLog
from sampler.rprof import parse_rprof
from sampler.target import attach
from sampler.thread import SamplerThread
from sampler.thread import State

XRTOP = str(Path(sys.executable).with_name("xrtop"))


def ready_pid(ready: Path) -> int:
    """The PID an R workload wrote to its ready file (waiting until the write is whole)."""
    text = wait_for(lambda: ready.exists() and ready.read_text().strip(), 60, "the ready file")
    return int(text)


pytestmark = pytest.mark.live


def cpu_latency_limit() -> int | None:
    """The machine's CPU-latency limit now (None: the file needs root)."""
    try:
        with latency_reader() as fd:
            return latency_limit(fd)
    except PermissionError:
        return None


def start_unprofiled(tmp: Path, script: str, *args: str) -> subprocess.Popen[bytes]:
    """Start an R workload without xrtop (its reference behaviour)."""
    return subprocess.Popen(
        ["Rscript", str(R_SCRIPTS / script), *args],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_record(pid: int, out: Path, *extra: str) -> subprocess.Popen[str]:
    """`xrtop record -p PID -o OUT` in the background, its stderr captured."""
    out_pid[out] = pid
    return subprocess.Popen(
        [XRTOP, "record", "-p", str(pid), "-o", str(out), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_sampling(out: Path, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    """Wait until xrtop traces its target and has written the file's header."""

    def tracing() -> bool:
        if proc.poll() is not None:
            return True
        if not (out.exists() and out.stat().st_size > 0):
            return False
        pid = out_pid.get(out)
        if pid is None:
            return True
        tracer = tracer_of(pid)  # a thread's ID: xrtop's sampler thread
        return tracer != 0 and Path(f"/proc/{proc.pid}/task/{tracer}").exists()

    wait_for(tracing, timeout, "xrtop to attach")
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""


#: The target PID of each output file (set by `start_record`).
out_pid: dict[Path, int] = {}


def assert_untouched(run: RRun) -> None:
    """The target runs on: not stopped, not traced."""
    assert run.tracer() == 0
    # A traced-stop or a job-control stop is never right here; sample a few times since
    # the state letter is a snapshot.
    for _ in range(5):
        assert run.state() not in ("t", "T"), run.state()
        time.sleep(0.01)


def summary_rprof_samples(path: Path) -> int:
    """The number of samples R's own summaryRprof counts in `path` (it must read it)."""
    out = rscript(
        f"s <- summaryRprof({str(path)!r}); "
        "cat(if (is.null(s$sampling.time)) 0 else round(s$sampling.time / "
        "s$sample.interval), '\\n')"
    )
    return int(out.split()[-1])


def r_wait(run: RRun, timeout: float = 120) -> int:
    """Wait for a host R workload started by the launcher; return its exit code."""
    assert run.handle is not None
    return run.handle.wait(timeout)


# -- the target is never harmed ---------------------------------------------------------------


def test_sigkill_of_xrtop_at_random_moments_leaves_the_target_running(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN the checksum an unprofiled run of a deterministic workload writes (in another
    # R, at the same time)
    steps = "100000"
    reference = tmp_path / "reference.txt"
    unprofiled = start_unprofiled(tmp_path, "checksum.R", steps, str(reference))
    # WHEN the same workload runs while xrtop (1000 Hz) is killed with SIGKILL again and
    # again, at random moments from its start-up through its sampling
    profiled = tmp_path / "profiled.txt"
    try:
        run = r_launcher.start("checksum.R", steps, str(profiled))
        rng = random.Random(8)
        kills = 0
        # (xrtop asks idle CPUs to poll around each stop, where it may: see IdlePolling)
        limit_before = cpu_latency_limit()
        while kills < 25 and run.alive():
            out = tmp_path / f"kill-{kills}.out"
            proc = start_record(run.pid, out, "-F", "1000")
            time.sleep(rng.uniform(0.1, 0.9))
            proc.kill()
            proc.wait(10)
            kills += 1
            if not run.alive():
                break
            # THEN after each kill the target is neither stopped nor traced
            assert_untouched(run)
            # AND no request to keep CPUs polling outlives xrtop
            assert cpu_latency_limit() == limit_before
            # AND the streamed file, if any, holds whole samples only
            text = out.read_text() if out.exists() else ""
            if text:
                assert parse_rprof(text, str(out)).warnings == ()  # no line cut off
        assert kills >= 8, "the workload ended too soon to test much"
        # AND the workload finished normally with the same result as without xrtop
        assert r_wait(run) == 0
        assert unprofiled.wait(120) == 0
    finally:
        if unprofiled.poll() is None:
            unprofiled.kill()
            unprofiled.wait()
    assert profiled.read_text() == reference.read_text()


def _profiled_signals_run(
    r_launcher: RLauncher,
    tmp_path: Path,
    mode: str,
    send: list[int] | None = None,
    rate: str = "1000",
    r_timeout: float = 120,
) -> tuple[int, str, Path, str]:
    """Run signals.R MODE under `xrtop record -F RATE`, sending `send` signals to R.

    Returns R's exit code, what R wrote, the profile path, and xrtop's stderr.
    """
    outfile = tmp_path / f"{mode}-profiled.txt"
    go = tmp_path / "go"
    run = r_launcher.start("signals.R", mode, str(outfile), extra_env={"XRTOP_GO": str(go)})
    profile = tmp_path / f"{mode}.out"
    proc = start_record(run.pid, profile, "-F", rate)
    wait_sampling(profile, proc)
    go.touch()
    for sig in send or []:
        time.sleep(0.4)
        os.kill(run.pid, sig)
    code = r_wait(run, r_timeout)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return code, outfile.read_text() if outfile.exists() else "", profile, err


def _unprofiled_signals_run(
    tmp_path: Path, mode: str, send: list[int] | None = None
) -> tuple[int, str]:
    outfile = tmp_path / f"{mode}-plain.txt"
    ready = tmp_path / f"{mode}-ready"
    proc = subprocess.Popen(
        ["Rscript", str(R_SCRIPTS / "signals.R"), mode, str(outfile)],
        env={**os.environ, "XRTOP_READY": str(ready)},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: ready.exists() or proc.poll() is not None, 60, "R to start")
        pid = ready_pid(ready)
        # Sleep as the profiled run does before each signal, once xrtop is attached.
        for sig in send or []:
            time.sleep(0.4)
            os.kill(pid, sig)
        code = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, outfile.read_text() if outfile.exists() else ""


@pytest.mark.parametrize(
    ("mode", "send"),
    [
        ("system", []),  # 200 system() calls: 200 SIGCHLDs R must receive
        ("fork", []),  # parallel::mclapply forks workers and collects their results
        ("interrupt", [signal.SIGINT] * 3),  # R turns SIGINT into an interrupt condition
        ("wait", [signal.SIGALRM]),
        ("wait", [signal.SIGUSR1]),
        ("wait", [signal.SIGTERM]),
    ],
    ids=["sigchld-system", "fork-mclapply", "sigint", "sigalrm", "sigusr1", "sigterm"],
)
def test_signals_reach_the_target_as_without_xrtop(
    r_launcher: RLauncher, tmp_path: Path, mode: str, send: list[int]
) -> None:
    # GIVEN what R does with these signals when nothing profiles it
    plain_code, plain_out = _unprofiled_signals_run(tmp_path, mode, send)
    assert plain_out, "the workload wrote nothing"
    # WHEN the same happens while xrtop samples it at 1000 Hz
    code, out, profile, err = _profiled_signals_run(r_launcher, tmp_path, mode, send)
    # THEN R ends the same way and observed the same things
    assert code == plain_code
    assert out == plain_out
    # AND xrtop noticed the end and left a profile R reads
    assert "the target exited" in err
    assert summary_rprof_samples(profile) > 0


def test_signals_reach_the_target_at_once_between_slow_samples(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN R making 200 system() calls, each of which ends with a SIGCHLD that stops the
    # traced R until xrtop hands it on
    plain_code, plain_out = _unprofiled_signals_run(tmp_path, "system")
    # WHEN xrtop samples once a second (it must not wait for its next sample to hand each
    # signal on: 200 of them would then take ~100 s; they take ~1 s without xrtop)
    code, out, _, err = _profiled_signals_run(
        r_launcher, tmp_path, "system", rate="1", r_timeout=30
    )
    # THEN R ends the same way and observed the same things
    assert (code, out) == (plain_code, plain_out)
    assert "the target exited" in err


def test_killed_target_is_noticed_and_the_profile_kept(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    run = r_launcher.start("busy.R", "60")
    profile = tmp_path / "killed.out"
    proc = start_record(run.pid, profile, "-F", "500")
    wait_sampling(profile, proc)
    time.sleep(1.0)
    os.kill(run.pid, signal.SIGKILL)
    # xrtop ends on its own (it notices within a second; the bound here is generous)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "the target exited" in err
    assert summary_rprof_samples(profile) > 100


def test_zombie_target_ends_sampling_without_spinning(tmp_path: Path) -> None:
    # GIVEN an R child whose parent (a shell that became `sleep`) never reaps it
    ready = tmp_path / "ready"
    parent = subprocess.Popen(
        ["sh", "-c", f"Rscript {R_SCRIPTS / 'busy.R'} 3 & exec sleep 120"],
        env={**os.environ, "XRTOP_READY": str(ready)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(ready.exists, 60, "R to start")
        pid = ready_pid(ready)
        profile = tmp_path / "zombie.out"
        # WHEN xrtop records it and R finishes (and stays a zombie)
        proc = start_record(pid, profile, "-F", "200")
        wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30, "a zombie")
        # THEN xrtop ends by itself, its CPU time small, and the profile is kept
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == 0, err
        assert "the target exited" in err
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        cpu = usage.ru_utime + usage.ru_stime
        # 3 s of sampling at 200 Hz; a spinning sampler would burn the rest of its time too
        assert cpu < 2.5, cpu
        assert summary_rprof_samples(profile) > 0
        # AND a zombie is refused with a clear message when attached to afresh
        again = subprocess.run(
            [XRTOP, "record", "-p", str(pid), "-o", str(tmp_path / "z2.out")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert again.returncode == 3
        assert "zombie" in again.stderr and "Traceback" not in again.stderr
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def test_pid_reuse_is_noticed(r_launcher: RLauncher) -> None:
    # GIVEN a sampler on an R process whose recorded start time no longer matches, as when
    # the PID now names a different process
    run = r_launcher.start("busy.R", "60")
    target = attach(run.pid)
    target.info = dataclasses.replace(target.info, start_ticks=target.info.start_ticks + 1)
    ended: list[State] = []
    thread = SamplerThread(target, SampleLog(5000), rate_hz=200, on_end=ended.append)
    thread.start()
    thread.wait_ready()
    # THEN it stops by itself with the state saying so, and the process is left alone
    thread.join(5)
    assert not thread.is_alive()
    assert ended == [State.EXITED]
    assert_untouched(run)


def test_stopped_target_stays_stopped_and_resumes_on_sigcont(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN a profiled R that the user stops with SIGSTOP
    run = r_launcher.start("busy.R", "60")
    profile = tmp_path / "stopped.out"
    proc = start_record(run.pid, profile, "-F", "500")
    wait_sampling(profile, proc)
    os.kill(run.pid, signal.SIGSTOP)
    time.sleep(0.5)
    # THEN it stays stopped while sampled
    assert run.state() in ("t", "T")
    before = psutil.Process(run.pid).cpu_times().user
    time.sleep(0.3)
    assert psutil.Process(run.pid).cpu_times().user == before
    # AND SIGCONT lets it run again, while still sampled
    os.kill(run.pid, signal.SIGCONT)
    time.sleep(0.3)
    wait_for(lambda: psutil.Process(run.pid).cpu_times().user > before + 0.05, 10, "R to run")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert_untouched(run)


# -- no sample is lost ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how", ["SIGINT", "SIGTERM", "SIGHUP", "duration", "target-exits", "internal-error"]
)
def test_every_ending_leaves_a_complete_profile(
    r_launcher: RLauncher, tmp_path: Path, how: str
) -> None:
    run = r_launcher.start("busy.R", "3" if how == "target-exits" else "60")
    profile = tmp_path / f"{how}.out"
    extra = ["-F", "500"]
    if how == "duration":
        extra += ["-d", "1.5"]
    if how == "internal-error":
        # The real CLI, with the stack reader made to fail after 300 samples: a bug in
        # the sampler must still leave the file valid and the target untouched.
        code = (
            "import sys\n"
            "from sampler.rstack import StackReader\n"
            "original = StackReader.finish\n"
            "count = [0]\n"
            "def finish(self, raw):\n"
            "    count[0] += 1\n"
            "    if count[0] > 300:\n"
            "        raise RuntimeError('injected bug')\n"
            "    return original(self, raw)\n"
            "StackReader.finish = finish\n"
            "from xrtop.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "record", "-p", str(run.pid), "-o", str(profile), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    else:
        proc = start_record(run.pid, profile, *extra)
        wait_sampling(profile, proc)
    if how.startswith("SIG"):
        time.sleep(1.0)
        proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err
    if how == "internal-error":
        # A bug is reported as one (exit 70), and what was sampled is kept
        assert proc.returncode == EXIT_INTERNAL, err
        assert "xrtop: internal error: sampling stopped early (RuntimeError: injected bug)" in err
    else:
        assert proc.returncode == 0, err
    # The file is complete: R reads every sample xrtop says it wrote.
    written = int(err.split(" samples written")[0].rsplit(" ", 1)[-1])
    assert written > 100
    assert summary_rprof_samples(profile) == written
    assert len(parse_rprof(profile.read_text()).stacks) == written
    if how != "target-exits":
        assert_untouched(run)


def test_signals_between_slow_samples_are_not_held_back(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN xrtop sampling at 1 Hz: a signal to a traced R stops R until the tracer hands
    # it on, so a tracer that only looks at each sample would hold each of the 200
    # SIGCHLDs of system() for up to a second (minutes in all; about 0.3 s unprofiled)
    outfile = tmp_path / "slow.txt"
    go = tmp_path / "go"
    run = r_launcher.start("signals.R", "system", str(outfile), extra_env={"XRTOP_GO": str(go)})
    profile = tmp_path / "slow.out"
    proc = start_record(run.pid, profile, "-F", "1")
    wait_sampling(profile, proc)
    go.touch()
    # THEN R finishes its system() calls promptly (a generous bound, far below 200 s)
    assert r_wait(run, timeout=30) == 0
    assert outfile.read_text().startswith("system 200 3")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
