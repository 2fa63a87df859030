"""The real-R test harness.

`r_launcher` starts R workloads from tests/r/ on the host's R, or through ../shared/lab on
other R versions (plain chroot or container-like `--ns`), waits until R's interpreter runs
the workload itself (the script writes a ready file; a shell wrapper never does), and always
stops what it started. `r_env` parametrises a test over every R the machine offers.

In CI (CI=true) nothing here may skip: a missing R or lab is a failure.

The `live` marker names the tests that need a real R, so that `pytest -m "not live"` runs
the pure-logic tests alone: a test that uses a fixture starting R (`LIVE_FIXTURES`, also
through another fixture) is marked here; one that starts R itself carries the mark in its
module. The harness refuses to start R for a test without the mark, so none escapes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from sampler.model import SampleLog
from sampler.target import Target
from sampler.thread import SamplerThread
from sampler.thread import State
from xrtop.session import find_r_descendant

TESTS = Path(__file__).parent
R_SCRIPTS = TESTS / "r"
LAB = Path(os.environ.get("XRTOP_LAB", TESTS.parent.parent / "shared" / "lab")).resolve()
RLAB_ROOT = Path(os.environ.get("RLAB_ROOT", "/opt/rlab"))
IN_CI = os.environ.get("CI") == "true"

#: Fixtures that start R or need one: a test using any of them (directly or through another
#: fixture) is marked `live`.
LIVE_FIXTURES = frozenset({"r_launcher", "r_env"})

#: Whether the test being set up or run carries the `live` mark (see `require_live`).
_current_test_is_live = False

#: Lab suites and the R (major, minor) each one has.
LAB_SUITES = {"bullseye": (4, 0), "trixie": (4, 5), "sid": (4, 6)}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `live` every test that uses a fixture in LIVE_FIXTURES, before `-m` selects."""
    for item in items:
        if LIVE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.live)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Record whether `item` is live before any of its fixtures (of any scope) is set up."""
    global _current_test_is_live
    _current_test_is_live = item.get_closest_marker("live") is not None


def require_live(what: str) -> None:
    """Fail when a test not marked `live` is about to start R: `-m "not live"` must not."""
    if not _current_test_is_live:
        pytest.fail(f"{what} starts R, so this test must be marked live (pytest.mark.live)")


@dataclass(frozen=True)
class REnv:
    """Where an R workload runs: the host's R, or a lab suite in plain or --ns mode."""

    suite: str  # "host" or a lab suite
    mode: str = "plain"  # "plain" or "ns" (container-like: own mount namespace, pivot_root)

    @property
    def id(self) -> str:
        return "host" if self.suite == "host" else f"{self.suite}-{self.mode}"

    def available(self) -> str | None:
        """None when this environment can run here, else why not."""
        if self.suite == "host":
            return None if shutil.which("Rscript") else "R is not installed (make r)"
        if os.geteuid() != 0:
            return "the R version lab needs root (chroots and namespaces)"
        if not (LAB / "rlab-run").exists():
            return f"the R version lab is not at {LAB}"
        if not (RLAB_ROOT / self.suite / "usr/lib/R/bin/exec/R").exists():
            return f"lab suite {self.suite} is not set up (make lab)"
        return None


ALL_ENVS = [REnv("host")] + [REnv(s, m) for s in LAB_SUITES for m in ("plain", "ns")]


def need(env: REnv) -> None:
    """Skip (or, in CI, fail) when `env` cannot run here."""
    require_live(f"need({env.id})")
    why = env.available()
    if why is not None:
        if IN_CI:
            pytest.fail(f"{env.id}: {why}")
        pytest.skip(f"{env.id}: {why}")


def tracer_of(pid: int) -> int:
    """The PID (a thread's ID) tracing process `pid` (0: none, or it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return int(status.split("TracerPid:")[1].split()[0])


@dataclass
class RRun:
    """A running R workload."""

    pid: int
    env: REnv
    handle: subprocess.Popen[bytes] | None

    @property
    def root(self) -> Path:
        """The R's root directory as the host sees it."""
        return Path("/") if self.env.suite == "host" else RLAB_ROOT / self.env.suite

    def alive(self) -> bool:
        try:
            return psutil.Process(self.pid).status() not in (psutil.STATUS_ZOMBIE, "dead")
        except psutil.NoSuchProcess:
            return False

    def state(self) -> str:
        """The one-letter state from /proc (R running, S sleeping, t traced-stopped...)."""
        with open(f"/proc/{self.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    def tracer(self) -> int:
        """The PID tracing this process (0: not traced, or gone)."""
        return tracer_of(self.pid)

    def is_lab_r(self) -> bool:
        """Whether the PID still runs its lab suite's R binary (as rlab-stop checks it, by
        device and inode): not a zombie, and not a process that reused the PID."""
        try:
            exe = os.stat(f"/proc/{self.pid}/exe")
        except OSError:
            return False
        binary = (self.root / "usr/lib/R/bin/exec/R").stat()
        return (exe.st_dev, exe.st_ino) == (binary.st_dev, binary.st_ino)


class RLauncher:
    """Starts R workloads and stops every one of them at the end of the test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.runs: list[RRun] = []

    def start(
        self,
        script: str,
        *args: str,
        env: REnv = REnv("host"),
        extra_env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> RRun:
        require_live(f"r_launcher.start({script!r})")
        need(env)
        token = uuid.uuid4().hex[:12]
        source = R_SCRIPTS / script if not os.path.isabs(script) else Path(script)
        extra = dict(extra_env or {})
        if env.suite == "host":
            ready = self.tmp / f"ready-{token}"
            proc_env = {**os.environ, "XRTOP_READY": str(ready), **extra}
            handle = subprocess.Popen(
                ["Rscript", str(source), *args],
                env=proc_env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_for(lambda: ready.exists() or handle.poll() is not None, timeout, "R to start")
            if not ready.exists():
                raise RuntimeError(f"Rscript {script} exited with {handle.returncode}")
            pid = wait_for(lambda: find_r_descendant(handle.pid), timeout, "the R process")
            run = RRun(pid, env, handle)
        else:
            inner = f"/tmp/xrtop-ready-{token}"
            ready = RLAB_ROOT / env.suite / inner.lstrip("/")
            lab_env = {**os.environ, "RLAB_PASS_XRTOP_READY": inner}
            lab_env.update({f"RLAB_PASS_{k}": v for k, v in extra.items()})
            mode = ["--ns"] if env.mode == "ns" else []
            out = subprocess.run(
                [str(LAB / "rlab-run"), *mode, env.suite, str(source), *args],
                env=lab_env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(f"rlab-run failed: {out.stderr[-2000:]}")
            pid = int(out.stdout.strip().split()[-1])
            run = RRun(pid, env, None)
            self.runs.append(run)
            wait_for(lambda: ready.exists() or not run.alive(), timeout, "R to start")
            if not ready.exists():
                raise RuntimeError(f"{script} in {env.id} exited before it was ready")
            return run
        self.runs.append(run)
        return run

    def stop(self, run: RRun) -> None:
        if run.handle is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.handle.pid, signal.SIGKILL)
            if run.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(run.pid, signal.SIGKILL)
            run.handle.wait(10)
        else:
            # Killed here first: R is not our child, and its zombie waits for init, which
            # reaps about every 2 s on some machines; rlab-stop waits for it to go, so left to
            # itself it took 2 s per run. Then it finds R gone and forgets the run.
            if run.is_lab_r():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(run.pid, signal.SIGKILL)
                wait_for(lambda: not run.alive(), 10, f"R {run.pid} to end")
            subprocess.run([str(LAB / "rlab-stop"), str(run.pid)], capture_output=True, check=False)

    def stop_all(self) -> None:
        for run in self.runs:
            self.stop(run)
        self.runs.clear()


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture
def r_launcher(tmp_path: Path) -> Iterator[RLauncher]:
    launcher = RLauncher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture(params=ALL_ENVS, ids=lambda e: e.id)
def r_env(request: pytest.FixtureRequest) -> REnv:
    env: REnv = request.param
    need(env)
    return env


def expected_version(env: REnv) -> tuple[int, int] | None:
    """The R (major, minor) an environment runs; None for the host (whatever is installed)."""
    return LAB_SUITES.get(env.suite)


def rscript(code: str, timeout: float = 120) -> str:
    """Run R code on the host's R and return its standard output."""
    require_live("rscript()")
    if not shutil.which("Rscript"):
        if IN_CI:
            pytest.fail("R is not installed")
        pytest.skip("R is not installed")
    out = subprocess.run(
        ["Rscript", "-e", code], capture_output=True, text=True, timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"R failed: {out.stderr[-3000:]}")
    return out.stdout


@contextlib.contextmanager
def traced_by_another_program(run: RRun, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Have a separate process seize `run` with ptrace (as a debugger would) while inside.

    Yields that process; it is killed on exit, and the kernel then detaches it.
    """
    ready = tmp / f"seized-{uuid.uuid4().hex[:8]}"
    code = (
        "import pathlib, time\n"
        "from sampler.ptrace import Tracer\n"
        f"tracer = Tracer({run.pid})\n"
        f"pathlib.Path({str(ready)!r}).write_text('ok')\n"
        "time.sleep(60)\n"
    )
    other = subprocess.Popen([sys.executable, "-c", code], cwd=TESTS.parent)
    try:
        wait_for(lambda: ready.exists() or other.poll() is not None, 30, "the tracer")
        yield other
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()


def sample(
    target: Target, seconds: float, *, rate: float = 200, blocking: bool = True
) -> SampleLog:
    """Sample `target` for `seconds` with a real SamplerThread; it must end detached."""
    log = SampleLog(round(1e6 / rate))
    thread = SamplerThread(target, log, rate_hz=rate, blocking=blocking)
    thread.start()
    thread.wait_ready()
    time.sleep(seconds)
    thread.stop()
    assert thread.state is State.DETACHED, thread.state
    return log
