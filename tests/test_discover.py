"""Discovery of R processes: real R processes (host and a container-like lab R 4.5) are
listed with their facts, non-R processes and threads are not, and a process xrtop may not
trace says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import REnv
from conftest import RLauncher
from conftest import traced_by_another_program
from conftest import wait_for

from sampler.discover import Discovery
from sampler.discover import command_label
from sampler.model import RProcessInfo

LIBR = Path("/usr/lib/R/lib/libR.so")


def by_pid(rows: list[RProcessInfo]) -> dict[int, RProcessInfo]:
    return {r.pid: r for r in rows}


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def embedded_r(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A python process that loads libR.so (as rpy2 does) and runs three extra threads."""
    if not LIBR.exists():
        pytest.skip("the host has no /usr/lib/R/lib/libR.so")
    ready = tmp_path / "embedded-ready"
    code = textwrap.dedent(
        f"""
        import ctypes, threading, time, pathlib
        ctypes.CDLL("{LIBR}")
        for _ in range(3):
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        pathlib.Path("{ready}").write_text("ok")
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code, "embedded-marker"])
    try:
        wait_for(ready.exists, 30, "the embedding python to load libR.so")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_lists_r_processes_and_not_others(
    r_launcher: RLauncher, sleeper: subprocess.Popen[bytes]
) -> None:
    # GIVEN an R script on the host and a non-R process
    run = r_launcher.start("busy.R", "60")
    # WHEN discovery scans
    rows = by_pid(Discovery().scan())
    # THEN the R process is listed with what /proc says about it
    assert run.pid in rows
    assert sleeper.pid not in rows
    row = rows[run.pid]
    proc = psutil.Process(run.pid)
    assert row.user == proc.username()
    assert row.command.split()[0].endswith("busy.R")
    assert row.command.split()[1:] == ["60"]
    assert row.name == "R"
    assert not row.embedded
    assert not row.container
    assert row.profilable, row.reason
    assert row.rss > 10_000_000
    assert 0 <= row.elapsed < time.time() - proc.create_time() + 1
    host_version = subprocess.run(
        ["Rscript", "-e", "cat(as.character(getRversion()))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert row.r_version == host_version
    # AND only R processes are listed at all
    for pid in rows:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
            exe = os.readlink(f"/proc/{pid}/exe")
        except FileNotFoundError:
            continue  # another test's R exited since
        assert "/libR.so" in maps or os.path.basename(exe) == "R"


def test_busy_r_shows_cpu_use(r_launcher: RLauncher) -> None:
    run = r_launcher.start("busy.R", "60")
    discovery = Discovery()
    discovery.scan()
    time.sleep(0.5)
    row = by_pid(discovery.scan())[run.pid]
    # busy.R spins a core; however loaded the machine, it gets far more than an idle R's 0
    assert row.cpu_percent > 5


def test_container_r_is_marked_and_its_version_read(r_launcher: RLauncher) -> None:
    # GIVEN R 4.5 in a container-like mount namespace (its libR.so path means the host's
    # R 4.2 file when read from outside)
    run = r_launcher.start("busy.R", "60", env=REnv("trixie", "ns"))
    # WHEN discovery scans
    row = by_pid(Discovery().scan())[run.pid]
    # THEN it is marked as in a container and its own version is read
    assert row.container
    assert row.r_version is not None and row.r_version.startswith("4.5.")
    assert row.profilable, row.reason
    assert "busy.R" in row.command


def test_plain_chroot_r_version(r_launcher: RLauncher) -> None:
    run = r_launcher.start("busy.R", "60", env=REnv("bullseye"))
    row = by_pid(Discovery().scan())[run.pid]
    assert row.r_version is not None and row.r_version.startswith("4.0.")
    assert not row.container


@pytest.mark.live
def test_embedded_r_listed_once_threads_never(embedded_r: subprocess.Popen[bytes]) -> None:
    # GIVEN a python process that maps libR.so and has three more threads
    tids = {int(t) for t in os.listdir(f"/proc/{embedded_r.pid}/task")}
    assert len(tids) == 4
    # WHEN discovery scans
    rows = Discovery().scan()
    # THEN the process is listed, as embedded R, and none of its threads is
    pids = [r.pid for r in rows]
    assert pids.count(embedded_r.pid) == 1
    assert not (tids - {embedded_r.pid}) & set(pids)
    row = by_pid(rows)[embedded_r.pid]
    assert row.embedded
    assert row.name.startswith("python")
    assert "embedded-marker" in row.command
    # every listed PID is a thread-group leader
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        assert f"Tgid:\t{pid}\n" in status


@pytest.mark.live
def test_process_that_loads_r_later_is_found(tmp_path: Path) -> None:
    # GIVEN a python process that is not R yet when first scanned
    if not LIBR.exists():
        pytest.skip("the host has no /usr/lib/R/lib/libR.so")
    go = tmp_path / "go"
    loaded = tmp_path / "loaded"
    code = textwrap.dedent(
        f"""
        import ctypes, time, pathlib
        go, loaded = pathlib.Path("{go}"), pathlib.Path("{loaded}")
        while not go.exists():
            sum(range(10000))
        ctypes.CDLL("{LIBR}")
        loaded.write_text("ok")
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        discovery = Discovery(recheck_after=0.2)
        wait_for(lambda: Path(f"/proc/{proc.pid}/stat").exists(), 10, "python")
        discovery.scan()
        assert proc.pid not in by_pid(discovery.scan())
        reads = discovery.maps_reads
        # The negative result is cached: a scan right away does not read its maps again.
        discovery.scan()
        assert discovery.maps_reads - reads < 5
        # WHEN it loads libR.so
        go.write_text("go")
        wait_for(loaded.exists, 30, "libR.so to load")
        # THEN a later scan finds it
        wait_for(lambda: proc.pid in by_pid(discovery.scan()), 10, "discovery to notice")
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.live
def test_process_that_execs_r_is_found_at_once(tmp_path: Path) -> None:
    # GIVEN a shell (not R) that will exec Rscript in place: same PID, same start time
    go, ready = tmp_path / "go", tmp_path / "ready"
    busy = Path(__file__).parent / "r" / "busy.R"
    proc = subprocess.Popen(
        ["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; exec Rscript {busy} 60"],
        env={**os.environ, "XRTOP_READY": str(ready)},
    )
    try:
        discovery = Discovery()  # a negative result is normally kept for 10 s
        wait_for(lambda: Path(f"/proc/{proc.pid}/exe").exists(), 10, "the shell")
        assert proc.pid not in by_pid(discovery.scan())
        # WHEN it execs R
        go.write_text("go")
        wait_for(ready.exists, 30, "R to run busy.R")
        # THEN the next scan lists it (the executable changed, so the cache does not apply)
        row = by_pid(discovery.scan()).get(proc.pid)
        assert row is not None
        assert "busy.R" in row.command
    finally:
        proc.kill()
        proc.wait()


def test_negative_results_are_cached(sleeper: subprocess.Popen[bytes]) -> None:
    discovery = Discovery()
    discovery.scan()
    first = discovery.maps_reads
    discovery.scan()
    second = discovery.maps_reads - first
    # The first scan reads every process's maps once; later ones only those that are new.
    assert first > 5
    assert second < first


def test_exited_r_disappears(r_launcher: RLauncher) -> None:
    run = r_launcher.start("busy.R", "60")
    discovery = Discovery()
    assert run.pid in by_pid(discovery.scan())
    r_launcher.stop(run)
    assert run.pid not in by_pid(discovery.scan())


def test_traced_r_is_not_profilable_and_says_why(r_launcher: RLauncher, tmp_path: Path) -> None:
    # GIVEN an R process that another program is tracing (as a debugger would)
    run = r_launcher.start("busy.R", "60")
    with traced_by_another_program(run, tmp_path) as other:
        assert run.tracer() == other.pid
        # WHEN discovery scans
        row = by_pid(Discovery().scan())[run.pid]
        # THEN it is listed but not profilable, naming the tracer and the fix
        assert not row.profilable
        assert row.blocker == "traced"
        assert str(other.pid) in row.reason
        assert str(other.pid) in row.fix
    # The tracer's death detached it; the process is profilable again.
    wait_for(lambda: run.tracer() == 0, 10, "the tracer to go")
    assert by_pid(Discovery().scan())[run.pid].profilable


def test_unsupported_forced_version_is_explained(r_launcher: RLauncher) -> None:
    # GIVEN xrtop told to read R processes as R 3.4 (older than any layout it knows)
    run = r_launcher.start("busy.R", "60")
    row = by_pid(Discovery(force_version="3.4").scan())[run.pid]
    # THEN the process is listed with its real version but cannot be profiled, and says why
    assert row.r_version is not None and not row.r_version.startswith("3.4")
    assert not row.profilable
    assert row.blocker == "R 3.4?"
    assert "3.4 is not supported" in row.reason
    assert "--force-version" in row.fix


def test_other_users_r_seen_by_non_root_says_why(r_launcher: RLauncher) -> None:
    # GIVEN root's R process and a discovery run as user nobody
    if os.geteuid() != 0:
        pytest.skip("needs root to run discovery as another user")
    run = r_launcher.start("busy.R", "60")
    root = Path(__file__).parent.parent
    code = (
        "import json; from sampler.discover import Discovery\n"
        f"rows = {{r.pid: r for r in Discovery().scan()}}\n"
        f"r = rows.get({run.pid})\n"
        "print(json.dumps(None if r is None else "
        "[r.profilable, r.blocker, r.reason, r.fix, r.user]))\n"
    )
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0 and "Permission denied" in out.stderr:
        pytest.skip(f"user nobody cannot run this Python: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    # THEN nobody still sees root's R (by its name) and learns why it cannot profile it
    assert result is not None
    profilable, blocker, reason, fix, user = result
    assert not profilable
    assert blocker == "other user"
    assert str(run.pid) in reason
    assert "uid 0" in fix and "sudo" in fix
    assert user == "root"


def test_command_label() -> None:
    r = "/usr/lib/R/bin/exec/R"
    assert command_label(1, "R", [r, "--no-echo", "--file=a b.R", "--args", "x"]) == "a b.R x"
    assert command_label(1, "R", [r, "--no-echo", "--file=a.R"]) == "a.R"
    assert command_label(1, "r", ["/usr/bin/r", "-e", "1"]) == "r -e 1"
    assert command_label(1, "R", []) == "R"
    assert command_label(1, "R", [r, "--restore", "-f", "job.R"]) == "job.R"
