"""Containers for real, with podman: R in a container profiled by xrtop on the host, and
xrtop in its own image (make container) profiling R on the host; as root and as another
user in the container.

Images are made once and kept between sessions: the lab's trixie root file system (R 4.5)
imported as localhost/xrtop-test-r:trixie, and localhost/xrtop built by `make container`
once per session (a cached build when nothing changed). podman runs with runc and cgroupfs
(`make tools` installs them and sets podman's default_ulimits = []). The tests need rootful
podman: without podman or root they skip, in CI they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import IN_CI
from conftest import R_SCRIPTS
from conftest import RLAB_ROOT
from conftest import REnv
from conftest import RRun
from conftest import need
from conftest import wait_for
from test_e2e_tmux import Tmux
from test_e2e_tmux import summary_rprof
from test_e2e_tmux import tmux  # noqa: F401 (a fixture)
from test_e2e_tmux import xrtop

from sampler.discover import Discovery
from xrtop.session import find_r_descendant

# The first test to use an image waits for it: a cold `make container` (debootstrap
# included) took over 180 s on this machine under load, past the project's default timeout.
pytestmark = [pytest.mark.live, pytest.mark.lab, pytest.mark.timeout(900)]

ROOT = Path(__file__).parent.parent
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
SUITE = "trixie"
R_IMAGE = f"localhost/xrtop-test-r:{SUITE}"
XRTOP_IMAGE = "localhost/xrtop-test"
NOBODY = 65534


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _unavailable() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (make tools, as root)"
    if shutil.which("runc") is None:
        return "runc is not installed (make tools, as root)"
    if os.geteuid() != 0:
        return "the container tests need rootful podman: run them as root"
    return None


@pytest.fixture(scope="session")
def engine() -> None:
    why = _unavailable()
    if why is not None:
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def r_image(engine: None) -> str:
    """The lab's R 4.5 root file system as an image (imported once, kept)."""
    need(REnv(SUITE))
    if podman("image", "exists", R_IMAGE).returncode != 0:
        tar = subprocess.Popen(
            ["tar", "-C", str(RLAB_ROOT / SUITE), "--exclude=./.rlab", "--exclude=./tmp/*",
             "--exclude=./proc/*", "-c", "."],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out = subprocess.run(
            [*PODMAN, "import", "-q", "-", R_IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        tar.wait()
        assert out.returncode == 0 and tar.returncode == 0, out.stderr
    return R_IMAGE


@pytest.fixture(scope="session")
def xrtop_image(engine: None) -> str:
    """xrtop's own image, built with `make container` from this tree (once per session)."""
    out = subprocess.run(
        ["make", "--no-print-directory", "container", f"IMAGE={XRTOP_IMAGE}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return XRTOP_IMAGE


@dataclass
class Container(RRun):
    """An R workload running in a podman container (`pid`: as the host numbers it)."""

    name: str = ""


class Containers:
    """Starts containers running busy.R and removes every one of them at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.names: list[str] = []

    def start_r(self, image: str, *, user: int | None = None) -> Container:
        name = f"xrt-{uuid.uuid4().hex[:6]}"
        shared = self.tmp / name
        shared.mkdir(mode=0o777)
        shared.chmod(0o777)  # the container's user writes its ready file here
        as_user = ["--user", str(user)] if user is not None else []
        out = podman(
            "run", "-d", "--name", name, *as_user,
            "-v", f"{R_SCRIPTS}:/w:ro", "-v", f"{shared}:/ready",
            "-e", "XRTOP_READY=/ready/ready",
            image, "Rscript", "/w/busy.R", "300",
        )  # fmt: skip
        self.names.append(name)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: (shared / "ready").exists(), 60, "R in the container to start")
        top = int(podman("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())
        pid = wait_for(lambda: find_r_descendant(top), 30, "R in the container")
        return Container(pid, REnv(SUITE, "podman"), None, name)

    def remove_all(self) -> None:
        for name in self.names:
            podman("rm", "-f", "-t", "0", name)
        self.names.clear()


@pytest.fixture
def containers(engine: None, tmp_path: Path) -> Iterator[Containers]:
    made = Containers(tmp_path)
    try:
        yield made
    finally:
        made.remove_all()


class HostRs:
    """Starts busy.R on the host's R as a given user, in a folder of its own that any user
    may use (pytest's are root's alone); kills them all at the end."""

    def __init__(self) -> None:
        self.runs: list[RRun] = []
        self.folder = Path(tempfile.mkdtemp(prefix="xrtop-container-test-"))
        self.folder.chmod(0o755)
        shutil.copy(R_SCRIPTS / "busy.R", self.folder)

    def start(self, uid: int = 0) -> RRun:
        if shutil.which("Rscript") is None:
            if IN_CI:
                pytest.fail("R is not installed (make r)")
            pytest.skip("R is not installed (make r)")
        home = self.folder / uuid.uuid4().hex[:6]
        home.mkdir()
        os.chown(home, uid, uid)
        ready = home / "ready"
        as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid else []
        handle = subprocess.Popen(
            [*as_user, "Rscript", str(self.folder / "busy.R"), "300"],
            env={**os.environ, "XRTOP_READY": str(ready), "HOME": str(home)},
            cwd=home,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.runs.append(RRun(0, REnv("host"), handle))
        wait_for(lambda: ready.exists() or handle.poll() is not None, 60, "R to start")
        assert ready.exists(), f"Rscript exited with {handle.returncode}"
        self.runs[-1].pid = wait_for(lambda: find_r_descendant(handle.pid), 30, "the R process")
        return self.runs[-1]

    def stop_all(self) -> None:
        for run in self.runs:
            assert run.handle is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.handle.pid, signal.SIGKILL)
            run.handle.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def host_r() -> Iterator[HostRs]:
    made = HostRs()
    try:
        yield made
    finally:
        made.stop_all()


def host_xrtop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(xrtop(*args), capture_output=True, text=True, timeout=120, check=False)


# --- R in a container, xrtop on the host ------------------------------------------------


@pytest.mark.parametrize("user", [None, NOBODY], ids=["root", "nobody"])
def test_host_xrtop_dumps_and_records_r_in_a_container(
    r_image: str, containers: Containers, tmp_path: Path, user: int | None
) -> None:
    # GIVEN R 4.5 running busy.R in a podman container (as root, or as nobody)
    box = containers.start_r(r_image, user=user)
    # WHEN xrtop on the host dumps its stack
    out = host_xrtop("dump", str(box.pid))
    # THEN it reads the container's R (4.5, not the host's), deep in fib under outer
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"R 4.5.0, PID {box.pid} (/w/busy.R)"), out.stdout
    frames = out.stdout.split()
    assert "fib" in frames and "outer" in frames
    # WHEN it records two seconds into a file
    path = tmp_path / "in-container.out"
    out = host_xrtop("record", "-p", str(box.pid), "-d", "2", "-o", str(path))
    # THEN R's own summaryRprof reads it, fib the hottest function
    assert out.returncode == 0, out.stderr
    summary = summary_rprof(path)
    assert summary["self"] == "fib"
    assert {"fib", "middle", "outer"} <= set(summary["total"].split(","))
    assert box.tracer() == 0


def test_discovery_names_the_container(r_image: str, containers: Containers) -> None:
    # GIVEN two R processes in containers, one as root and one as nobody
    boxes = [containers.start_r(r_image), containers.start_r(r_image, user=NOBODY)]
    # WHEN discovery lists R processes
    rows = {row.pid: row for row in Discovery().scan()}
    # THEN each one is marked as a container, with the name podman gave it, and profilable
    for box in boxes:
        row = rows[box.pid]
        assert row.container and row.container_name == box.name, row
        assert row.r_version == "4.5.0" and row.profilable, row
    assert rows[boxes[1].pid].user == "nobody"


def test_picker_shows_the_container_and_attaches(
    r_image: str,
    containers: Containers,
    tmux: Tmux,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    # GIVEN R in a container named by podman
    box = containers.start_r(r_image)
    # WHEN xrtop starts without a PID and the user types the container's name
    tmux.start(xrtop(), size=(160, 40))
    tmux.wait_screen("pick an R process")
    tmux.wait_screen(str(box.pid))
    tmux.keys(box.name)
    screen = tmux.wait_screen(f"Filter: {box.name}")
    # THEN the one row left is that R, marked "ctr NAME" in the R column
    rows = [line for line in screen.splitlines() if "busy.R" in line]
    assert len(rows) == 1 and rows[0].split()[0] == str(box.pid), screen
    assert f"4.5.0 ctr {box.name}" in rows[0]
    # WHEN the user presses Enter, the live view shows its hot functions
    tmux.keys("Enter")
    screen = tmux.wait_screen(" fib")
    assert f"PID {box.pid}" in screen
    # AND s saves a file R reads; q quits and leaves R untraced
    tmux.keys("s")
    tmux.wait_screen("Saved")
    tmux.keys("q")
    tmux.wait_screen("XRTOP-EXIT=0")
    (saved,) = tmp_path.glob(f"xrtop-{box.pid}-*.out")
    assert summary_rprof(saved)["self"] == "fib"
    assert box.tracer() == 0


# --- xrtop in its own image, R on the host ----------------------------------------------

#: (flags for xrtop's container, the uid of the R on the host and of xrtop in the container)
ALLOWED = {
    "privileged": (["--privileged"], 0),
    "cap-sys-ptrace": (["--cap-add", "SYS_PTRACE"], 0),
    "nobody-same-user": (["--user", str(NOBODY)], NOBODY),
}


@pytest.mark.parametrize("case", ALLOWED, ids=list(ALLOWED))
def test_image_dumps_and_records_r_on_the_host(
    xrtop_image: str, host_r: HostRs, tmp_path: Path, case: str
) -> None:
    flags, uid = ALLOWED[case]
    run = host_r.start(uid)
    out_dir = tmp_path / "out"
    out_dir.mkdir(mode=0o777)
    out_dir.chmod(0o777)
    base = ["run", "--rm", "--pid=host", *flags, "-v", f"{out_dir}:/out", xrtop_image]
    # WHEN xrtop in its image dumps the host's R
    out = podman(*base, "dump", str(run.pid))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("R ") and f", PID {run.pid} " in out.stdout.splitlines()[0]
    assert "fib" in out.stdout.split()
    # AND records it into the mounted output folder
    out = podman(*base, "record", "-p", str(run.pid), "-d", "2", "-o", "/out/x.out")
    assert out.returncode == 0, out.stderr
    # THEN the host has the file, and R's summaryRprof reads it
    assert summary_rprof(out_dir / "x.out")["self"] == "fib"
    assert run.tracer() == 0


def test_image_live_view_saves_to_the_output_folder(
    xrtop_image: str,
    host_r: HostRs,
    tmux: Tmux,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    # GIVEN R on the host, and xrtop's image run as the docs say, with a folder on /out
    run = host_r.start()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    tmux.start(
        [*PODMAN, "run", "--rm", "-it", "--privileged", "--pid=host",
         "-v", f"{out_dir}:/out", xrtop_image, str(run.pid)]
    )  # fmt: skip
    # THEN the live view shows R's hot function; s saves into the folder; q quits
    screen = tmux.wait_screen(" fib", timeout=60)
    assert f"PID {run.pid}" in screen
    tmux.keys("s")
    tmux.wait_screen("Saved")
    tmux.keys("q")
    tmux.wait_screen("XRTOP-EXIT=0")
    (saved,) = out_dir.glob(f"xrtop-{run.pid}-*.out")
    assert summary_rprof(saved)["self"] == "fib"
    assert run.tracer() == 0


def test_image_doctor_names_the_container_flags(
    xrtop_image: str, host_r: HostRs, tmp_path: Path
) -> None:
    # GIVEN root's R on the host
    run = host_r.start()
    pid = str(run.pid)

    def refused(*flags: str) -> str:
        out = podman("run", "--rm", *flags, xrtop_image, "dump", pid)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out
        assert out.stdout == "" and out.stderr.startswith("xrtop: "), out
        return out.stderr

    # WHEN xrtop's container has no --pid=host, it cannot see R: the hint says the flag
    words = refused()
    assert f"no process with PID {pid}" in words and "--pid=host" in words
    # WHEN it sees R but lacks CAP_SYS_PTRACE, the doctor asks for it, not for sudo
    words = refused("--pid=host")
    assert "permission denied" in words and "--cap-add SYS_PTRACE" in words
    assert "sudo" not in words
    # WHEN it runs as another user than R's, it says to run the container as R's user
    words = refused("--pid=host", "--user", str(NOBODY))
    assert "in a container, start it as that user (--user 0)" in words
    assert "--cap-add SYS_PTRACE" in words
    assert run.alive() and run.tracer() == 0


def test_image_runs_the_xrtop_of_this_tree(xrtop_image: str) -> None:
    # The image runs xrtop as its entry point: --version is xrtop's, from this tree.
    out = podman("run", "--rm", xrtop_image, "--version")
    assert out.returncode == 0, out.stderr
    version = subprocess.run(
        [sys.executable, "-m", "xrtop", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout == version.stdout
