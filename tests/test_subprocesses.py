"""`--subprocesses` against real R: every way R starts worker processes, on every R, and
the workers left running untraced however sampling ends.

Each test stops what it started: the target through the launcher, and the workers (which
outlive a killed target) by the PIDs xrtop found, checked against their start times.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REnv
from conftest import RLauncher
from conftest import RRun
from conftest import rscript
from conftest import traced_by_another_program
from conftest import tracer_of
from conftest import wait_for
from test_profvis import need_profvis

from sampler.processes import ENDED
from sampler.processes import NOT_TRACED
from sampler.processes import ProcessSet
from sampler.processes import TracedProcess
from sampler.procstat import read_stat
from sampler.thread import State
from xrtop.session import SamplingOptions
from xrtop.session import Session

XRTOP = [sys.executable, "-m", "xrtop"]
#: Each way R starts workers (tests/r/parallel.R's modes): the role xrtop gives its
#: workers, and how many it starts.
MODES = {
    "mclapply": ("mclapply worker", 2),
    "mcparallel": ("mcparallel", 2),
    "psock": ("PSOCK worker", 2),
    "callr": ("callr", 1),
    "future": ("future worker", 2),
}
#: Seconds a workload's workers may take to start and be sampled busy (R starting R under
#: the load of a shared test machine).
STARTUP = 45.0


def busy(process: TracedProcess) -> bool:
    """Whether `process` has a sample inside the workers' function."""
    log = process.log
    return any("busy_worker" in stack.names for stack in log.stacks[: len(log.stacks)])


def busy_workers(processes: ProcessSet, role: str) -> list[TracedProcess]:
    """The sampled processes of `role` that were seen at work."""
    return [p for p in processes.sampled()[1:] if p.role == role and busy(p)]


def same_process(process: TracedProcess) -> bool:
    """Whether `process` still runs (its PID not reused)."""
    try:
        stat = read_stat(process.pid)
    except OSError:
        return False
    return stat is not None and stat.start == process.start_ticks and stat.state not in "ZX"


def assert_left_running(processes: list[TracedProcess]) -> None:
    """Every process of the list that xrtop sampled and that still runs is untraced and not
    stopped."""
    for process in processes:
        if process.state == NOT_TRACED or not same_process(process):
            continue
        assert tracer_of(process.pid) == 0, process.pid
        for _ in range(3):
            stat = read_stat(process.pid)
            assert stat is None or stat.state not in ("t", "T"), (process.pid, stat)
            time.sleep(0.01)


def kill_all(processes: list[TracedProcess]) -> None:
    """SIGKILL the workers this test made (those still the same process)."""
    for process in processes:
        if process.parent_pid and same_process(process):
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def group_session(run: RRun, *, blocking: bool = True) -> Iterator[Session]:
    """A started --subprocesses session on `run`; stopped, its workers checked left running
    and then killed, on the way out."""
    sampling = SamplingOptions(blocking=blocking, subprocesses=True)
    session = Session.attach_pid(run.pid, sampling)
    session.start()
    assert session.processes is not None
    try:
        yield session
    finally:
        session.stop()
        found = session.processes.processes()
        try:
            assert session.state is not State.FAILED, session.thread.stats().last_error
            assert_left_running(found)
        finally:
            kill_all(found)


@pytest.mark.parametrize("mode", MODES)
def test_each_kind_of_r_worker_is_followed_and_sampled(
    mode: str, r_env: REnv, r_launcher: RLauncher
) -> None:
    # GIVEN an R whose work runs in worker processes (forked, or R started anew)
    role, count = MODES[mode]
    run = r_launcher.start("parallel.R", mode, "60", env=r_env, timeout=STARTUP)
    # WHEN it is sampled with its subprocesses
    with group_session(run) as session:
        processes = session.processes
        assert processes is not None
        wait_for(
            lambda: len(busy_workers(processes, role)) >= count, STARTUP, f"{count} {mode} workers"
        )
        # THEN each worker is found under its role, its samples are its own work, and
        # the target, which waits for them, is sampled on the same schedule
        rows = {row.pid: row for row in processes.rows()}
        for worker in busy_workers(processes, role):
            assert rows[worker.pid].samples == len(worker.log) > 0
            assert rows[worker.pid].state in ("running", "sleeping")
            parent = worker.parent_pid
            assert parent == run.pid or parent in rows, (worker.pid, parent)
        target = processes.target
        assert target is not None and target.pid == run.pid and target.role == "target"
        assert target.log is session.log and len(target.log) > 0
        assert all("busy_worker" not in s.names for s in target.log.stacks)
        assert not [r for r in rows.values() if r.state == NOT_TRACED]


def test_forked_workers_reuse_the_parents_binary(r_launcher: RLauncher) -> None:
    # GIVEN mclapply workers, forked from the target
    run = r_launcher.start("parallel.R", "mclapply", "60", timeout=STARTUP)
    with group_session(run) as session:
        processes = session.processes
        assert processes is not None
        wait_for(lambda: len(busy_workers(processes, "mclapply worker")) >= 2, STARTUP, "workers")
        # THEN their symbols, layout and version are the parent's very objects (nothing
        # was looked up again), read through memory of their own
        group = session.thread
        members = {m.process.pid: m.target for m in group._members}  # type: ignore[attr-defined]
        parent = members[run.pid]
        for worker in busy_workers(processes, "mclapply worker"):
            child = members.get(worker.pid)
            if child is None:  # ended meanwhile
                continue
            assert child.binary is parent.binary and child.layout is parent.layout
            assert child.memory is not parent.memory and child.memory.pid == worker.pid


def test_nonblocking_samples_every_worker_without_tracing_any(r_launcher: RLauncher) -> None:
    # GIVEN mclapply workers, sampled with their target without stopping any (--nonblocking)
    run = r_launcher.start("parallel.R", "mclapply", "60", timeout=STARTUP)
    with group_session(run, blocking=False) as session:
        processes = session.processes
        assert processes is not None
        wait_for(lambda: len(busy_workers(processes, "mclapply worker")) >= 2, STARTUP, "workers")
        # THEN each is sampled at work, and none was ever traced
        for process in processes.sampled():
            assert tracer_of(process.pid) == 0
        assert len(session.thread.stop_times) == 0


def test_a_fork_storm_is_followed_and_every_worker_left_untraced(
    r_launcher: RLauncher,
) -> None:
    # GIVEN batches of 50 mclapply workers of a few milliseconds each, for 8 seconds
    run = r_launcher.start("parallel.R", "storm", "8", timeout=STARTUP)
    with group_session(run) as session:
        processes = session.processes
        assert processes is not None
        # WHEN xrtop follows them until the storm is over (workers exit mid-sample)
        # (The end is read from /proc: a wait for the target in this process, its tracer's,
        # would take the tracer's stops.)
        wait_for(lambda: _state(run.pid) in ("Z", "gone"), 60, "the end of the storm")
        wait_for(lambda: session.ended.is_set(), 10, "sampling to end with the last process")
    # THEN sampling went on through it all and ended with the processes, every worker
    # found ended (none left traced: checked on the way out of group_session)
    found = processes.processes()
    assert session.state is State.EXITED
    assert len(found) > 20, len(found)
    assert all(p.state in (ENDED, NOT_TRACED) for p in found)
    assert session.thread.stats().error_count < len(session.log) / 10


def test_a_child_that_may_not_be_traced_is_listed_once_and_sampling_goes_on(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN mclapply workers, one of which a debugger traces already
    run = r_launcher.start("parallel.R", "mclapply", "60", timeout=STARTUP)
    workers = wait_for(lambda: _children(run.pid, 2), STARTUP, "the workers")
    taken = RRun(workers[0], run.env, None)
    with traced_by_another_program(taken, tmp_path), group_session(run) as session:
        processes = session.processes
        assert processes is not None
        wait_for(lambda: busy_workers(processes, "mclapply worker"), STARTUP, "a busy worker")
        time.sleep(0.3)  # several more looks for new processes
        # THEN the traced one is listed once, not traced, saying why; the other is sampled
        refused = [r for r in processes.rows() if r.pid == taken.pid]
        assert len(refused) == 1 and refused[0].state == NOT_TRACED, refused
        assert "trace" in refused[0].note
        assert session.state is State.RUNNING
        assert [p.pid for p in busy_workers(processes, "mclapply worker")] == [workers[1]]


def _children(pid: int, count: int) -> list[int] | None:
    """The PIDs of `pid`'s children, oldest first, once there are `count` of them."""
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = read_stat(int(name))
            if stat is not None and stat.ppid == pid:
                kids.append((stat.start, int(name)))
    return [p for _, p in sorted(kids)] if len(kids) >= count else None


# -- record and dump ------------------------------------------------------------------------


def _sample_count(path: Path) -> int:
    """The sample lines of an Rprof.out (the header and #File lines left out)."""
    lines = path.read_text().split("\n")
    assert lines[-1] == "", f"{path} ends in the middle of a line"
    return sum(1 for line in lines[1:-1] if not line.startswith("#File "))


def test_record_writes_a_file_per_process_that_summaryrprof_and_profvis_read(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN a target with two mclapply workers
    run = r_launcher.start("parallel.R", "mclapply", "60", timeout=STARTUP)
    out = tmp_path / "prof.out"
    # WHEN it is recorded with its subprocesses, idle samples kept, until interrupted
    proc = subprocess.Popen(
        [*XRTOP, "record", "--subprocesses", "--idle", "-p", str(run.pid), "-o", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    children: list[Path] = []
    try:
        wait_for(
            lambda: (
                len(children := sorted(tmp_path.glob("prof.*.out"))) >= 2
                and all(_sample_count(c) >= 20 for c in children)
            ),
            STARTUP,
            "the workers' files",
        )
        children = sorted(tmp_path.glob("prof.*.out"))
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    workers = [int(p.name.split(".")[1]) for p in children]
    try:
        assert proc.returncode == 0, stderr
        # THEN the target's samples are in prof.out and each worker's in prof.<PID>.out,
        # every sample taken written (none lost to the interrupt)
        assert f"2 R child processes sampled ({sum(map(_sample_count, children))} samples)" in (
            stderr
        ), stderr
        for child in children:
            counted = rscript(
                f"s <- summaryRprof({json.dumps(str(child))}); "
                "cat(round(s$sampling.time / s$sample.interval), "
                "'\"busy_worker\"' %in% rownames(s$by.total))"
            ).split()
            assert counted == [str(_sample_count(child)), "TRUE"], (child, counted)
        need_profvis()
        profvis = rscript(
            f"p <- profvis:::parse_rprof({json.dumps(str(children[0]))}); "
            "cat(length(unique(p$prof$time)), 'busy_worker' %in% p$prof$label)"
        )
        assert profvis.split() == [str(_sample_count(children[0])), "TRUE"], profvis
        assert "busy_worker" not in out.read_text()
        assert {tracer_of(run.pid), *map(tracer_of, workers)} == {0}
    finally:
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("fmt", ["collapsed", "speedscope"])
def test_flame_formats_hold_every_process_under_its_own_frame(
    fmt: str, r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN a target with two mclapply workers, recorded with its subprocesses for 3 s
    run = r_launcher.start("parallel.R", "mclapply", "60", timeout=STARTUP)
    workers = wait_for(lambda: _children(run.pid, 2), STARTUP, "the workers")
    out = tmp_path / f"prof.{fmt}"
    target = ["-p", str(run.pid)]
    try:
        done = subprocess.run(
            [
                *XRTOP,
                "record",
                "--subprocesses",
                "--format",
                fmt,
                "-d",
                "3",
                *target,
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        labels = {pid: f"PID {pid} (mclapply worker)" for pid in workers}
        if fmt == "collapsed":
            # THEN each stack starts with its process, the workers' with their work
            lines = out.read_text().splitlines()
            outermost = {line.split(";", 1)[0] for line in lines}
            assert outermost <= {f"PID {run.pid} (target)", *labels.values()}, outermost
            for label in labels.values():
                assert any(ln.startswith(label + ";") and "busy_worker" in ln for ln in lines)
        else:
            # THEN there is one profile per process, the workers' at work
            document = json.loads(out.read_text())
            names = [profile["name"] for profile in document["profiles"]]
            assert names[0] == f"PID {run.pid} (target)" and set(names[1:]) == set(labels.values())
            frames = [f["name"] for f in document["shared"]["frames"]]
            for profile in document["profiles"][1:]:
                assert any(frames[s[-1]] == "inner_step" for s in profile["samples"])
    finally:
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_dump_prints_every_process(r_launcher: RLauncher) -> None:
    # GIVEN a PSOCK cluster at work (workers orphaned: their starting shell has exited)
    run = r_launcher.start("parallel.R", "psock", "60", timeout=STARTUP)
    workers: list[int] = []
    try:
        # WHEN dump --subprocesses --json runs (the workers may still be starting)
        def dumped() -> list[dict[str, object]] | None:
            done = subprocess.run(
                [*XRTOP, "dump", "--subprocesses", "--json", str(run.pid)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            found: list[dict[str, object]] = json.loads(done.stdout)
            workers[:] = [int(str(d["pid"])) for d in found[1:]]
            busy_ones = [d for d in found[1:] if "busy_worker" in str(d["frames"])]
            return found if len(busy_ones) == 2 else None

        found = wait_for(dumped, STARTUP, "both workers at work")
        # THEN the target comes first, then each worker with its role and master
        assert found[0]["pid"] == run.pid and "role" not in found[0]
        assert [(d["role"], d["parent_pid"]) for d in found[1:]] == [("PSOCK worker", run.pid)] * 2
        assert {tracer_of(run.pid), *map(tracer_of, workers)} == {0}
        text = subprocess.run(
            [*XRTOP, "dump", "--subprocesses", str(run.pid)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert text.count(f"PSOCK worker of PID {run.pid}") == 2, text
    finally:
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_sigkill_of_xrtop_leaves_every_process_running_untraced(
    r_launcher: RLauncher, tmp_path: Path
) -> None:
    # GIVEN xrtop recording a target and its two workers at 1000 Hz
    run = r_launcher.start("parallel.R", "mclapply", "60", timeout=STARTUP)
    workers = wait_for(lambda: _children(run.pid, 2), STARTUP, "the workers")
    out = tmp_path / "prof.out"
    target = ["-p", str(run.pid)]
    try:
        for _ in range(3):
            proc = subprocess.Popen(
                [*XRTOP, "record", "--subprocesses", "-F", "1000", *target, "-o", str(out)],
                stderr=subprocess.DEVNULL,
            )
            threads = f"/proc/{proc.pid}/task"
            wait_for(
                lambda: all(str(tracer_of(p)) in os.listdir(threads) for p in (run.pid, *workers)),  # noqa: B023
                STARTUP,
                "xrtop to trace every process",
            )
            time.sleep(0.3)
            # WHEN xrtop is killed mid-sampling
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            # THEN every process runs on, untraced and not stopped
            for pid in (run.pid, *workers):
                assert tracer_of(pid) == 0
                wait_for(lambda pid=pid: _state(pid) in ("R", "S"), 5, f"{pid} to run")
    finally:
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    stat = read_stat(pid)
    return stat.state if stat is not None else "gone"
