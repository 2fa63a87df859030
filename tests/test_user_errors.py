"""Every user mistake gets one clear answer: the real CLI, run as a user would run it.

Each case checks the exit code (sampler.errors documents them), that standard error says
what happened in its first line, and that no traceback ever shows.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import R_SCRIPTS
from conftest import REnv
from conftest import RLauncher
from conftest import wait_for

from sampler import doctor
from sampler.errors import EXIT_FILE
from sampler.errors import EXIT_NO_PROCESS
from sampler.errors import EXIT_NOT_R
from sampler.errors import EXIT_PERMISSION
from sampler.errors import EXIT_UNSUPPORTED
from sampler.errors import EXIT_USAGE
from sampler.rprof import parse_rprof

XRTOP = str(Path(sys.executable).with_name("xrtop"))


def ready_pid(ready: Path) -> int:
    """The PID an R workload wrote to its ready file (waiting until the write is whole)."""
    text = wait_for(lambda: ready.exists() and ready.read_text().strip(), 60, "the ready file")
    return int(text)


def xrtop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the installed `xrtop` command; never a traceback, whatever happens."""
    result = subprocess.run(
        [XRTOP, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    return result


def first_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert lines, "nothing on standard error"
    assert lines[0].startswith("xrtop: "), lines[0]
    return lines[0]


def free_pid() -> int:
    """A PID no process has right now."""
    limit = int(Path("/proc/sys/kernel/pid_max").read_text())
    for pid in range(limit - 1, 1, -1):
        if not Path(f"/proc/{pid}").exists():
            return pid
    raise AssertionError("no free PID")


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A process that is not R."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


# -- PIDs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["record", "dump"])
def test_pid_that_does_not_exist(command: str, tmp_path: Path) -> None:
    pid = str(free_pid())
    args = (
        ["record", "-p", pid, "-o", str(tmp_path / "x.out")]
        if command == "record"
        else [
            "dump",
            pid,
        ]
    )
    result = xrtop(*args)
    assert result.returncode == EXIT_NO_PROCESS
    assert f"no process with PID {pid}" in first_line(result)
    assert not (tmp_path / "x.out").exists()  # no file left for a wrong PID


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("abc", "is not a process ID"),
        ("12x", "is not a process ID"),
        ("0", "not a valid"),
        ("-5", "not a valid"),
    ],
)
def test_pid_that_is_not_a_positive_number(text: str, says: str) -> None:
    for args in (["record", f"--pid={text}"], ["dump", text], [text]):
        result = xrtop(*args)
        assert result.returncode == EXIT_USAGE, (args, result.stderr)
        assert says in first_line(result), (args, result.stderr)


def test_pid_of_a_thread_names_its_process() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading, time\n"
            "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "print('ok', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
        tids = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        assert tids
        result = xrtop("record", "-p", str(tids[0]))
        assert result.returncode == EXIT_NO_PROCESS
        assert f"{tids[0]} is a thread of process {proc.pid}" in first_line(result)
        assert f"xrtop {proc.pid}" in result.stderr  # what to do instead
    finally:
        proc.kill()
        proc.wait()


def test_pid_of_a_kernel_thread() -> None:
    # kthreadd is PID 2 wherever the kernel's threads are visible (not in a PID namespace)
    try:
        comm = Path("/proc/2/comm").read_text().strip()
    except OSError:
        pytest.skip("PID 2 is not visible here")
    if comm != "kthreadd":
        pytest.skip(f"PID 2 is {comm}, not kthreadd")
    result = xrtop("record", "-p", "2")
    assert result.returncode == EXIT_NOT_R
    assert "2 is a kernel thread" in first_line(result)


def test_pid_that_is_not_r(sleeper: int, tmp_path: Path) -> None:
    result = xrtop("record", "-p", str(sleeper), "-o", str(tmp_path / "x.out"))
    assert result.returncode == EXIT_NOT_R
    assert f"process {sleeper} is not an R process" in first_line(result)
    assert not (tmp_path / "x.out").exists()


@pytest.mark.live
@pytest.mark.parametrize("front_end", ["R CMD BATCH", "sh -c"])
def test_pid_of_rs_shell_front_end_names_the_child(front_end: str, tmp_path: Path) -> None:
    # GIVEN a shell that runs R as its child: R CMD BATCH's front-end script, or a wrapper
    ready = tmp_path / "ready"
    script = R_SCRIPTS / "busy.R"
    argv = (
        ["R", "CMD", "BATCH", "--no-save", "--args 60", str(script), str(tmp_path / "out.Rout")]
        if front_end == "R CMD BATCH"
        else ["sh", "-c", f"Rscript {script} 60; true"]
    )
    shell = subprocess.Popen(
        argv,
        env={**os.environ, "XRTOP_READY": str(ready)},
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(ready.exists, 60, "R to start")
        r_pid = ready_pid(ready)
        # WHEN the user gives the shell's PID
        result = xrtop("record", "-p", str(shell.pid))
        # THEN xrtop says it is not R, and which child is
        assert result.returncode == EXIT_NOT_R
        assert "is not an R process" in first_line(result)
        assert f"Its child {r_pid} runs R" in result.stderr
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


def test_zombie_pid(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    wait_for(
        lambda: Path(f"/proc/{child.pid}/stat").read_text().split(")")[1].split()[0] == "Z",
        10,
        "a zombie",
    )
    try:
        result = xrtop("record", "-p", str(child.pid))
        assert result.returncode == EXIT_NO_PROCESS
        assert "has exited (it is a zombie)" in first_line(result)
    finally:
        child.wait()


# -- flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["-F", "0"], "sampling rate 0 Hz is out of range"),
        (["-F", "5000"], "sampling rate 5000 Hz is out of range"),
        (["-F", "-3"], "out of range"),
        (["-F", "nan"], "out of range"),
        (["-F", "fast"], "'fast' is not a number"),
        (["-d", "0"], "duration 0 s is out of range"),
        (["-d", "-2"], "out of range"),
        (["-d", "inf"], "out of range"),
        (["--bogus"], "unrecognized arguments"),
        ([], "record needs -p PID or a command"),
        (["--force-version", "four"], "--force-version wants X.Y"),
    ],
)
def test_flags_out_of_range(flags: list[str], says: str, sleeper: int) -> None:
    pid_flags = [] if not flags else ["-p", str(sleeper)]
    result = xrtop("record", *pid_flags, *flags)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert says in first_line(result) or says in result.stderr


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ("/nonexistent-dir/x.out", "No such file or directory"),
        ("/dev/full", "No space left on device"),  # a full disk: not even the header fits
        ("DIR", "Is a directory"),
    ],
    ids=["no-dir", "disk-full", "dir"],
)
def test_unwritable_output(output: str, says: str, tmp_path: Path, r_launcher: RLauncher) -> None:
    run = r_launcher.start("busy.R", "60")
    path = str(tmp_path) if output == "DIR" else output
    result = xrtop("record", "-p", str(run.pid), "-d", "5", "-o", path)
    assert result.returncode == EXIT_USAGE
    assert first_line(result) == f"xrtop: cannot write {path}: {says}"
    assert run.tracer() == 0
    assert Path(path).exists() == (output != "/nonexistent-dir/x.out")  # nothing removed


def test_failed_start_never_removes_a_file_xrtop_did_not_create(
    tmp_path: Path, r_launcher: RLauncher
) -> None:
    # GIVEN an output that existed before xrtop ran: a private copy of /dev/null, and a file
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    existing = tmp_path / "existing.out"
    existing.write_text("x")
    fresh = tmp_path / "fresh.out"
    run = r_launcher.start("busy.R", "60", env=REnv("trixie", "plain"))
    # WHEN sampling cannot start (here: a layout that does not check out)
    for path in (null, existing, fresh):
        result = xrtop("record", "-p", str(run.pid), "-o", str(path), "--force-version", "3.6")
        assert result.returncode == EXIT_UNSUPPORTED, result.stderr
    # THEN what existed is still there, and only xrtop's own new file is gone
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert existing.exists()
    assert not fresh.exists()


# -- files for view and convert --------------------------------------------------------------

GOOD = 'sample.interval=20000\n"f" "g" \n"g" \n'


def bad_profile(content: bytes | str | None, tmp_path: Path) -> Path:
    """A profile file that is not one: missing (None), these bytes, or a folder ("DIR")."""
    path = tmp_path / "profile.out"
    if content == "DIR":
        return tmp_path
    if isinstance(content, bytes):
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("command", ["view", "convert"])
@pytest.mark.parametrize(
    ("content", "code", "says"),
    [
        (None, EXIT_USAGE, "No such file or directory"),
        (b"", EXIT_FILE, ":1: not a valid Rprof.out file: the file is empty"),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), EXIT_FILE, ":1: not a valid Rprof.out"),
        (GOOD.encode() + b'"f" "g\n"g" \n', EXIT_FILE, ":4: not a valid Rprof.out file: a quoted"),
        (b"library(stats)\nx <- 1\n", EXIT_FILE, ":1: not a valid Rprof.out file"),
        (GOOD.encode() + b'"f" \n\n"g" \n', EXIT_FILE, ":5: not a valid Rprof.out file: a blank"),
        (GOOD.encode() + b'"f" 12 \n', EXIT_FILE, ":4: not a valid Rprof.out file: unexpected"),
        ("DIR", EXIT_USAGE, "Is a directory"),
    ],
    ids=["missing", "empty", "binary", "unclosed", "not-rprof", "blank-line", "bad-token", "dir"],
)
def test_bad_profile_files(
    command: str, content: bytes | str | None, code: int, says: str, tmp_path: Path
) -> None:
    path = bad_profile(content, tmp_path)
    args = [command, str(path)] + (["--format", "collapsed"] if command == "convert" else [])
    result = xrtop(*args)
    assert result.returncode == code, result.stderr
    line = first_line(result)
    assert says in line, line
    assert str(path) in line


def test_good_file_converts(tmp_path: Path) -> None:
    # The control for the cases above: the same reader accepts a well-formed file.
    path = tmp_path / "good.out"
    path.write_text(GOOD)
    result = xrtop("convert", str(path), "--format", "collapsed")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["g 1", "g;f 1"]


# -- an R whose layout does not check out ----------------------------------------------------


@pytest.mark.parametrize(
    ("env", "wrong"),
    [(REnv("trixie", "plain"), "3.6"), (REnv("host"), "4.5"), (REnv("sid", "ns"), "4.0")],
    ids=["4.5-as-3.6", "host-as-4.5", "4.6-as-4.0"],
)
def test_wrong_forced_version_is_refused(
    env: REnv, wrong: str, r_launcher: RLauncher, tmp_path: Path
) -> None:
    run = r_launcher.start("busy.R", "60", env=env)
    out = tmp_path / "x.out"
    for args in (
        ["record", "-p", str(run.pid), "-d", "1", "-o", str(out), "--force-version", wrong],
        ["dump", str(run.pid), "--force-version", wrong],
    ):
        result = xrtop(*args)
        assert result.returncode == EXIT_UNSUPPORTED, result.stderr
        assert f"the memory layout for R {wrong}" in first_line(result)
        assert "does not check out" in first_line(result)
        assert result.stdout == ""  # no garbage printed
    assert not out.exists()
    time.sleep(0.05)
    assert run.tracer() == 0
    assert run.state() not in ("t", "T")


# -- the permission doctor ---------------------------------------------------------------------

TEST_USER = "xrtop-test"


def _python_for_others() -> list[str]:
    """A Python command line an unprivileged user can run xrtop with."""
    real = Path(sys.executable).resolve()
    if all(os.stat(p).st_mode & 0o001 for p in real.parents):
        return [sys.executable, "-m", "xrtop"]
    system = Path("/usr/bin/python3")
    if system.exists():
        version = subprocess.run(
            [system, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if version == str(sys.version_info[:2]):
            return [str(system), "-m", "xrtop"]
    pytest.skip("no Python an unprivileged user may run (the venv's lives under /root)")


@pytest.fixture
def unprivileged() -> tuple[int, int]:
    """The uid and gid of an unprivileged test user (created once, idempotently)."""
    if os.geteuid() != 0:
        pytest.skip("creating a test user needs root")
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
            check=False,
            capture_output=True,
        )
        entry = pwd.getpwnam(TEST_USER)
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory both root and the test user may write."""
    path = Path(tempfile.mkdtemp(prefix="xrtop-shared-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_user(ids: tuple[int, int], argv: list[str]) -> list[str]:
    """`argv` run as the unprivileged user, with no supplementary groups."""
    return ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups", *argv]


def user_env(home: Path) -> dict[str, str]:
    root = Path(__file__).resolve().parent.parent
    site = next((root / ".venv" / "lib").glob("python3*/site-packages"))
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": f"{root}:{site}",
        "LANG": "C.UTF-8",
    }


def test_another_users_process_gets_the_doctors_paragraph(
    unprivileged: tuple[int, int], shared_dir: Path, r_launcher: RLauncher
) -> None:
    # GIVEN an R process of root's, and xrtop run by an unprivileged user
    run = r_launcher.start("busy.R", "60")
    out = shared_dir / "x.out"
    argv = [*_python_for_others(), "record", "-p", str(run.pid), "-d", "1", "-o", str(out)]
    result = subprocess.run(
        as_user(unprivileged, argv),
        env=user_env(shared_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # THEN it is refused with the permission exit code and a diagnosis naming the owner
    assert "Traceback" not in result.stderr
    assert result.returncode == EXIT_PERMISSION, result.stderr
    lines = result.stderr.splitlines()
    assert (
        lines[0]
        == f"xrtop: permission denied: xrtop cannot read the memory map of process {run.pid}"
    )
    assert f"Process {run.pid} belongs to another user, root (uid 0); you are {TEST_USER}" in (
        result.stderr
    )
    assert f"sudo xrtop {run.pid}" in result.stderr
    assert "setcap" not in result.stderr
    assert not out.exists()
    assert run.tracer() == 0


@pytest.mark.live
def test_a_users_own_r_process_can_be_profiled(
    unprivileged: tuple[int, int], shared_dir: Path
) -> None:
    # GIVEN an R process the unprivileged user runs (no Yama here: same-user tracing is
    # allowed without any capability)
    ready = shared_dir / "ready"
    env = {**user_env(shared_dir), "XRTOP_READY": str(ready)}
    r = subprocess.Popen(
        as_user(unprivileged, ["Rscript", str(R_SCRIPTS / "busy.R"), "60"]),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: ready.exists() or r.poll() is not None, 60, "R to start")
        pid = ready_pid(ready)
        out = shared_dir / "own.out"
        argv = [*_python_for_others(), "record", "-p", str(pid), "-d", "1", "-o", str(out)]
        # WHEN the same user records it
        result = subprocess.run(
            as_user(unprivileged, argv), env=env, capture_output=True, text=True, timeout=60
        )
        # THEN it works, and R's own reader takes the profile
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        samples = len(parse_rprof(out.read_text()).stacks)
        assert samples > 20
        assert "fib" in out.read_text()
    finally:
        os.killpg(r.pid, signal.SIGKILL)
        r.wait()


@pytest.mark.parametrize(
    ("scope", "says"),
    [
        (1, "Yama ptrace_scope is 1 (restricted: only a parent may trace its children"),
        (2, "Yama ptrace_scope is 2 (admin-only"),
        (3, "ptrace_scope is 3 (no attach"),
    ],
)
def test_doctor_explains_yama(scope: int, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pure logic: the kernel here has no Yama, so its setting is faked.
    monkeypatch.setattr(doctor, "yama_scope", lambda: scope)
    monkeypatch.setattr(doctor, "has_ptrace_capability", lambda: False)
    reasons = " ".join(doctor.diagnose(os.getpid()))
    assert says in reasons
    if scope == 1:
        assert "sudo sysctl kernel.yama.ptrace_scope=0" in reasons
        assert "xrtop -- Rscript script.R" in reasons
    assert "setcap" not in reasons


def test_doctor_explains_a_container_without_cap_sys_ptrace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(doctor, "in_container", lambda: True)
    monkeypatch.setattr(doctor, "has_ptrace_capability", lambda: False)
    reasons = " ".join(doctor.diagnose(os.getpid()))
    assert "--cap-add SYS_PTRACE" in reasons
    assert "--pid=host" in reasons


def test_an_already_traced_process_names_its_tracer(r_launcher: RLauncher) -> None:
    # GIVEN an R process that another tool (here a tiny seizing tracer) already traces
    run = r_launcher.start("busy.R", "60")
    code = (
        "import ctypes, sys, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"assert libc.ptrace(0x4206, {run.pid}, 0, 0) == 0\n"
        "print('seized', flush=True)\n"
        "sys.stdin.read()\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "seized"
        # WHEN xrtop is pointed at it
        result = xrtop("record", "-p", str(run.pid), "-d", "1")
        # THEN the doctor names the tracer and the way around it
        assert result.returncode == EXIT_PERMISSION
        assert (
            first_line(result) == f"xrtop: permission denied: xrtop may not trace process {run.pid}"
        )
        assert f"already traced by python3 (PID {other.pid})" in result.stderr or (
            f"(PID {other.pid})" in result.stderr
        )
        assert f"xrtop --nonblocking {run.pid}" in result.stderr
    finally:
        other.kill()
        other.wait()
    # AND once that tracer is gone the target runs on, untraced
    wait_for(lambda: run.tracer() == 0, 10, "the other tracer to go")
    assert run.state() not in ("t", "T")


def test_a_non_dumpable_process_of_ones_own_is_explained(
    unprivileged: tuple[int, int], shared_dir: Path
) -> None:
    # GIVEN a process of the user's own that made itself non-dumpable, as setuid programs
    # and some sandboxes do
    code = (
        "import ctypes, sys\n"
        "ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0\n"
        "print('ready', flush=True)\nsys.stdin.read()\n"
    )
    env = user_env(shared_dir)
    target = subprocess.Popen(
        as_user(unprivileged, [_python_for_others()[0], "-c", code]),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        pid = target.pid  # setpriv execs: the Python is this very process
        argv = [*_python_for_others(), "record", "-p", str(pid), "-d", "1"]
        # WHEN the same user points xrtop at it
        result = subprocess.run(
            as_user(unprivileged, argv), env=env, capture_output=True, text=True, timeout=60
        )
        # THEN the doctor says why the kernel refused, not "another user"
        assert result.returncode == EXIT_PERMISSION, result.stderr
        assert "Traceback" not in result.stderr
        assert f"Process {pid} made itself non-dumpable" in result.stderr
        assert "belongs to another user" not in result.stderr
    finally:
        target.kill()
        target.wait()


def test_doctor_explains_an_unreadable_root_in_another_user_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pure logic: a rootless container's process, whose files xrtop cannot see.
    monkeypatch.setattr(doctor, "_root_unreadable", lambda pid: True)
    monkeypatch.setattr(doctor, "_other_user_namespace", lambda pid: True)
    reasons = " ".join(doctor.diagnose(os.getpid()))
    assert "rootless container" in reasons
    assert "Run xrtop inside that container" in reasons
    assert f"nsenter --target {os.getpid()} --user" in reasons
