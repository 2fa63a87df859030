"""`--native` on real R, host and every lab R (plain and container-like).

Ground truth: the native part against gdb's backtrace of the same R, spinning in a C
function (a stable point), taken after xrtop detached; the R part against R's own Rprof of
the same calls. The C code (tests/r/native.c) is compiled on the host with R CMD SHLIB:
it uses only R's API and no libc, so the one build loads in every lab R, whose chroots
have no compiler. Compiled code of R itself (sort), BLAS (crossprod), PCRE (grepl) and
data.table (fread, forder) is checked for where its frames sit among R's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import R_SCRIPTS
from conftest import RLAB_ROOT
from conftest import REnv
from conftest import RLauncher
from conftest import RRun
from conftest import rscript
from conftest import sample
from conftest import wait_for
from test_profvis import XRTOP
from test_profvis import need_profvis
from test_record import summary_rprof

from sampler.capture import sample_once
from sampler.mixed import UNWIND_STOPPED
from sampler.mixed import is_native
from sampler.model import Stack
from sampler.native import NativeStack
from sampler.rprof import read_rprof
from sampler.target import Target
from sampler.target import attach

pytestmark = pytest.mark.live

#: gdb's frame lines: "#3  0x00007f... in my_c_fun () from /tmp/x.so" (frame 0 may lack
#: the address when its pc starts a line).
_GDB_FRAME = re.compile(r"^#(\d+)\s+(?:(0x[0-9a-f]+) in )?(\S+) \(")


@pytest.fixture(scope="session")
def native_so(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/r/native.c built as a shared object for R (on the host)."""
    if shutil.which("R") is None or shutil.which("cc") is None:
        pytest.skip("building native.c needs R and a C compiler on the host")
    build = tmp_path_factory.mktemp("native")
    shutil.copy(R_SCRIPTS / "native.c", build / "native.c")
    done = subprocess.run(
        ["R", "CMD", "SHLIB", "-o", "native.so", "native.c"],
        cwd=build,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return build / "native.so"


class Placed:
    """A file put where an R of `env` sees it: `inside` is its path for that R."""

    def __init__(self, source: Path | None, env: REnv, suffix: str) -> None:
        name = f"xrtop-native-{uuid.uuid4().hex[:12]}{suffix}"
        lab = env.suite != "host"
        root = RLAB_ROOT / env.suite if lab else Path("/")
        self.inside = f"/tmp/{name}"
        self.outside = root / "tmp" / name
        if source is not None:
            shutil.copy(source, self.outside)

    def remove(self) -> None:
        self.outside.unlink(missing_ok=True)


@pytest.fixture
def placed() -> Iterator[list[Placed]]:
    """Files placed for a test's R, removed after it."""
    files: list[Placed] = []
    yield files
    for file in files:
        file.remove()


def mixed_sample(pid: int) -> tuple[Stack, NativeStack, Target]:
    """One `--native` sample of `pid` with every frame (evaluator's too), and its native
    stack; the target is detached again."""
    target = attach(pid)
    target.set_native(True, evaluator=True)
    stack = sample_once(target)
    native = target.reader.native
    assert native is not None and native.last is not None
    return stack, native.last, target


def gdb_backtrace(pid: int, env: REnv) -> list[tuple[int | None, str]]:
    """gdb's backtrace of `pid`, running in `env`: (pc, function) per frame, innermost
    first."""
    command = ["gdb", "-nx", "-batch", "-p", str(pid), "-ex", "bt"]
    if env.suite != "host" and env.mode == "plain":
        # A chroot shares our mounts, so gdb would open the host's files of the names R
        # loaded: point it at R's root (a container's own mounts it enters itself).
        root = f"/proc/{pid}/root"
        command[3:3] = ["-iex", f"set sysroot {root}", f"{root}/usr/lib/R/bin/exec/R"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    frames: list[tuple[int | None, str]] = []
    for line in done.stdout.splitlines():
        match = _GDB_FRAME.match(line)
        if match:
            assert int(match[1]) == len(frames), done.stdout
            frames.append((int(match[2], 16) if match[2] else None, match[3]))
    assert frames, done.stdout + done.stderr
    return frames


def start_spinning(
    r_launcher: RLauncher, r_env: REnv, so: Path, mode: str, placed: list[Placed]
) -> tuple[RRun, Placed]:
    """The .C / .Call workload of `mode` spinning in my_leaf, after a short run under R's
    Rprof (written to the returned file)."""
    library = Placed(so, r_env, ".so")
    profile = Placed(None, r_env, ".out")
    placed += [library, profile]
    run = r_launcher.start("native.R", mode, library.inside, profile.inside, env=r_env)
    return run, profile


@pytest.mark.parametrize("mode", ["dotC", "dotCall"])
def test_native_frames_match_gdb_and_r_frames_match_rprof(
    r_launcher: RLauncher, r_env: REnv, native_so: Path, placed: list[Placed], mode: str
) -> None:
    if shutil.which("gdb") is None:
        pytest.skip("gdb is not installed")
    run, profile = start_spinning(r_launcher, r_env, native_so, mode, placed)
    stack, native, _ = mixed_sample(run.pid)
    assert native.complete, native.reason
    names = list(stack.names)
    builtin = ".C" if mode == "dotC" else ".Call"
    c_function = "my_c_fun" if mode == "dotC" else "my_call_fun"
    assert names[:2] == ["<Native:my_leaf>", f"<Native:{c_function}>"], names

    # The native part is gdb's: the same return addresses from the C function out to main
    # (gdb, after xrtop detached, sees R still spinning in my_leaf; it goes on past main).
    gdb = gdb_backtrace(run.pid, r_env)
    ours = [frame.pc for frame in native.frames]
    assert gdb[0][1] == "my_leaf" and native.frames[-1].symbol == "main", native.frames
    assert ours[1:] == [pc for pc, _ in gdb[1 : len(ours)]], (native.frames, gdb)
    assert gdb[len(ours) - 1][1] == "main", gdb

    # The R part is Rprof's, for the same calls (its most common stack, innermost first).
    recorded = read_rprof(profile.outside)
    counts = Counter(s.names for s in recorded.log.iter_stacks() if s.names)
    r_frames = [name for name in names if not is_native(name)]
    assert tuple(r_frames) == counts.most_common(1)[0][0], (names, counts)

    # Interleaved in call order: the builtin inside the C code's caller, R's evaluator
    # between the R frames, main outermost.
    at = {name: names.index(name) for name in (builtin, "inner_r", "outer_r")}
    assert 1 < at[builtin] < at["inner_r"] < at["outer_r"] < len(names) - 1, names
    between = names[at["inner_r"] + 1 : at["outer_r"]]
    assert between and all(is_native(name) for name in between), names
    assert "<Native:main>" in names[at["outer_r"] :] and UNWIND_STOPPED not in names


def _spinning_samples(path: Path) -> list[list[str]]:
    """The samples of an Rprof.out that spin in my_leaf (complete lines only: the file is
    still being written), each as its frame names."""
    text = path.read_text() if path.exists() else ""
    lines = text.split("\n")[1:-1]  # the header; the last line may be cut
    samples = [re.findall(r'"([^"]*)"', line) for line in lines]
    return [names for names in samples if "<Native:my_leaf>" in names]


def test_forked_workers_get_native_frames(
    r_launcher: RLauncher, r_env: REnv, native_so: Path, placed: list[Placed], tmp_path: Path
) -> None:
    """`record --subprocesses --native`: mclapply's workers (forks of the target) are
    unwound too, each in its own file: the C code they spin in, innermost, under the R
    frames that called it through .C."""
    library = Placed(native_so, r_env, ".so")
    placed.append(library)
    run = r_launcher.start("native.R", "forkC", library.inside, env=r_env)
    out = tmp_path / "prof.out"
    command = ["record", "--subprocesses", "--native", "-p", str(run.pid), "-o", str(out)]
    proc = subprocess.Popen([*XRTOP, *command], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(
            lambda: (
                len(files := sorted(tmp_path.glob("prof.*.out"))) == 2
                and all(len(_spinning_samples(f)) >= 20 for f in files)
            ),
            90,
            "both workers' files to hold 20 samples in my_leaf",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        # The workers spin in C and outlive the parent the harness stops: stop them too,
        # by the PIDs their files are named after (else they load every later test).
        for child in tmp_path.glob("prof.*.out"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(child.name.split(".")[1]), signal.SIGKILL)
    assert proc.returncode == 0, stderr
    for child in sorted(tmp_path.glob("prof.*.out")):
        # Once in my_leaf a worker stays there: its last samples all show it.
        for names in _spinning_samples(child)[-20:]:
            assert names[:2] == ["<Native:my_leaf>", "<Native:my_c_fun>"], (child, names)
            at = {name: names.index(name) for name in (".C", "inner_r", "outer_r")}
            assert 1 < at[".C"] < at["inner_r"] < at["outer_r"], (child, names)
            assert UNWIND_STOPPED not in names, (child, names)
    assert "<Native:my_leaf>" not in out.read_text()  # the parent only waits for them


#: Per workload: what the innermost native frames must show, and the R frame that runs them.
LOOPS = {
    "crossprod": (r"dsyrk|dgemm|libblas|libopenblas", "work"),
    "sort": (r"libR\.so|R_qsort|rsort|R_orderVector|sort", "work"),
    "grepl": (r"pcre2|libpcre", "work"),
    # Debian's data.table is stripped: its static functions are data_table.so+0x...
    "fread": (r"freadMain|fread|data_?table\.so", "work"),
    "forder": (r"forder|radix|data_?table\.so", "work"),
}


@pytest.mark.parametrize("mode", sorted(LOOPS))
def test_compiled_code_sits_inside_the_r_frame_that_called_it(
    r_launcher: RLauncher, r_env: REnv, mode: str
) -> None:
    pattern, caller = LOOPS[mode]
    run = r_launcher.start("native.R", mode, env=r_env)
    target = attach(run.pid)
    target.set_native(True)
    log = sample(target, 3.0, rate=100)
    stacks = [stack for stack in log.iter_stacks() if caller in stack.names]
    # (The rate is bench/native_stop_cost.py's to measure: the first samples of a run unwind
    # through code not seen yet, which costs milliseconds each.)
    assert len(stacks) >= 25, len(log)
    inside = 0
    for stack in stacks:
        names = list(stack.names)
        below = names[: names.index(caller)]
        if any(re.search(pattern, name) for name in below if is_native(name)):
            inside += 1
        # Evaluator frames stay hidden by default; the R frames keep R's order.
        assert "<Native:Rf_eval>" not in names and "<Native:bcEval>" not in names
        r_frames = [name for name in names if not is_native(name)]
        assert r_frames[r_frames.index(caller) :][:2] == [caller, "work_loop"], names
    # Most of the time goes to that compiled code (some to R preparing and calling it).
    assert inside >= 0.5 * len(stacks), Counter(s.names for s in stacks).most_common(3)


def test_native_cost_bench_runs(tmp_path: Path) -> None:
    """bench/native_stop_cost.py still runs (its numbers are judged in bench/, not here)."""
    out = tmp_path / "rows.json"
    bench = Path(__file__).parent.parent / "bench" / "native_stop_cost.py"
    short = ["--workloads", "loop", "--seconds", "1", "--rounds", "1", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(bench), *short],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())
    assert [row["arm"] for row in rows] == ["r-only", "native"]
    assert all(row["samples"] > 0 and row["stop_median_us"] > 0 for row in rows), rows


def test_summaryrprof_and_profvis_read_native_frames(
    r_launcher: RLauncher, native_so: Path, placed: list[Placed], tmp_path: Path
) -> None:
    need_profvis()
    run, _ = start_spinning(r_launcher, REnv("host"), native_so, "dotCall", placed)
    out = tmp_path / "native.out"
    subprocess.run(
        [*XRTOP, "record", "-m", "-p", str(run.pid), "-d", "1.5", "-o", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    summary = summary_rprof(out)
    assert summary.self["<Native:my_leaf>"] > 0.5 * summary.sampling_time, summary
    assert {"<Native:my_call_fun>", ".Call", "inner_r", "outer_r"} <= set(summary.total)
    labels = rscript(
        f'p <- profvis:::parse_rprof("{out}"); cat(unique(p$prof$label), sep = "\\n")'
    ).split("\n")
    assert {"<Native:my_leaf>", "<Native:my_call_fun>", "inner_r"} <= set(labels), labels
